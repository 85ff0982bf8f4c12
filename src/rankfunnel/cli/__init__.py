"""The ``rankfunnel`` command line: a thin typer layer over the library.

Each command group lives in its own module and registers itself on :data:`app`.
"""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="rankfunnel",
    help="Two-stage search: bi-encoder + ANN (+BM25) recall, cross-encoder rerank.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Command modules: core (index, search, rerank, info), evaluate (eval, bench, calibrate), serve, train.
_COMMAND_MODULES = ("core", "evaluate", "serve", "train")
for _name in _COMMAND_MODULES:
    try:
        importlib.import_module(f"rankfunnel.cli.{_name}")
    except ModuleNotFoundError as exc:  # a command module not written yet must not break the others
        if exc.name != f"rankfunnel.cli.{_name}":
            raise


def _remote_keys_from_env() -> None:
    """Environment variables are read here, in the CLI layer only, and handed to the library."""
    import os

    from rankfunnel.rerank.remote import DEFAULT_API_KEYS

    if os.environ.get("ZEROENTROPY_API_KEY"):
        DEFAULT_API_KEYS["zeroentropy"] = os.environ["ZEROENTROPY_API_KEY"]
    generic = os.environ.get("RANKFUNNEL_REMOTE_API_KEY")
    if generic:
        DEFAULT_API_KEYS.setdefault("cohere", generic)
        DEFAULT_API_KEYS.setdefault("tei", generic)


def main() -> None:
    """Console-script entry point."""
    _remote_keys_from_env()
    app()
