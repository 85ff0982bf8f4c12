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


def _cpu_route_from_env() -> None:
    """``RANKFUNNEL_CPU_ROUTE`` (e.g. ``openvino-int8``) becomes what the CPU cross-encoder's ``auto`` route means."""
    import os

    route = os.environ.get("RANKFUNNEL_CPU_ROUTE", "").strip()
    if route:
        from rankfunnel.rerank.encoder_fast import set_default_route

        set_default_route(route)


def main() -> None:
    """Console-script entry point."""
    import sys

    from rankfunnel.errors import InvalidInputError

    _remote_keys_from_env()
    try:
        _cpu_route_from_env()
    except InvalidInputError as exc:
        print(f"error: RANKFUNNEL_CPU_ROUTE: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc
    from rankfunnel.cli._errors import run_app

    run_app(app)
