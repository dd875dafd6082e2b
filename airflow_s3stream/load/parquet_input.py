"""A Parquet file from S3 as Arrow record batches, read through pyarrow's own native files.

pyarrow 26 can abort the interpreter at exit ("terminate called without an active exception",
exit code 134) after reading Parquet from a *Python* file object (``io.BytesIO``, an open file,
an S3 stream). So Parquet is only ever read from a pyarrow ``NativeFile``:

* by default, :func:`open_s3_parquet` opens the object on ``pyarrow.fs.S3FileSystem``
  (:mod:`airflow_s3stream.s3.arrow_fs`): ranged GETs in C++, no local disk. pyarrow's GETs
  cannot carry ``If-Match``, so the ETag is checked instead: the one pyarrow's own HeadObject
  saw against the listed one (manifest, or the HEAD when the source was resolved) before a byte
  is read, and a HeadObject after the last batch. A change fails the load naming the key
  (:class:`~airflow_s3stream.errors.ObjectChangedError`), inside its transaction: nothing commits;
* a ZIP member, or any file when ``parquet_spool_dir`` is given, is streamed from the package's
  reader into a temporary local file (:func:`spool`) and opened with ``pyarrow.OSFile``.

Memory stays bounded either way: one row group's column chunks plus ``batch_rows`` rows at a
time. A row group whose loaded columns store at most ``row_group_read`` bytes is read whole, its
column chunks coalesced into one ranged GET (pyarrow's ``pre_buffer``, one row group at a time:
over a whole file it would keep every row group read); a larger one column chunk by column chunk
in ``buffer_size`` pieces. Against a store a few ms away, the GETs' round trips were the Parquet
load's largest cost: a 3M-row export of 46 row groups took 460 GETs in 1 MiB pieces, 47 whole.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, BinaryIO

from airflow_s3stream.errors import ObjectChangedError, SourceError, TransientError
from airflow_s3stream.load.sources import LoadFile
from airflow_s3stream.s3.classify import arrow_failure
from airflow_s3stream.s3.objects import head_object
from airflow_s3stream.s3.retry import RetryPolicy

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

__all__ = [
    "DEFAULT_BATCH_ROWS",
    "ParquetInput",
    "check_unchanged",
    "native_error",
    "open_s3_parquet",
    "spool",
]

DEFAULT_BATCH_ROWS = 64 * 1024  # rows per Arrow batch (one COPY write each)
_SPOOL_CHUNK = 1024 * 1024  # bytes per copy step into the temporary file


def _strip(etag: str | bytes | None) -> str | None:
    if etag is None:
        return None
    text = etag.decode() if isinstance(etag, bytes) else etag
    return text.strip('"') or None


@contextlib.contextmanager
def spool(stream: BinaryIO, directory: str | None = None) -> Iterator[str]:
    """Copy ``stream`` into a temporary file in ``directory``; yields its path, removes it afterwards."""
    fd, path = tempfile.mkstemp(prefix="s3stream-load-", suffix=".parquet", dir=directory)
    try:
        with os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(stream, out, _SPOOL_CHUNK)
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def native_error(exc: Exception, file: LoadFile) -> Exception:
    """pyarrow's error for ``file`` as the package's (classified by
    :func:`~airflow_s3stream.s3.classify.arrow_failure`): missing, denied and undecodable are not
    retried; an S3 failure that outlived pyarrow's retries is :class:`TransientError`."""
    failure = arrow_failure(exc)
    if failure.not_found:
        return SourceError(f"{file.uri}: no such object ({failure.message})")
    if failure.access_denied:
        return SourceError(f"{file.uri}: access denied ({failure.message})")
    if failure.retryable:
        return TransientError(f"{file.uri}: S3 read failed after pyarrow's retries: {failure.message}")
    return SourceError(f"{file.uri}: not a readable Parquet file: {failure.message}")


@contextlib.contextmanager
def open_s3_parquet(filesystem: Any, file: LoadFile) -> Iterator[tuple[Any, str | None]]:
    """Open ``file`` on the pyarrow S3 ``filesystem``; yields ``(native file, ETag)``.

    :raises ObjectChangedError: the object's ETag (or size) is not the one listed for it.
    :raises SourceError: no such object, or access denied.
    :raises TransientError: S3 kept failing through pyarrow's retries.
    """
    try:
        native = filesystem.open_input_file(f"{file.bucket}/{file.key}")
    except OSError as exc:
        raise native_error(exc, file) from exc
    try:
        metadata = native.metadata() or {}
        etag = _strip(metadata.get(b"ETag") or metadata.get("ETag"))
        size = native.size()
        listed = _strip(file.etag)
        if listed and etag and listed != etag:
            raise ObjectChangedError(f"{file.uri}: ETag {etag} is not the listed {listed} (replaced since listed)")
        if file.size >= 0 and size != file.size:
            raise ObjectChangedError(f"{file.uri}: {size} bytes now, {file.size} when listed")
        yield native, etag or listed
    finally:
        native.close()


