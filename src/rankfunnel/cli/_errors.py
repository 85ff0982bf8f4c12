"""The CLI boundary: every command's options are checked here, and every error becomes one line and an exit code.

- Exit code 2, one red line on stderr naming the fix: any :class:`~rankfunnel.errors.RankfunnelError`, an option
  out of its range (:data:`BOUNDS`), text that is not UTF-8 (undecodable bytes on the command line arrive as lone
  surrogates), a file the operating system refuses (``OSError``), and click's own usage errors (through
  :func:`run_app`).
- Exit code 130: Ctrl-C (work already committed is kept).
- Exit code 1: a bug (an exception rankfunnel did not expect): one line asking to report it.

``RANKFUNNEL_DEBUG=1`` prints the traceback of every error (and re-raises unexpected ones).
"""

from __future__ import annotations

import functools
import math
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console

from rankfunnel.errors import InvalidInputError, RankfunnelError

try:  # typer >= 0.24 ships its own copy of click: its usage errors are not click's classes
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover - older typer runs on click itself
    from click import exceptions as click_exceptions  # type: ignore[no-redef]

F = TypeVar("F", bound=Callable[..., Any])
err_console = Console(stderr=True)

# Allowed range of each numeric option, by parameter name (an option flag such as "--warmup-ratio" overrides it):
# (lowest, lowest is allowed, highest or None, highest is allowed). Non-finite floats are always refused.
AT_LEAST_1 = (1, True, None, False)
AT_LEAST_0 = (0, True, None, False)
ABOVE_0 = (0, False, None, False)
FRACTION = (0, True, 1, False)
BOUNDS: dict[str, tuple[float, bool, float | None, bool]] = {
    **dict.fromkeys(
        (
            "chunk_size", "top_k", "top_n", "batch_size", "resamples", "queries", "layers", "depth",
            "eval_depth", "eval_steps", "patience", "max_steps", "threads", "candidates", "max_length",
        ),
        AT_LEAST_1,
    ),
    **dict.fromkeys(
        ("negatives", "random_negatives", "skip_top", "head_lr", "held_out", "warmup", "sustained_s",
         "hourly_cost"),
        AT_LEAST_0,
    ),
    **dict.fromkeys(("epochs", "lr", "max_minutes", "deadline_ms", "attempt_timeout_ms"), ABOVE_0),
    "auto_margin": AT_LEAST_0,
    "max_pairs": (2, True, None, False),
    "margin": FRACTION,
    "--warmup-ratio": FRACTION,
}


def _debug() -> bool:
    return os.environ.get("RANKFUNNEL_DEBUG", "") not in {"", "0"}


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``error: message`` as one line on stderr; return the :class:`typer.Exit` to raise."""
    if _debug():
        traceback.print_exc()
    line = " ".join(message.split())  # one line, whatever the message held
    err_console.print(f"[bold red]error:[/] {_escape(line)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


@functools.cache
def _option_names(func: Callable[..., Any]) -> dict[str, str]:
    """Parameter name -> how the user types it (``--top-k``, or ``QUERY`` for an argument), from ``func``."""
    import inspect
    import typing

    from typer.models import ArgumentInfo, OptionInfo

    hints = typing.get_type_hints(func, include_extras=True)
    names: dict[str, str] = {}
    for name, param in inspect.signature(func).parameters.items():
        infos = [*getattr(hints.get(name), "__metadata__", ()), param.default]
        for info in infos:
            if isinstance(info, OptionInfo):
                decls = [d for d in (info.param_decls or ()) if d.startswith("--")]
                names[name] = decls[0] if decls else "--" + name.rstrip("_").replace("_", "-")
            elif isinstance(info, ArgumentInfo):
                names[name] = name.upper()
    return names


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def check_options(func: Callable[..., Any], kwargs: dict[str, Any]) -> None:
    """Refuse out-of-range numbers and undecodable text among a command's arguments, naming the option."""
    names = _option_names(func)
    for key, value in kwargs.items():
        shown = names.get(key, key)
        texts = [value] if isinstance(value, str) else []
        if isinstance(value, list | tuple):
            texts = [v for v in value if isinstance(v, str)]
        if any(_has_surrogate(t) for t in texts):
            raise InvalidInputError(
                f"{shown} holds bytes that are not valid UTF-8 (a terminal or file in another encoding?); "
                "pass UTF-8 text."
            )
        bounds = BOUNDS.get(shown, BOUNDS.get(key))
        if bounds is None or isinstance(value, bool) or not isinstance(value, int | float):
            continue
        low, low_ok, high, high_ok = bounds
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidInputError(f"{shown} must be a finite number, got {value}.")
        if value < low or (value == low and not low_ok) or (
            high is not None and (value > high or (value == high and not high_ok))
        ):
            lo = f">= {low}" if low_ok else f"> {low}"
            hi = "" if high is None else (f" and <= {high}" if high_ok else f" and < {high}")
            raise InvalidInputError(f"{shown} must be {lo}{hi}, got {value}.")


def handle_errors(func: F) -> F:
    """Check the command's options, run it, and turn errors into one line and an exit code (module docstring).

    Every command uses it: ``@app.command() @handle_errors def cmd(...)``.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            check_options(func, kwargs)
            return func(*args, **kwargs)
        except (typer.Exit, typer.Abort, SystemExit, click_exceptions.ClickException):
            raise
        except RankfunnelError as exc:
            raise fail(str(exc)) from None
        except KeyboardInterrupt:
            err_console.print(
                "[yellow]interrupted[/]: work committed so far is kept; rerun the same command to resume.",
                highlight=False,
            )
            raise typer.Exit(130) from None
        except ImportError as exc:  # a missing optional package (the library names the extra when it knows it)
            raise fail(f"a required package is missing ({exc}); install it, e.g. pip install 'rankfunnel[all]'.") from (
                None
            )
        except UnicodeError as exc:  # undecodable input that slipped past the checks: still the input's fault
            raise fail(
                f"text that is not valid UTF-8 ({exc}); pass UTF-8 text and files (e.g. convert with iconv)."
            ) from None
        except OSError as exc:  # a path the operating system refuses: missing, a folder, no permission, disk full
            where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
            raise fail(
                f"{exc.strerror or exc}{where}; check the path, its permissions and the free disk space."
            ) from None
        except Exception as exc:
            if _debug():
                raise
            err_console.print(
                f"[bold red]unexpected error:[/] {type(exc).__name__}: {_escape(str(exc))} "
                "(set RANKFUNNEL_DEBUG=1 for the traceback and report it)",
                highlight=False,
                soft_wrap=True,
            )
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def run_app(app: typer.Typer) -> None:
    """Run ``app`` with click's usage errors (bad option values, unknown options) printed as one line, exit 2."""
    try:
        code = app(standalone_mode=False)
    except click_exceptions.NoArgsIsHelpError as exc:
        exc.show()
        code = 2
    except click_exceptions.ClickException as exc:
        ctx = getattr(exc, "ctx", None)
        hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        line = " ".join(exc.format_message().split())
        err_console.print(f"[bold red]error:[/] {_escape(line)}{_escape(hint)}", highlight=False, soft_wrap=True)
        code = exc.exit_code
    except typer.Abort:
        err_console.print("aborted", highlight=False)
        code = 130
    if isinstance(code, int) and code:
        sys.exit(code)
