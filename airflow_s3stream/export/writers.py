"""Rows and batches into one or more complete objects: compression, counting, splitting into parts.

An *opener* maps a key to a context manager yielding a binary writable (the S3 multipart writer
in production, an ``io.BytesIO`` in unit tests). Leaving its block normally completes the object,
or stages it (a writer whose ``staged`` attribute is then set: an upload left open for the
export's commit); leaving it with an exception must discard it. :class:`PartSequence` opens part
after part through it and records an :class:`ExportedFile` per closed object. :func:`write_text` (CSV / JSONL
rows) and :func:`write_parquet` (Arrow batches) decide where one part ends and the next begins;
every part is a complete file (its own CSV header, its own Parquet footer).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from airflow_s3stream.export.compression import open_compressor
from airflow_s3stream.export.options import ExportOptions
from airflow_s3stream.export.parquet_layout import dictionary_columns
from airflow_s3stream.s3.multipart.staged import StagedUpload

__all__ = ["CountingSink", "ExportedFile", "ObjectOpener", "PartSequence", "write_parquet", "write_text"]

ObjectOpener = Callable[[str], contextlib.AbstractContextManager[Any]]
Progress = Callable[[int, int], None]  # (rows so far, bytes so far)

TEXT_FLUSH_BYTES = 256 * 1024  # rows are joined into writes of about this size (fewer, larger writes)


@dataclass
class ExportedFile:
    """One closed object: its key, data rows, stored bytes, and the uploader's result (if any).

    A staged file has ``staged`` set (its upload is still open) and ``upload`` is filled in once
    the export's commit has completed it.
    """

    key: str
    rows: int
    bytes: int
    upload: dict[str, Any] | None = None
    staged: StagedUpload | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "rows": self.rows, "bytes": self.bytes}


class CountingSink:
    """Binary writable that counts what passes to ``raw``; ``tell()`` lets pyarrow write to it."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.bytes = 0
        self.closed = False

    def write(self, data: bytes | memoryview) -> int:
        n = len(data)
        if n:
            self.raw.write(data)
            self.bytes += n
        return n

    def tell(self) -> int:
        return self.bytes

    def flush(self) -> None:
        return None

    def close(self) -> None:
        self.closed = True  # the opener's context completes the object, not pyarrow


@dataclass
class _OpenPart:
    key: str
    sink: CountingSink
    stack: contextlib.ExitStack
    rows: int = 0


@dataclass
class PartSequence:
    """Opens objects one after another under ``key_for(index)`` and completes (or stages) or aborts them.

    On failure only the open object is discarded (:meth:`abort`); what to do with the files already
    closed (abort the staged ones, delete the completed ones) is the export's decision.
    """

    opener: ObjectOpener
    key_for: Callable[[int], str]
    files: list[ExportedFile] = field(default_factory=list)
    _current: _OpenPart | None = None

    def open(self) -> _OpenPart:
        key = self.key_for(len(self.files))
        stack = contextlib.ExitStack()
        raw = stack.enter_context(self.opener(key))
        self._current = _OpenPart(key, CountingSink(raw), stack)
        return self._current

    def complete(self, part: _OpenPart) -> ExportedFile:
        self._current = None
        part.stack.close()  # leaves the opener's block normally: the object is visible, or staged
        raw = part.sink.raw
        result = getattr(raw, "result", None)
        upload = result.to_dict() if result is not None and hasattr(result, "to_dict") else None
        staged = getattr(raw, "staged", None)
        staged = staged if isinstance(staged, StagedUpload) else None
        done = ExportedFile(part.key, part.rows, part.sink.bytes, upload, staged)
        self.files.append(done)
        return done

    def abort(self, exc: BaseException) -> None:
        """Discard the open part (if any); the opener aborts its upload."""
        part, self._current = self._current, None
        if part is not None:
            part.stack.__exit__(type(exc), exc, exc.__traceback__)

    @property
    def stored_bytes(self) -> int:
        done = sum(f.bytes for f in self.files)
        return done + (self._current.sink.bytes if self._current else 0)


def _part_full(options: ExportOptions, rows: int, stored: int) -> bool:
    if options.max_rows_per_file is not None and rows >= options.max_rows_per_file:
        return True
    return options.max_bytes_per_file is not None and stored >= options.max_bytes_per_file


