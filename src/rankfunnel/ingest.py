"""Streaming ingestion: read documents from files and index them in chunks, with resume.

Sources (detected by :func:`iter_documents`):

- a BEIR ``corpus.jsonl`` (``{"_id", "title", "text", "metadata"?}`` per line),
- a JSONL of ``{"id", "title"?, "text", "metadata"?}`` per line (``.jsonl``, ``.ndjson``, ``.json``,
  optionally gzip-compressed as ``.gz``); other fields are kept in ``metadata`` rather than dropped,
- a folder of ``.txt`` / ``.md`` files: id = path relative to the folder, title = first heading / line.

Files are read line by line (a 1 GB JSONL never sits in memory whole). Every problem is reported as an
:class:`~rankfunnel.errors.InvalidInputError` naming the file, the line and the fix.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rankfunnel.errors import InvalidInputError
from rankfunnel.protocols import Collection
from rankfunnel.types import Document

JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
TEXT_SUFFIXES = (".txt", ".md", ".markdown")
_KNOWN_KEYS = {"_id", "id", "title", "text", "metadata"}
_MAX_TITLE = 200


@dataclass(frozen=True, slots=True, kw_only=True)
class IngestStats:
    """What :func:`index_source` did: documents read, added, skipped (already indexed) and the time taken."""

    source: str
    read: int
    added: int
    skipped: int
    chunks: int
    seconds: float

    @property
    def docs_per_s(self) -> float:
        """Documents added per second of wall time (0 when nothing was added)."""
        return self.added / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable view (used by ``rankfunnel index --json``)."""
        return {
            "source": self.source,
            "read": self.read,
            "added": self.added,
            "skipped": self.skipped,
            "chunks": self.chunks,
            "seconds": round(self.seconds, 3),
            "docs_per_s": round(self.docs_per_s, 1),
        }


def source_kind(source: str | Path) -> str:
    """``"folder"`` or ``"jsonl"`` for an existing source; raises :class:`InvalidInputError` otherwise."""
    path = Path(source).expanduser()
    if path.is_dir():
        return "folder"
    if not path.exists():
        raise InvalidInputError(
            f"{path}: no such file or folder. Pass a corpus.jsonl, a JSONL file or a folder "
            "of .txt/.md files."
        )
    name = path.name.lower().removesuffix(".gz")
    if name.endswith(JSONL_SUFFIXES):
        return "jsonl"
    raise InvalidInputError(
        f"{path}: unsupported file type. Pass a .jsonl file (one JSON object per line, "
        "e.g. a BEIR corpus.jsonl) or a folder of .txt/.md files."
    )


def iter_documents(source: str | Path) -> Iterator[Document]:
    """Stream the documents of ``source`` one at a time, checking each as it is read.

    Args:
        source: a BEIR ``corpus.jsonl``, a JSONL of ``{id, title, text, metadata}`` objects, or a folder of
            ``.txt``/``.md`` files.

    Raises:
        InvalidInputError: malformed JSON, a missing id or text, non-UTF-8 bytes, a duplicate id or an
            empty source; the message names the file and line and how to fix it.

    Examples:
        >>> from rankfunnel.ingest import iter_documents
        >>> docs = iter_documents("corpus.jsonl")  # doctest: +SKIP
        >>> next(docs).id  # doctest: +SKIP
        '4983'
    """
    for doc, _ in _iter_with_progress(source):
        yield doc


def _iter_with_progress(source: str | Path) -> Iterator[tuple[Document, int]]:
    """Documents paired with progress units (bytes read for files, files read for folders)."""
    path = Path(source).expanduser()
    kind = source_kind(path)
    seen: set[str] = set()  # ids only: O(#docs) small strings, needed to report duplicates
    count = 0
    inner = _iter_folder(path) if kind == "folder" else _iter_jsonl(path)
    for doc, where, progress in inner:
        if doc.id in seen:
            raise InvalidInputError(
                f"{where}: duplicate id {doc.id!r} (already seen earlier in this source). "
                "Give every document a unique id, or remove the repeated line."
            )
        seen.add(doc.id)
        count += 1
        yield doc, progress
    if count == 0:
        what = "no .txt/.md files" if kind == "folder" else "no documents (only blank lines)"
        raise InvalidInputError(f"{path}: {what} found. Pass a source that holds at least one document.")


def total_units(source: str | Path) -> int:
    """Progress total: the size in bytes of a file (compressed size for .gz), the file count of a folder."""
    path = Path(source).expanduser()
    if source_kind(path) == "folder":
        return sum(1 for _ in _text_files(path))
    return path.stat().st_size


