"""The library's one progress-bar stack: rich (the CLI's stack too), drawn on stderr.

Every progress bar rankfunnel itself draws goes through :func:`progress` or :func:`track`, so that bars look
the same everywhere and never mix with results printed on stdout (``--json``). Libraries we call may draw
their own (sentence-transformers and the transformers ``Trainer`` use tqdm); that is theirs.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sized
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")


class Bar:
    """A handle on one running bar; a no-op when the bar is disabled."""

    def __init__(self, progress: Any = None, task: Any = None) -> None:
        self._progress = progress
        self._task = task

    def advance(self, n: float = 1) -> None:
        """Move the bar on by ``n`` units."""
        if self._progress is not None:
            self._progress.advance(self._task, n)


@contextmanager
def progress(
    description: str, total: float | None = None, *, enabled: bool = True, transient: bool = True
) -> Iterator[Bar]:
    """A progress bar of ``total`` units (None: unknown) for the ``with`` block; nothing when not ``enabled``.

    Examples:
        >>> with progress("indexing", total=2, enabled=False) as bar:
        ...     bar.advance(2)
    """
    if not enabled:
        yield Bar()
        return
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(stderr=True), transient=transient) as bar:
        yield Bar(bar, bar.add_task(description, total=total))


def track(
    items: Iterable[T],
    description: str,
    *,
    total: float | None = None,
    enabled: bool = True,
    transient: bool = True,
) -> Iterator[T]:
    """Yield ``items``, advancing a bar by one per item (``total`` defaults to ``len(items)`` when it has one).

    Examples:
        >>> list(track([1, 2], "work", enabled=False))
        [1, 2]
    """
    if total is None and isinstance(items, Sized):
        total = len(items)
    with progress(description, total, enabled=enabled, transient=transient) as bar:
        for item in items:
            yield item
            bar.advance()
