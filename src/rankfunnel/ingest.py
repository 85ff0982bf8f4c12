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
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rankfunnel.errors import InvalidInputError, RankfunnelError
from rankfunnel.jsonl import read_jsonl
from rankfunnel.protocols import Collection
from rankfunnel.types import Document
from rankfunnel.validate import check_document

JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
TEXT_SUFFIXES = (".txt", ".md", ".markdown")
_KNOWN_KEYS = {"_id", "id", "title", "text", "metadata"}
_MAX_TITLE = 200
MAX_REASONS = 5  # rejection reasons kept in IngestStats (all of them go to the rejects file)


@dataclass(frozen=True, slots=True, kw_only=True)
class IngestStats:
    """What :func:`index_source` did: lines read, documents added, skipped (already indexed), rejected, time.

    ``reasons`` holds the first rejection reasons (``"file:line: reason"``); ``rejects_path`` the file that holds
    every rejected line (None when nothing was rejected or no file was asked for).
    """

    source: str
    read: int
    added: int
    skipped: int
    chunks: int
    seconds: float
    rejected: int = 0
    reasons: tuple[str, ...] = ()
    rejects_path: str | None = None

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
            "rejected": self.rejected,
            "reasons": list(self.reasons),
            "rejects_path": self.rejects_path,
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
    """Stream the documents of ``source`` one at a time, checking each as it is read; the first bad one raises.

    Use :func:`iter_records` (or :func:`index_source`, which skips bad lines by default) to go on past bad
    lines instead.

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
    for rec in iter_records(source):
        if rec.document is None:
            raise InvalidInputError(f"{rec.where}: {rec.reason}.")
        yield rec.document


@dataclass(frozen=True, slots=True)
class Record:
    r"""One unit of a source: a valid :class:`Document`, or the reason the line (or file) was rejected.

    ``line`` is the 1-based line number in a JSONL file (None for a folder source, where ``where`` names the
    file); ``raw`` is the line as read (undecodable bytes shown as ``\xNN``); ``progress`` counts bytes read
    (files) or files read (folders).
    """

    where: str
    line: int | None
    document: Document | None
    reason: str | None
    raw: str
    progress: int

    def reject_row(self) -> dict[str, Any]:
        """The JSON object written to a rejects file for this record."""
        return {"where": self.where, "line": self.line, "reason": self.reason, "raw": self.raw}


def iter_records(source: str | Path) -> Iterator[Record]:
    """Every document of ``source``, valid or not: bad lines come back with the reason instead of raising.

    A later line repeating an earlier id is rejected as a duplicate (the first one wins).

    Raises:
        InvalidInputError: the source is missing, of an unsupported type, holds no line at all, or cannot be
            read to its end (a truncated ``.gz``); bad *lines* never raise.
    """
    path = Path(source).expanduser()
    kind = source_kind(path)
    seen: dict[str, str] = {}  # id -> where it was first seen: O(#docs) small strings, to report duplicates
    count = 0
    inner = _iter_folder(path) if kind == "folder" else _iter_jsonl(path)
    for rec in inner:
        count += 1
        doc = rec.document
        if doc is not None and doc.id in seen:
            rec = Record(
                where=rec.where,
                line=rec.line,
                document=None,
                reason=f"duplicate id {doc.id!r} (already seen at {seen[doc.id]}); give every document a "
                "unique id, or remove the repeated line",
                raw=rec.raw,
                progress=rec.progress,
            )
        elif doc is not None:
            seen[doc.id] = rec.where
        yield rec
    if count == 0:
        what = "no .txt/.md files" if kind == "folder" else "no documents (only blank lines)"
        raise InvalidInputError(f"{path}: {what} found. Pass a source that holds at least one document.")


def total_units(source: str | Path) -> int:
    """Progress total: the size in bytes of a file (compressed size for .gz), the file count of a folder."""
    path = Path(source).expanduser()
    if source_kind(path) == "folder":
        return sum(1 for _ in _text_files(path))
    return path.stat().st_size


def _shown(raw: bytes) -> str:
    return raw.decode("utf-8", "backslashreplace")


def _iter_jsonl(path: Path) -> Iterator[Record]:
    for item, progress in read_jsonl(path, errors="keep"):
        where = f"{path}:{item.lineno}"
        doc, reason = None, item.error
        if item.ok:
            try:
                doc = document_from_json(item.value)
            except InvalidInputError as exc:
                reason = str(exc)
        yield Record(where=where, line=item.lineno, document=doc, reason=reason, raw=_shown(item.raw),
                     progress=progress)


def document_from_json(obj: Any) -> Document:
    """A :class:`Document` from one parsed JSONL object (``_id`` or ``id``, ``title``, ``text``, ``metadata``).

    Unknown fields are kept in ``metadata`` rather than dropped.

    Raises:
        InvalidInputError: the object is not a document; the message says which field is wrong and how.
    """
    if not isinstance(obj, dict):
        raise InvalidInputError(
            f"expected a JSON object per line, got {type(obj).__name__}; "
            'write each document as {"id": ..., "text": ...}'
        )
    raw_id = obj["_id"] if "_id" in obj else obj.get("id")
    if raw_id is None or isinstance(raw_id, bool) or not isinstance(raw_id, str | int):
        got = "missing" if raw_id is None else f"a JSON {type(raw_id).__name__}"
        raise InvalidInputError(
            f'missing or invalid document id ({got}); add an "id" (or BEIR "_id") field holding a string'
        )
    doc_id = str(raw_id).strip()
    if not doc_id:
        raise InvalidInputError('the document id is empty; give the document a non-empty "id"')
    if any(ord(c) < 32 or ord(c) == 127 for c in doc_id):
        raise InvalidInputError(
            f"document id {doc_id!r} holds control characters (newline, tab, NUL...); use printable ids"
        )
    text = obj.get("text")
    if not isinstance(text, str):
        got = "missing" if "text" not in obj else f"a JSON {type(text).__name__}"
        raise InvalidInputError(f'document {doc_id!r} has no "text" string ({got}); add the body as "text"')
    title = obj.get("title") or ""
    if not isinstance(title, str):
        raise InvalidInputError(f'document {doc_id!r} has a non-string "title"; use a string or omit it')
    if not text.strip() and not title.strip():
        raise InvalidInputError(f"document {doc_id!r} has neither text nor title; remove it or add text")
    metadata = obj.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise InvalidInputError(
            f'"metadata" of {doc_id!r} must be a JSON object, got {type(metadata).__name__}'
        )
    extra = {k: v for k, v in obj.items() if k not in _KNOWN_KEYS and k not in metadata}
    if extra:  # keep unknown fields instead of silently dropping them
        metadata = {**metadata, **extra}
    return check_document(Document(id=doc_id, title=title, text=text, metadata=metadata))


def _text_files(folder: Path) -> Iterator[Path]:
    # sorted: ids and order are reproducible across runs and machines (resume relies on it)
    for p in sorted(folder.rglob("*")):
        if (
            p.is_file()
            and p.suffix.lower() in TEXT_SUFFIXES
            and not any(part.startswith(".") for part in p.relative_to(folder).parts)
        ):
            yield p


def _iter_folder(folder: Path) -> Iterator[Record]:
    for n, path in enumerate(_text_files(folder), start=1):
        rel = path.relative_to(folder).as_posix()
        data = path.read_bytes()
        try:
            content = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = data[: exc.start].count(b"\n") + 1
            reason = (
                f"not valid UTF-8 (byte at offset {exc.start}); re-encode the file to UTF-8, e.g. "
                f"`iconv -f latin1 -t utf-8 {path.name} > {path.stem}.utf8{path.suffix}`, or remove it"
            )
            yield Record(where=f"{path}:{line}", line=None, document=None, reason=reason, raw=rel, progress=n)
            continue
        title, text = _split_title(content)
        if not text and not title:
            continue  # an empty file holds no document; not an error, nothing is lost
        yield Record(
            where=str(path),
            line=None,
            document=Document(id=rel, title=title, text=text, metadata={"path": rel}),
            reason=None,
            raw=rel,
            progress=n,
        )


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


def default_rejects_path(target: str | Path) -> Path:
    """Where ``rankfunnel index`` writes rejected lines by default: ``<index>.rejects.jsonl`` beside the index.

    For a server URI (``http://...``) it is ``rankfunnel-rejects.jsonl`` in the current directory.

    Examples:
        >>> default_rejects_path("out/idx").as_posix()
        'out/idx.rejects.jsonl'
    """
    text = str(target)
    if "://" in text:
        return Path("rankfunnel-rejects.jsonl")
    path = Path(text.rstrip("/") or ".")
    return path.with_name(f"{path.name}.rejects.jsonl")


class _Rejects:
    """Counts rejected records, keeps the first reasons, and writes every one to a JSONL file (if given).

    The file is replaced by each run (a stale list from an earlier run would mislead) and created only when
    something is rejected.
    """

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path).expanduser() if path is not None else None
        self.count = 0
        self.first: list[str] = []
        self._fh: Any = None
        if self.path is not None and self.path.is_file():
            self.path.unlink()

    def add(self, rec: Record) -> None:
        self.count += 1
        if len(self.first) < MAX_REASONS:
            self.first.append(f"{rec.where}: {rec.reason}")
        if self.path is None:
            return
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = self.path.open("w", encoding="utf-8", errors="backslashreplace")
        self._fh.write(json.dumps(rec.reject_row(), ensure_ascii=False) + "\n")

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def where(self) -> str:
        if self.path is None:
            return "pass rejects=PATH to get every rejected line with its reason"
        return f"every rejected line with its reason is in {self.path}"


def index_source(
    collection: Collection,
    source: str | Path,
    *,
    chunk_size: int = 1024,
    resume: bool = True,
    upsert: bool = False,
    show_progress: bool = True,
    strict: bool = False,
    rejects: str | Path | None = None,
) -> IngestStats:
    """Index ``source`` into ``collection`` in chunks of ``chunk_size``, with bounded memory.

    By default every valid document is indexed and every invalid line is skipped: the returned stats count
    them and keep the first reasons, and ``rejects`` (a path) receives every rejected line as a JSON object
    ``{"where", "line", "reason", "raw"}``. With ``strict=True`` the whole source is checked first and
    nothing is written if any line is bad (:class:`InvalidInputError`).

    Each chunk is one ``collection.add`` call (one atomic commit), so an interrupted run keeps every chunk
    committed before the interruption; running again with ``resume=True`` skips ids the collection already
    holds. ``upsert=True`` replaces existing documents instead of skipping them. With ``resume=False`` and
    ``upsert=False``, a document whose id is already stored is rejected.

    Args:
        collection: where to add documents (e.g. :class:`rankfunnel.collection.LocalCollection`).
        source: see :func:`iter_documents`.
        chunk_size: documents per commit; memory grows with it, not with the corpus.
        resume: skip documents whose id is already in the collection.
        upsert: overwrite documents whose id is already in the collection (takes precedence over resume).
        show_progress: show a rich progress bar with documents/s.
        strict: check the whole source first; index nothing if any line is invalid.
        rejects: JSONL file that receives every rejected line (replaced on each run; None: not written).

    Returns:
        Counts of lines read, documents added, skipped (already indexed) and rejected, and the wall time.

    Raises:
        InvalidInputError: an unusable source, a bad line in strict mode, or a source that cannot be read to
            its end; the message says what was committed and how to resume.

    Examples:
        >>> from rankfunnel.collection import open_collection  # doctest: +SKIP
        >>> col = open_collection("out/idx", create=True)  # doctest: +SKIP
        >>> index_source(col, "corpus.jsonl", rejects="out/idx.rejects.jsonl").added  # doctest: +SKIP
        5183
    """
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise InvalidInputError(f"chunk_size must be an integer >= 1, got {chunk_size!r}.")
    source_kind(source)
    existing: set[str] = set()
    if not upsert and len(collection) > 0:
        ids_fn = getattr(collection, "ids", None)
        if ids_fn is None:
            raise InvalidInputError(
                "This collection cannot list its ids, so resume is impossible; pass "
                "resume=False with upsert=True to overwrite, or index into a new directory."
            )
        existing = set(ids_fn())
    clash = None if resume else (
        "id already in the index; pass upsert=True (--upsert) to replace it, or resume=True (--resume) to skip it"
    )
    bad = _Rejects(rejects)
    try:
        if strict:
            _check_all(source, existing, clash, bad)
            bad.close()
            bad = _Rejects(None)  # the check found nothing to reject
        return _index_records(collection, source, chunk_size, upsert, show_progress, existing, clash, bad)
    finally:
        bad.close()


def _classify(rec: Record, existing: set[str], clash: str | None) -> Record:
    """``rec`` with an id already in the collection turned into a rejection when ``clash`` names why."""
    if clash is not None and rec.document is not None and rec.document.id in existing:
        return Record(where=rec.where, line=rec.line, document=None, reason=clash, raw=rec.raw,
                      progress=rec.progress)
    return rec


def _check_all(source: str | Path, existing: set[str], clash: str | None, bad: _Rejects) -> None:
    read = 0
    for rec in iter_records(source):
        read += 1
        rec = _classify(rec, existing, clash)
        if rec.document is None:
            bad.add(rec)
    if bad.count:
        bad.close()
        raise InvalidInputError(
            f"{source}: {bad.count} of {read} lines are invalid, so strict mode indexed nothing (the index is "
            f"unchanged). First: {bad.first[0]}. {bad.where().capitalize()}. Fix those lines and run again, or "
            f"run without strict mode (--strict) to index the {read - bad.count} valid documents and skip them."
        )


def _index_records(
    collection: Collection,
    source: str | Path,
    chunk_size: int,
    upsert: bool,
    show_progress: bool,
    existing: set[str],
    clash: str | None,
    bad: _Rejects,
) -> IngestStats:
    start = time.perf_counter()
    read = added = skipped = chunks = 0
    last = "the start"
    chunk: list[Document] = []
    # Collections that can defer their index-file writes (LocalCollection) still commit every chunk to their
    # store, but rewrite the Faiss file once at the end instead of once per chunk.
    deferred = getattr(collection, "deferred_writes", None)
    batch = deferred() if deferred is not None else contextlib.nullcontext()
    try:
        with batch, _Progress(source, enabled=show_progress) as bar:
            for rec in iter_records(source):
                read += 1
                rec = _classify(rec, existing, clash)
                if rec.document is None:
                    bad.add(rec)
                elif rec.document.id in existing:
                    skipped += 1
                else:
                    chunk.append(rec.document)
                if len(chunk) >= chunk_size:
                    added += collection.add(chunk, upsert=upsert, show_progress=False)
                    chunks += 1
                    chunk = []
                    last = rec.where
                bar.update(rec.progress, read, added + len(chunk), skipped)
            if chunk:
                added += collection.add(chunk, upsert=upsert, show_progress=False)
                chunks += 1
            bar.update(None, read, added, skipped)
    except RankfunnelError as exc:
        done = (
            f"{added} new documents were committed ({chunks} chunks, through {last}); rerun the same command to "
            "resume (ids already indexed are skipped)."
        )
        raise type(exc)(f"{str(exc).rstrip('.')}. {done}") from exc
    return IngestStats(
        source=str(source),
        read=read,
        added=added,
        skipped=skipped,
        rejected=bad.count,
        reasons=tuple(bad.first),
        rejects_path=str(bad.path) if bad.path is not None and bad.count else None,
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
