"""The ``rankfunnel`` command line: a thin typer layer over the library.

Each command group lives in its own module and registers itself on :data:`app`. Library warnings are shown
as one line (``warning: ...``), without the library's file and source line.
"""

from __future__ import annotations

import warnings
from typing import Any

import typer

app = typer.Typer(
    name="rankfunnel",
    help="Two-stage search: bi-encoder + ANN (+BM25) recall, cross-encoder rerank.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _one_line_warning(
    message: Warning | str, category: type[Warning], filename: str, lineno: int, line: str | None = None
) -> str:
    """Users see what the warning says, not where in the library it was raised."""
    return f"warning: {message}\n"


@app.callback()
def _cli(ctx: typer.Context) -> Any:
    """Two-stage search: bi-encoder + ANN (+BM25) recall, cross-encoder rerank."""
    warnings.formatwarning = _one_line_warning  # the CLI is the application: it owns how warnings look


# Command modules: core (index, search, rerank, info), evaluate (eval, bench, calibrate), serve, shadow
# (shadow-report), train.
from rankfunnel.cli import core, evaluate, serve, shadow, train  # noqa: E402,F401  (they register their commands)


def main() -> None:
    """Console-script entry point."""
    from rankfunnel.cli._errors import run_app

    run_app(app)
