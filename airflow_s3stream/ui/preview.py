"""The first rows of an exported file (CSV, JSON Lines, Parquet), read within a small byte budget.

Never the whole object: the file is read through the package's one S3 reader
(:class:`~airflow_s3stream.s3.reader.RangedReader`) with bounded ranged GETs of
``PreviewBudget.block_size``, behind a cap of ``PreviewBudget.max_fetch`` bytes.

* CSV and JSON Lines (plain, gzip or zstd): the first blocks are decompressed incrementally, a
  small chunk at a time, until ``max_rows`` lines are complete or ``max_text`` decompressed bytes
  were seen; the rest of the object is never requested.
* Parquet: the footer (inside the reader's opening suffix GET), then only the first row group's
  column chunks, as many columns as fit in what is left of the budget.

The decoding functions (:func:`text_rows`, :func:`parquet_rows`) take any binary file object, so
they are tested on bytes in memory; :func:`preview_object` is the thin S3 loop around them.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

from airflow_s3stream.errors import ConfigurationError
from airflow_s3stream.load.formats import compression_from_magic, compression_from_suffix, format_from_suffix
from airflow_s3stream.s3.reader import RangedReader, ReaderConfig, S3ObjectSource
from airflow_s3stream.s3.retry import RetryPolicy
from airflow_s3stream.units import KiB, MiB

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

__all__ = ["BudgetExceededError", "Preview", "PreviewBudget", "parquet_rows", "preview_object", "text_rows"]

TEXT_CHUNK = 16 * KiB  # decompressed bytes taken per step: the preview never holds a large block


class BudgetExceededError(ValueError):
    """The preview would need more bytes than its budget allows (names the file and the bytes)."""


@dataclass(frozen=True)
class PreviewBudget:
    """How much a preview may read and hold (documented defaults).

    :param max_rows: rows shown.
    :param max_fetch: bytes of the object fetched from S3, at most (the cap stops reading there).
    :param max_text: decompressed bytes of a text file looked at, at most.
    :param block_size: bytes per ranged GET (the reader's minimum is 64 KiB).
    :param tail_size: bytes of the opening suffix GET: a Parquet footer usually fits.
    :param max_cell: characters kept per shown value (longer ones end in ``…``).
    """

    max_rows: int = 20
    max_fetch: int = 2 * MiB
    max_text: int = 1 * MiB
    block_size: int = 256 * KiB
    tail_size: int = 64 * KiB
    max_cell: int = 200

    def __post_init__(self) -> None:
        if self.max_rows < 1:
            raise ValueError(f"max_rows must be at least 1, got {self.max_rows}")
        if self.max_fetch < self.tail_size + self.block_size:
            raise ValueError(f"max_fetch must hold the tail and one block, got {self.max_fetch}")


@dataclass
class Preview:
    """What a preview shows, and what it cost."""

    key: str
    file_format: str
    compression: str | None
    columns: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    complete: bool = False  # the file has no more rows than shown
    size: int = 0
    bytes_fetched: int = 0
    requests: int = 0
    note: str = ""

    def summary(self) -> str:
        """One line for the page: how much was read for the rows shown."""
        shown = f"{len(self.rows)} row{'s' if len(self.rows) != 1 else ''}"
        more = "" if self.complete else " (the first ones)"
        return (
            f"{shown}{more} of a {self.size:,}-byte {self.file_format}"
            f"{' ' + self.compression if self.compression else ''} file; read {self.bytes_fetched:,} bytes "
            f"in {self.requests} GET{'s' if self.requests != 1 else ''}. {self.note}".strip()
        )


class _Capped(io.RawIOBase):
    """A file object over ``inner`` that ends (for sequential reads) after ``limit`` bytes."""

    def __init__(self, inner: IO[bytes] | RangedReader, limit: int) -> None:
        super().__init__()
        self.inner, self.limit, self.hit = inner, limit, False

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        left = self.limit - self.inner.tell()
        if left <= 0:
            self.hit = True
            return 0
        view = memoryview(b).cast("B")[:left]
        data = self.inner.read(len(view))
        view[: len(data)] = data
        return len(data)


def _short(value: Any, limit: int) -> str:
    text = "" if value is None else value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _decompressed(file: IO[bytes], compression: str | None) -> IO[bytes]:
    if compression == "gzip":
        return gzip.GzipFile(fileobj=file, mode="rb")  # type: ignore[return-value]
    if compression == "zstd":
        import zstandard

        return zstandard.ZstdDecompressor().stream_reader(file, read_size=TEXT_CHUNK)  # type: ignore[return-value]
    if compression is None:
        return file
    raise ConfigurationError(f"unknown compression {compression!r}: expected gzip, zstd or none")


def _lines(text: IO[bytes], budget: PreviewBudget, wanted: int) -> tuple[list[bytes], bool]:
    """The first ``wanted`` complete lines, and whether the stream ended within them."""
    lines: list[bytes] = []
    pending = b""
    seen = 0
    while len(lines) < wanted:
        chunk = text.read(TEXT_CHUNK)
        if not chunk:
            if pending:
                lines.append(pending)
            return lines[:wanted], len(lines) <= wanted
        seen += len(chunk)
        *complete, pending = (pending + chunk).split(b"\n")
        lines.extend(complete)
        if seen >= budget.max_text and len(lines) < wanted:
            break  # a line longer than the budget, or fewer rows than asked within it
    return lines[:wanted], False


def text_rows(
    file: IO[bytes],
    file_format: str,
    compression: str | None,
    budget: PreviewBudget,
    csv_settings: Mapping[str, Any] | None = None,
) -> tuple[list[str], list[list[str]], bool]:
    """Columns, the first ``budget.max_rows`` rows, and whether that is the whole file.

    ``file`` is read sequentially, ``TEXT_CHUNK`` decompressed bytes at a time, and no further
    than the rows need (or ``budget.max_text`` decompressed bytes). ``csv_settings`` is the
    manifest's ``csv`` block (``delimiter``, ``header``); without it a header line is assumed.
    """
    settings = dict(csv_settings or {})
    header = bool(settings.get("header", True)) if file_format == "csv" else False
    wanted = budget.max_rows + (1 if header else 0) + 1  # one more: is there anything after?
    lines, ended = _lines(_decompressed(file, compression), budget, wanted)
    lines = [line[:-1] if line.endswith(b"\r") else line for line in lines]
    more = len(lines) > budget.max_rows + (1 if header else 0)
    lines = lines[: budget.max_rows + (1 if header else 0)]
    decoded = [line.decode("utf-8", errors="replace") for line in lines]
    if file_format == "jsonl":
        columns: list[str] = []
        records = []
        for line in decoded:
            try:
                record = json.loads(line)
            except ValueError:
                record = {"(not JSON)": line}
            if not isinstance(record, dict):
                record = {"value": record}
            records.append(record)
            columns.extend(k for k in record if k not in columns)
        rows = [[_short(r.get(c), budget.max_cell) for c in columns] for r in records]
        return columns, rows, ended and not more
    if file_format == "csv":
        parsed = list(csv.reader(decoded, delimiter=str(settings.get("delimiter") or ",")))
        if header and parsed:
            columns, parsed = parsed[0], parsed[1:]
        else:
            columns = [f"column {i + 1}" for i in range(max((len(r) for r in parsed), default=0))]
        return columns, [[_short(v, budget.max_cell) for v in r] for r in parsed], ended and not more
    raise ConfigurationError(f"{file_format!r} is not a text format: expected csv or jsonl")


def parquet_rows(
    file: IO[bytes] | io.IOBase, budget: PreviewBudget, *, fetched: int = 0, name: str = ""
) -> tuple[list[str], list[list[str]], bool, str]:
    """Columns, the first rows of the first row group, whether that is the whole file, and a note.

    Only the footer and the first row group's chunks of the columns that fit in
    ``budget.max_fetch - fetched`` bytes are read (in schema order; the note names the others).

    :raises BudgetExceededError: not even the first column's chunk fits.
    """
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(file, pre_buffer=False)
    meta = parquet.metadata
    names = parquet.schema_arrow.names
    if meta.num_row_groups == 0:
        return names, [], True, ""
    group = meta.row_group(0)
    left = budget.max_fetch - fetched - meta.serialized_size
    chosen: list[str] = []
    by_name = {group.column(i).path_in_schema: group.column(i).total_compressed_size for i in range(group.num_columns)}
    for column in names:
        size = by_name.get(column, 0)
        if size > left:
            break
        chosen.append(column)
        left -= size
    if not chosen:
        first = by_name.get(names[0], 0) if names else 0
        raise BudgetExceededError(
            f"{name}: the first row group's first column chunk is {first:,} bytes, more than the preview's "
            f"budget of {budget.max_fetch:,} bytes"
        )
    table = parquet.read_row_group(0, columns=chosen).slice(0, budget.max_rows)
    rows = [[_short(v, budget.max_cell) for v in row.values()] for row in table.to_pylist()]
    note = (
        ""
        if len(chosen) == len(names)
        else f"columns left out to stay within the budget: {', '.join(names[len(chosen) :])}"
    )
    return chosen, rows, meta.num_rows <= budget.max_rows, note


def preview_object(
    client: S3Client,
    bucket: str,
    key: str,
    *,
    retry: RetryPolicy | None = None,
    budget: PreviewBudget | None = None,
    file_format: str | None = None,
    compression: str | None = None,
    csv_settings: Mapping[str, Any] | None = None,
) -> Preview:
    """The first rows of ``s3://bucket/key`` (see the module docstring for what is read).

    ``file_format`` / ``compression`` come from the manifest when known, else from the key's
    suffix (and the first bytes' magic for the compression).

    :raises SourceError: the object is missing (from the reader, naming it).
    :raises ConfigurationError: the format cannot be told from the name.
    :raises BudgetExceededError: a Parquet file whose first column chunk exceeds the budget.
    """
    budget = budget or PreviewBudget()
    file_format = file_format or format_from_suffix(key)
    config = ReaderConfig(
        block_size=budget.block_size,
        tail_size=budget.tail_size,
        prefetch_blocks=1,  # bounded ranged GETs only: never a GET open to the end of the object
        retry=retry or RetryPolicy(),
    )
    name = f"s3://{bucket}/{key}"
    with RangedReader(S3ObjectSource(client, bucket, key), config) as reader:
        preview = Preview(key=key, file_format=file_format, compression=compression, size=reader.size)
        if file_format == "parquet":
            columns, rows, complete, note = parquet_rows(reader, budget, fetched=reader.stats.bytes_fetched, name=name)
            preview.compression = None
        else:
            capped = _Capped(reader, budget.max_fetch - budget.block_size)  # the read-ahead's block on top
            buffered = io.BufferedReader(capped, buffer_size=TEXT_CHUNK)
            if compression is None:
                compression = compression_from_suffix(key) or compression_from_magic(buffered.peek(4)[:4])
            preview.compression = compression
            columns, rows, complete = text_rows(buffered, file_format, compression, budget, csv_settings)
            note = f"stopped at the budget of {budget.max_fetch:,} bytes" if capped.hit else ""
        preview.columns, preview.rows, preview.complete, preview.note = columns, rows, complete, note
        preview.bytes_fetched, preview.requests = reader.stats.bytes_fetched, reader.stats.requests
    return preview
