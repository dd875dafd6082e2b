"""One file's bytes, decompressed, as a file object or as chunks read ahead in a bounded queue.

Bytes flow ``RangedReader`` (the package's one S3 reader, every GET after the first pinned to the
ETag with ``If-Match``) -> ZIP member stream (CRC-32 checked, when ``zip_member``) -> gzip / zstd
decoder -> the consumer. :func:`open_file` gives the file object; :class:`ReadAhead` runs it in a
thread so the S3 read and the decompression overlap the COPY (the Parquet load runs its decode
and encode stage in one, the same way). Memory is bounded by the reader's window (``block_size``),
the codec's window and ``depth x CHUNK_SIZE`` whatever the file size.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, BinaryIO, Generic, TypeVar, overload

from airflow_s3stream.archive.zip import ZipArchive
from airflow_s3stream.errors import ArchiveError, ObjectChangedError
from airflow_s3stream.load.formats import compression_from_magic, compression_from_suffix
from airflow_s3stream.load.sources import LoadFile
from airflow_s3stream.s3.reader import RangedReader, ReaderConfig, S3ObjectSource
from airflow_s3stream.units import MiB

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

__all__ = ["CHUNK_SIZE", "DEFAULT_READ_AHEAD", "OpenedFile", "ReadAhead", "open_file"]

CHUNK_SIZE = 1 * MiB  # bytes per read from the decoded stream (one COPY write)
DEFAULT_READ_AHEAD = 8  # chunks queued ahead of the COPY
_PUT_POLL = 0.1  # seconds between checks whether the consumer stopped

T = TypeVar("T")


class _Chunks(io.RawIOBase):
    """A readable over an iterator of byte chunks (a ZIP member's data)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        super().__init__()
        self._chunks = chunks
        self._buf = b""

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while not self._buf:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._buf = chunk
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


class OpenedFile:
    """A file being read: ``stream`` (decoded bytes), its stored ``size``, ETag, codec and bytes read."""

    def __init__(self, stream: BinaryIO, reader: RangedReader, compression: str | None) -> None:
        self.stream, self._reader, self.compression = stream, reader, compression
        self.size, self.etag = reader.size, reader.etag

    @property
    def stored_bytes_read(self) -> int:
        """Bytes fetched from S3 so far (for a ZIP member: of the archive)."""
        return self._reader.stats.bytes_fetched


def _member_stream(reader: RangedReader, file: LoadFile) -> Iterator[bytes]:
    archive = ZipArchive.open(reader, reader.size)
    by_name = {e.name: e for e in archive.entries if not e.is_dir}
    entry = by_name.get(file.zip_member or "")
    if entry is None:
        raise ArchiveError(f"{file.uri}: no file member named {file.zip_member!r}")
    return archive.iter_data(entry)


@contextlib.contextmanager
def open_file(
    client: S3Client, file: LoadFile, compression: str | None, reader_config: ReaderConfig | None = None
) -> Iterator[OpenedFile]:
    """Open ``file`` for reading its decoded bytes.

    :param compression: ``auto`` (the suffix of the key or member name, else the magic bytes),
        ``None``, ``gzip`` or ``zstd``.
    :raises ObjectChangedError: the object's ETag is not the one the manifest lists.
    :raises SourceError, TransientError, ArchiveError: see :class:`RangedReader` and the ZIP layer.
    """
    with RangedReader(S3ObjectSource(client, file.bucket, file.key), reader_config) as reader:
        if file.etag and reader.etag and file.etag.strip('"') != reader.etag.strip('"'):
            raise ObjectChangedError(f"{file.uri}: ETag {reader.etag} is not the listed {file.etag}")
        raw: Any = _Chunks(_member_stream(reader, file)) if file.zip_member else reader
        buffered = io.BufferedReader(raw, buffer_size=CHUNK_SIZE)
        if compression == "auto":
            compression = compression_from_suffix(file.zip_member or file.key) or compression_from_magic(
                buffered.peek(4)[:4]
            )
        stream: Any = buffered
        if compression == "gzip":
            stream = gzip.GzipFile(fileobj=buffered, mode="rb")
        elif compression == "zstd":
            import zstandard

            stream = zstandard.ZstdDecompressor().stream_reader(buffered, read_size=CHUNK_SIZE, read_across_frames=True)
        try:
            yield OpenedFile(stream, reader, compression)
        finally:
            stream.close()


class ReadAhead(Generic[T]):
    """Runs a producer in a thread, ``depth`` items ahead of the consumer; iterate to get them.

    The producer is a stream (read in ``chunk_size`` chunks: the S3 read and decompression of a
    CSV or JSON Lines file) or any iterable (the Parquet load's decode-and-encode stage), so S3
    I/O and decoding overlap the COPY. Memory: ``depth`` items queued, one being made, one being
    written. An exception in the producer is raised in the consumer at the point it happened.
    :meth:`close` stops the thread and waits for it (the consumer may stop early, e.g. when the
    COPY failed); the producer finishes the item it is making first, so close it afterwards.
    """

    @overload
    def __init__(
        self: ReadAhead[bytes], source: BinaryIO, depth: int = DEFAULT_READ_AHEAD, chunk_size: int = CHUNK_SIZE
    ) -> None: ...

    @overload
    def __init__(self, source: Iterable[T], depth: int = DEFAULT_READ_AHEAD, chunk_size: int = CHUNK_SIZE) -> None: ...

    def __init__(self, source: Any, depth: int = DEFAULT_READ_AHEAD, chunk_size: int = CHUNK_SIZE) -> None:
        items: Iterable[Any] = _chunks_of(source, chunk_size) if hasattr(source, "read") else source
        self._items: Iterator[T] = iter(items)
        self._queue: queue.Queue[T | _Failure | None] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="s3stream-load-read", daemon=True)
        self._thread.start()

    def _put(self, item: T | _Failure | None) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=_PUT_POLL)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            for item in self._items:
                if self._stop.is_set() or not self._put(item):
                    return
        except BaseException as exc:  # handed to the consumer, which raises it
            self._put(_Failure(exc))
            return
        self._put(None)

    def __iter__(self) -> Iterator[T]:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if isinstance(item, _Failure):
                raise item.exc
            yield item

    def close(self) -> None:
        """Stop the producing thread and wait for it (it finishes its current item first)."""
        self._stop.set()
        with contextlib.suppress(queue.Empty):
            while True:
                self._queue.get_nowait()
        self._thread.join()
        close = getattr(self._items, "close", None)
        if close is not None:  # a generator left mid-way: its finally blocks run now, in this thread
            close()

    def __enter__(self) -> ReadAhead[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Failure:
    """An exception raised by the producer, queued for the consumer (never a queued item itself)."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def _chunks_of(stream: BinaryIO, chunk_size: int) -> Iterator[bytes]:
    while True:
        chunk = stream.read(chunk_size)
        if not chunk:
            return
        yield bytes(chunk)
