"""CLI adversarial fixtures."""

from __future__ import annotations

import functools

import pytest


@pytest.fixture(scope="module", autouse=True)
def _build_the_click_command_once():
    """typer rebuilds the click command from the signatures on every CliRunner.invoke (~0.25 s); these tests
    invoke it hundreds of times, so the built command is reused (the app does not change while they run)."""
    import typer.testing

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(typer.testing, "_get_command", functools.cache(typer.testing._get_command))
        yield