def _open_binary(path: Path) -> tuple[Any, Any]:
    """The stream to read lines from, and the raw file whose position measures progress."""
    raw = path.open("rb")
    if path.name.lower().endswith(".gz"):
        return gzip.GzipFile(fileobj=raw, mode="rb"), raw
    return raw, raw


def _iter_jsonl(path: Path) -> Iterator[tuple[Document, str, int]]:
    stream, raw = _open_binary(path)
    with raw, stream:
        for lineno, line in enumerate(stream, start=1):
            where = f"{path}:{lineno}"
            try:
                text = line.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise InvalidInputError(
                    f"{where}: not valid UTF-8 (byte 0x{line[exc.start]:02x} at column {exc.start + 1}). "
                    f"Re-encode the file to UTF-8, e.g. `iconv -f latin1 -t utf-8 {path.name} > fixed.jsonl`."
                ) from None
            except (OSError, EOFError) as exc:  # truncated / corrupt gzip
                raise InvalidInputError(
                    f"{where}: cannot read the file ({exc}). Check that it is complete."
                ) from None
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                raise InvalidInputError(
                    f"{where}: malformed JSON ({exc.msg} at column {exc.colno}). Each line must be one JSON "
                    'object such as {"id": "d1", "title": "...", "text": "..."}.'
                ) from None
            yield _document_from_json(obj, where), where, raw.tell()


def _document_from_json(obj: Any, where: str) -> Document:
    if not isinstance(obj, dict):
        raise InvalidInputError(
            f"{where}: expected a JSON object per line, got {type(obj).__name__}. "
            'Write each document as {"id": ..., "text": ...}.'
        )
    raw_id = obj.get("_id", obj.get("id"))
    if raw_id is None or isinstance(raw_id, bool) or not isinstance(raw_id, str | int):
        raise InvalidInputError(
            f'{where}: missing or invalid document id. Add an "id" (or BEIR "_id") field holding a string.'
        )
    doc_id = str(raw_id).strip()
    if not doc_id:
        raise InvalidInputError(f'{where}: the document id is empty. Give the document a non-empty "id".')
    if "text" not in obj or not isinstance(obj["text"], str):
        raise InvalidInputError(
            f'{where}: document {doc_id!r} has no "text" string. Add the document body as "text".'
        )
    title = obj.get("title") or ""
    if not isinstance(title, str):
        raise InvalidInputError(
            f'{where}: document {doc_id!r} has a non-string "title"; use a string or omit it.'
        )
    if not obj["text"].strip() and not title.strip():
        raise InvalidInputError(
            f"{where}: document {doc_id!r} has neither text nor title. Remove it or add text."
        )
    metadata = obj.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise InvalidInputError(
            f'{where}: "metadata" of {doc_id!r} must be a JSON object, got {type(metadata).__name__}.'
        )
    extra = {k: v for k, v in obj.items() if k not in _KNOWN_KEYS and k not in metadata}
    if extra:  # keep unknown fields instead of silently dropping them
        metadata = {**metadata, **extra}
    return Document(id=doc_id, title=title, text=obj["text"], metadata=metadata)


def _text_files(folder: Path) -> Iterator[Path]:
    # sorted: ids and order are reproducible across runs and machines (resume relies on it)
    for p in sorted(folder.rglob("*")):
        if (
            p.is_file()
            and p.suffix.lower() in TEXT_SUFFIXES
            and not any(part.startswith(".") for part in p.relative_to(folder).parts)
        ):
            yield p


def _iter_folder(folder: Path) -> Iterator[tuple[Document, str, int]]:
    for n, path in enumerate(_text_files(folder), start=1):
        rel = path.relative_to(folder).as_posix()
        try:
            content = path.read_bytes().decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = path.read_bytes()[: exc.start].count(b"\n") + 1
            raise InvalidInputError(
                f"{path}:{line}: not valid UTF-8 (byte at offset {exc.start}). Re-encode the file to UTF-8, "
                f"e.g. `iconv -f latin1 -t utf-8 {path.name} > {path.stem}.utf8{path.suffix}`, or remove it."
            ) from None
        title, text = _split_title(content)
        if not text and not title:
            continue  # an empty file holds no document; not an error, nothing is lost
        yield Document(id=rel, title=title, text=text, metadata={"path": rel}), f"{path}", n


def _split_title(content: str) -> tuple[str, str]:
    """First non-empty line (markdown ``#`` stripped) as the title; the rest as the text."""
    lines = content.splitlines()
    for i, line in enumerate(lines):
        if line.strip():
            title = line.strip().lstrip("#").strip()[:_MAX_TITLE]
            rest = "\n".join(lines[i + 1 :]).strip()
            if not rest:  # a one-line file: keep its line as the text so that nothing is duplicated
                return "", line.strip()
            return title, rest
    return "", ""


