r"""The one JSONL reader of rankfunnel: ingestion, BEIR datasets, training data and ``rerank --docs`` use it.

A file is read line by line as bytes (a 1 GB JSONL never sits in memory whole; ``.gz`` files are decompressed
on the fly). Each non-blank line becomes a :class:`JsonLine` holding either the parsed value or the reason it
cannot be used, so that callers choose whether one bad line fails the whole file (``errors="raise"``) or is
reported and skipped (``errors="keep"``). What counts as a bad line:

- bytes that are not UTF-8 (a UTF-8 byte-order mark on the first line is accepted),
- malformed JSON, ``NaN`` / ``Infinity`` (not JSON; they would break JSON responses later), integers too long
  for Python to read, or nesting deep enough to exhaust the parser's recursion,
- strings holding lone surrogates such as ``"\ud800"`` (valid JSON escapes that no UTF-8 text can hold).

A file that cannot be read to its end (a truncated or corrupt ``.gz``) raises
:class:`~rankfunnel.errors.InvalidInputError` naming the line where reading stopped, in both modes: the lines
after it are unknown, so they cannot be reported as rejected.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from rankfunnel.errors import InvalidInputError


@dataclass(frozen=True, slots=True)
class JsonLine:
    """One non-blank line of a JSONL file: its number, raw bytes, and the parsed value or why it has none."""

    lineno: int
    raw: bytes
    value: Any = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON (write null or a number)")


def find_surrogate(value: Any, field: str = "") -> str | None:
    """The path (e.g. ``metadata.tags[2]``) of the first string in ``value`` holding a lone surrogate, or None."""
    stack: list[tuple[str, Any]] = [(field, value)]
    while stack:
        where, v = stack.pop()
        if isinstance(v, str):
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                return where or "value"
        elif isinstance(v, dict):
            for k, item in v.items():
                name = f"{where}.{k}" if where else str(k)
                if isinstance(k, str) and find_surrogate(k) is not None:
                    return f"{where or 'value'} (a key)"
                stack.append((name, item))
        elif isinstance(v, list):
            stack.extend((f"{where}[{i}]", item) for i, item in enumerate(v))
    return None


def parse_line(raw: bytes, lineno: int = 1) -> JsonLine:
    """Decode and parse one line; never raises for bad content (the reason is in ``error``)."""
    try:
        text = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
    except UnicodeDecodeError as exc:
        return JsonLine(
            lineno,
            raw,
            error=f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1}); re-encode the file "
            "to UTF-8, e.g. with `iconv -f latin1 -t utf-8`",
        )
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        return JsonLine(lineno, raw, error=f"malformed JSON ({exc.msg} at column {exc.colno})")
    except ValueError as exc:  # NaN/Infinity, or an integer longer than Python's int-parsing limit
        return JsonLine(lineno, raw, error=f"unreadable JSON value ({exc})")
    except RecursionError:
        return JsonLine(lineno, raw, error="JSON nested too deeply to read")
    bad = find_surrogate(value)
    if bad is not None:
        return JsonLine(
            lineno,
            raw,
            error=f"{bad} holds a lone surrogate (an escape such as \\ud800 that is not text); remove it",
        )
    return JsonLine(lineno, raw, value=value)


def open_binary(path: Path) -> tuple[Any, Any]:
    """The stream to read lines from (decompressed for ``.gz``), and the raw file whose position is progress."""
    raw = path.open("rb")
    if path.name.lower().endswith(".gz"):
        return gzip.GzipFile(fileobj=raw, mode="rb"), raw
    return raw, raw


def read_jsonl(
    path: str | Path, *, errors: Literal["raise", "keep"] = "raise"
) -> Iterator[tuple[JsonLine, int]]:
    """Yield ``(line, bytes_read)`` for each non-blank line of ``path``.

    Args:
        path: a ``.jsonl`` file, optionally gzip-compressed (``.gz``).
        errors: ``"raise"``: the first bad line raises :class:`InvalidInputError` naming the file, line and
            reason. ``"keep"``: bad lines are yielded with ``error`` set.

    Raises:
        InvalidInputError: the file is missing or cannot be read to its end (truncated ``.gz``), or (with
            ``errors="raise"``) a line is bad.

    Examples:
        >>> from rankfunnel.ingest import sample_data
        >>> line, _ = next(read_jsonl(sample_data()))
        >>> line.lineno, line.ok
        (1, True)
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise InvalidInputError(f"{p}: no such file. Pass a JSONL file (one JSON object per line).")
    stream, raw = open_binary(p)
    lineno = 0
    with raw, stream:
        while True:
            try:
                line = stream.readline()
            except (OSError, EOFError, zlib.error) as exc:
                raise InvalidInputError(
                    f"{p}:{lineno + 1}: cannot read the file past line {lineno} ({exc}); it is truncated or "
                    "corrupt. Restore a complete copy (e.g. `gzip -t` to check a .gz) and run again."
                ) from None
            if not line:
                return
            lineno += 1
            if not line.strip():
                continue
            parsed = parse_line(line.rstrip(b"\r\n"), lineno)
            if parsed.error is not None and errors == "raise":
                raise InvalidInputError(f"{p}:{lineno}: {parsed.error}.")
            yield parsed, raw.tell()