def check_unchanged(client: S3Client, file: LoadFile, etag: str | None, retry: RetryPolicy) -> None:
    """HeadObject ``file`` after it was read: raise :class:`ObjectChangedError` unless it still
    has ``etag`` (pyarrow's ranged GETs are not pinned to it, so a replacement mid-read would
    otherwise mix two versions)."""
    head = head_object(client, file.bucket, file.key, retry, reading=True)
    if head is None:
        raise ObjectChangedError(f"{file.uri}: deleted while it was being read")
    now = _strip(str(head.get("ETag") or ""))
    if etag and now != etag:
        raise ObjectChangedError(f"{file.uri}: replaced while it was being read (ETag {etag}, now {now})")


class ParquetInput:
    """A Parquet file over a pyarrow ``NativeFile`` (S3 or local): its schema and its batches.

    :param source: a ``pyarrow.NativeFile``, or a local path (opened as ``pyarrow.OSFile``).
    :param buffer_size: bytes per read of a column chunk (0: each chunk in one read) when its row
        group is not read whole.
    :param row_group_read: read a row group whole (one coalesced ranged read) when its loaded
        columns store at most this many bytes (0: never).
    """

    def __init__(self, source: Any, buffer_size: int = 0, row_group_read: int = 0) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        self._owned = pa.OSFile(source, "rb") if isinstance(source, str) else None
        self._source = self._owned or source
        self._file = pq.ParquetFile(self._source, pre_buffer=False, buffer_size=buffer_size)
        self._row_group_read = row_group_read
        self.rows_read = 0  # rows decoded so far (by the thread that iterates :meth:`batches`)

    @property
    def schema(self) -> Any:
        """The file's Arrow schema (``pyarrow.Schema``)."""
        return self._file.schema_arrow

    @property
    def column_names(self) -> list[str]:
        return list(self._file.schema_arrow.names)

    @property
    def num_rows(self) -> int:
        return int(self._file.metadata.num_rows)

    @property
    def bytes_per_row(self) -> float:
        """Uncompressed bytes per row, as the row groups' metadata records them (0.0 when empty)."""
        metadata = self._file.metadata
        rows = metadata.num_rows
        total = sum(metadata.row_group(i).total_byte_size for i in range(metadata.num_row_groups))
        return total / rows if rows else 0.0

    def largest_row_group(self, columns: Sequence[str]) -> int:
        """The stored (compressed) bytes of ``columns`` in the file's largest row group."""
        metadata = self._file.metadata
        wanted = set(columns)

        def loaded(path: str) -> bool:  # a leaf of a loaded column: "name" or "name.child..."
            return path in wanted or any(path.startswith(name + ".") for name in wanted)

        largest = 0
        for i in range(metadata.num_row_groups):
            group = metadata.row_group(i)
            chunks = (group.column(j) for j in range(group.num_columns))
            largest = max(largest, sum(c.total_compressed_size for c in chunks if loaded(c.path_in_schema)))
        return largest

    def reads_row_groups_whole(self, columns: Sequence[str]) -> bool:
        """True when :meth:`batches` of ``columns`` reads each row group in one coalesced read."""
        return 0 < self.largest_row_group(columns) <= self._row_group_read

    def batches(self, columns: Sequence[str], batch_rows: int = DEFAULT_BATCH_ROWS) -> Iterator[Any]:
        """Record batches of ``columns`` (in that order), ``batch_rows`` rows at most each."""
        names = list(columns)
        if self.reads_row_groups_whole(names):
            batches = self._by_row_group(names, batch_rows)
        else:
            batches = self._file.iter_batches(batch_size=batch_rows, columns=names, use_threads=False)
        for batch in batches:
            self.rows_read += batch.num_rows
            yield batch

    def _by_row_group(self, columns: list[str], batch_rows: int) -> Iterator[Any]:
        import pyarrow.parquet as pq

        # pre_buffer coalesces the row groups a read names; one at a time keeps one in memory.
        whole = pq.ParquetFile(self._source, metadata=self._file.metadata, pre_buffer=True, buffer_size=0)
        try:
            for i in range(whole.num_row_groups):
                yield from whole.iter_batches(batch_size=batch_rows, row_groups=[i], columns=columns, use_threads=False)
        finally:
            whole.close()

    def close(self) -> None:
        self._file.close()
        if self._owned is not None:
            self._owned.close()

    def __enter__(self) -> ParquetInput:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