def index_source(
    collection: Collection,
    source: str | Path,
    *,
    chunk_size: int = 1024,
    resume: bool = True,
    upsert: bool = False,
    show_progress: bool = True,
) -> IngestStats:
    """Index ``source`` into ``collection`` in chunks of ``chunk_size``, with bounded memory.

    Each chunk is one ``collection.add`` call (one atomic commit), so an interrupted run keeps every chunk
    committed before the interruption; running again with ``resume=True`` skips ids the collection already
    holds. ``upsert=True`` replaces existing documents instead of skipping them.

    Args:
        collection: where to add documents (e.g. :class:`rankfunnel.collection.LocalCollection`).
        source: see :func:`iter_documents`.
        chunk_size: documents per commit; memory grows with it, not with the corpus.
        resume: skip documents whose id is already in the collection.
        upsert: overwrite documents whose id is already in the collection (takes precedence over resume).
        show_progress: show a rich progress bar with documents/s.

    Returns:
        Counts of documents read, added and skipped, and the wall time.

    Examples:
        >>> from rankfunnel.collection import open_collection  # doctest: +SKIP
        >>> col = open_collection("out/idx", create=True)  # doctest: +SKIP
        >>> index_source(col, "corpus.jsonl").added  # doctest: +SKIP
        5183
    """
    if chunk_size < 1:
        raise InvalidInputError(f"chunk_size must be >= 1, got {chunk_size}.")
    existing: set[str] = set()
    if resume and not upsert and len(collection) > 0:
        ids_fn = getattr(collection, "ids", None)
        if ids_fn is None:
            raise InvalidInputError(
                "This collection cannot list its ids, so resume is impossible; pass "
                "resume=False with upsert=True to overwrite, or index into a new directory."
            )
        existing = set(ids_fn())
    start = time.perf_counter()
    read = added = skipped = chunks = 0
    chunk: list[Document] = []
    # Collections that can defer their index-file writes (LocalCollection) still commit every chunk to their
    # store, but rewrite the Faiss file once at the end instead of once per chunk.
    deferred = getattr(collection, "deferred_writes", None)
    batch = deferred() if deferred is not None else contextlib.nullcontext()
    with batch, _Progress(source, enabled=show_progress) as bar:
        for doc, units in _iter_with_progress(source):
            read += 1
            if doc.id in existing:
                skipped += 1
            else:
                chunk.append(doc)
            if len(chunk) >= chunk_size:
                added += collection.add(chunk, upsert=upsert, show_progress=False)
                chunks += 1
                chunk = []
            bar.update(units, read, added + len(chunk), skipped)
        if chunk:
            added += collection.add(chunk, upsert=upsert, show_progress=False)
            chunks += 1
        bar.update(None, read, added, skipped)
    return IngestStats(
        source=str(source),
        read=read,
        added=added,
        skipped=skipped,
        chunks=chunks,
        seconds=time.perf_counter() - start,
    )


class _Progress:
    """A rich progress bar over bytes (files) or files (folders), showing documents and documents/s."""

    def __init__(self, source: str | Path, *, enabled: bool) -> None:
        self.enabled = enabled
        self.source = source
        self._start = time.perf_counter()

    def __enter__(self) -> _Progress:
        if self.enabled:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self._bar = Progress(
                TextColumn("[bold]indexing[/]"),
                BarColumn(),
                TextColumn("{task.percentage:>3.0f}%"),
                TextColumn("{task.fields[docs]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                transient=False,
            )
            self._bar.start()
            self._task = self._bar.add_task("index", total=total_units(self.source), docs="")
        return self

    def update(self, units: int | None, read: int, added: int, skipped: int) -> None:
        if not self.enabled:
            return
        elapsed = max(time.perf_counter() - self._start, 1e-9)
        text = f"{read} read, {added} new, {skipped} skipped, {added / elapsed:.0f} docs/s"
        if units is None:
            task = self._bar.tasks[0]
            self._bar.update(self._task, completed=task.total, docs=text)
        else:
            self._bar.update(self._task, completed=units, docs=text)

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self._bar.stop()


def sample_data(name: str = "sample_corpus.jsonl") -> Path:
    """A file shipped with the package: ``sample_corpus.jsonl`` (80 documents) or ``sample_queries.jsonl``.

    Examples:
        >>> sample_data().name
        'sample_corpus.jsonl'
    """
    from importlib.resources import files

    path = Path(str(files("rankfunnel") / "data" / name))
    if not path.is_file():
        raise InvalidInputError(
            f"{name!r} is not shipped with this installation ({path}); reinstall rankfunnel."
        )
    return path