def write_text(
    rows: Iterable[bytes | bytearray | memoryview],
    parts: PartSequence,
    options: ExportOptions,
    *,
    has_header: bool,
    progress: Progress | None = None,
) -> int:
    """Write COPY rows (the first one a header when ``has_header``) as CSV/JSONL parts; return data rows.

    This is the per-row hot loop of CSV/JSONL export, so it keeps to local variables: one copy
    into the pending buffer and two additions per row; limits are checked only when splitting.
    """
    rows_iter: Iterator[bytes | bytearray | memoryview] = iter(rows)
    header = b""
    if has_header:
        first = next(rows_iter, None)
        header = bytes(first) if first is not None else b""
    max_rows = options.max_rows_per_file if options.max_rows_per_file is not None else -1
    max_bytes = options.max_bytes_per_file if options.max_bytes_per_file is not None else -1
    count_pending = options.compression is None  # compressed: only what the codec emitted counts
    split = options.split
    total_rows = 0
    # Rows are copied into one bytearray rather than kept as a list of row objects: psycopg hands
    # each row over as a memoryview, which the garbage collector tracks, and thousands of them alive
    # at once trigger collections that scan the whole heap.
    pending = bytearray()
    append = pending.extend
    part: _OpenPart | None = None
    compressor: Any = None

    def start() -> _OpenPart:
        nonlocal compressor
        compressor = open_compressor(options.compression, options.level, options.resources.compressor_bytes)
        pending.clear()
        pending.extend(header)
        return parts.open()

    def drain(current: _OpenPart, final: bool) -> None:
        data = compressor.compress(pending)
        if final:
            data += compressor.flush()
        current.sink.write(data)
        pending.clear()

    while True:
        part_rows = 0
        pending_bytes = 0
        for row in rows_iter:
            if part is None:
                part = start()
                pending_bytes = len(header)
            append(row)
            pending_bytes += len(row)
            part_rows += 1
            if pending_bytes >= TEXT_FLUSH_BYTES:
                drain(part, final=False)
                pending_bytes = 0
                if progress is not None:
                    progress(total_rows + part_rows, parts.stored_bytes)
            if split and (
                part_rows == max_rows
                or (max_bytes > 0 and part.sink.bytes + (pending_bytes if count_pending else 0) >= max_bytes)
            ):
                break
        if part is None:
            break
        # the part is full, or the rows ran out
        drain(part, final=True)
        part.rows = part_rows
        total_rows += part_rows
        parts.complete(part)
        part = None
    if not parts.files and options.empty_result == "write_empty_file":
        empty = start()
        drain(empty, final=True)
        parts.complete(empty)
    if progress is not None:
        progress(total_rows, parts.stored_bytes)
    return total_rows


def write_parquet(
    batches: Iterable[Any],
    schema: Any,
    parts: PartSequence,
    options: ExportOptions,
    *,
    progress: Progress | None = None,
) -> int:
    """Write Arrow batches as Parquet parts; return rows.

    Dictionary encoding is used on the columns where the first batch repeats its values
    (:func:`~airflow_s3stream.export.parquet_layout.dictionary_columns`). A row group holds
    ``options.parquet_row_group_rows`` rows, or (``None``) as many as fit in the
    budget's row-group share at the width of the first batch's rows in Arrow memory, and no more
    than ``max_bytes_per_file`` of them (a part can only end at a row group).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    codec = options.compression or "snappy"
    total_rows = 0
    part: _OpenPart | None = None
    writer: Any = None
    group: list[Any] = []
    group_rows = 0
    group_limit = options.parquet_row_group_rows
    dictionary: list[str] | None = None  # chosen on the first batch, the same for every part

    def start() -> None:
        nonlocal part, writer
        part = parts.open()
        writer = pq.ParquetWriter(
            part.sink, schema, compression=codec, compression_level=options.level, use_dictionary=dictionary or False
        )

    def flush_group() -> None:
        nonlocal group, group_rows
        if group_rows:
            assert writer is not None
            writer.write_table(pa.Table.from_batches(group, schema=schema), row_group_size=group_rows)
        group, group_rows = [], 0

    def finish() -> None:
        nonlocal part, writer
        flush_group()
        assert writer is not None and part is not None
        writer.close()
        parts.complete(part)
        part, writer = None, None

    for batch in batches:
        if group_limit is None and batch.num_rows:
            group_limit = _row_group_rows(options, batch.nbytes / batch.num_rows)
        if dictionary is None and batch.num_rows:
            dictionary = dictionary_columns(batch)
        offset = 0
        while offset < batch.num_rows:
            if part is None:
                start()
            assert part is not None
            take = batch.num_rows - offset
            if options.max_rows_per_file is not None:
                take = min(take, options.max_rows_per_file - part.rows)
            assert group_limit is not None
            take = min(take, group_limit - group_rows)
            group.append(batch.slice(offset, take))
            group_rows += take
            part.rows += take
            total_rows += take
            offset += take
            if group_rows >= group_limit:
                flush_group()
                if progress is not None:
                    progress(total_rows, parts.stored_bytes)
            if options.split and _part_full(options, part.rows, part.sink.bytes):
                finish()
    if part is None and not parts.files and options.empty_result == "write_empty_file":
        start()
    if part is not None:
        finish()
    if progress is not None:
        progress(total_rows, parts.stored_bytes)
    return total_rows


def _row_group_rows(options: ExportOptions, bytes_per_row: float) -> int:
    """Rows per row group when not given: the budget's share, at most ``max_bytes_per_file`` of Arrow data."""
    rows = options.resources.row_group_rows(bytes_per_row)
    if options.max_bytes_per_file is not None:
        rows = min(rows, max(1024, int(options.max_bytes_per_file / max(bytes_per_row, 1.0))))
    return rows
