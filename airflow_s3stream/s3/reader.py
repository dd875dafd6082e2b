"""The package's one S3 reader: a seekable, read-only file object over an S3 object.

Opening costs a single suffix-range GET (``Range: bytes=-N``): it returns the object size (from
``Content-Range``), its ETag/VersionId and the last ``N`` bytes, which for a ZIP hold the
end-of-central-directory records and usually the whole central directory. Later reads go
through a sequential window, filled one of two ways:

- a streamed range GET from the read position, consumed block by block, the next block read on a
  background thread while the caller works on this one, so a whole pass over the object costs
  one more request however many members it has (the cheapest, and enough when the endpoint is
  close);
- N ranged GETs of ``block_size`` bytes kept in flight ahead of the reader, handed back in order
  (:mod:`~airflow_s3stream.s3.readahead`): what real S3, tens of ms and tens of MB/s per
  connection away, needs.

By default (``prefetch_blocks=None``) the reader starts streamed and moves to parallel GETs only
when it measurably waits on I/O, doubling N while that pays (slow start); a number fixes N
(0 = always streamed). Every GET after the first is pinned to the ETag seen at open
(``If-Match``), so an object replaced mid-read raises
:class:`~airflow_s3stream.errors.ObjectChangedError` instead of mixing two versions, and a body
cut mid-way is resumed from the byte it stopped at, whichever way the window is filled.

Memory is bounded by ``block_size * (N + 2)`` plus the tail, N at most ``max_streams``; block
buffers are reused, and bytes are pulled from a body ``STREAM_CHUNK`` at a time, so a pass
allocates no large buffer per block.

    with RangedReader(S3ObjectSource(client, "bucket", "big.zip")) as f:
        zipfile.ZipFile(f).namelist()
"""

from __future__ import annotations

import contextlib
import io
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from airflow_s3stream.budget import release_large_buffers
from airflow_s3stream.errors import ObjectChangedError
from airflow_s3stream.s3.classify import classify, raise_error
from airflow_s3stream.s3.client import warn_if_retrying
from airflow_s3stream.s3.readahead import BlockBuffers, ReadAhead
from airflow_s3stream.s3.reader_config import (
    DEFAULT_BLOCK_SIZE,
    DEFAULT_MAX_STREAMS,
    DEFAULT_TAIL_SIZE,
    SKIP_FORWARD_LIMIT,
    STREAM_CHUNK,
    ByteSource,
    ReaderConfig,
    ReaderStats,
    Tail,
)
from airflow_s3stream.s3.resumable_read import RangeStream, ResumableRead

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

__all__ = [
    "DEFAULT_BLOCK_SIZE",
    "DEFAULT_MAX_STREAMS",
    "DEFAULT_TAIL_SIZE",
    "ByteSource",
    "RangeStream",
    "RangedReader",
    "ReaderConfig",
    "ReaderStats",
    "S3ObjectSource",
    "Tail",
]


class S3ObjectSource:
    """An S3 object read with ranged GETs through a boto3 client; pinned to its ETag after open.

    Only ``If-Match`` pins later GETs: it catches a replaced object by itself, and needs no
    ``s3:GetObjectVersion`` permission. ``version_id`` is sent only when the caller asks for one.
    """

    def __init__(self, client: S3Client, bucket: str, key: str, version_id: str | None = None) -> None:
        warn_if_retrying(client)
        self.client, self.bucket, self.key = client, bucket, key
        self.version_id = version_id  # asked for by the caller; sent with every GET
        self.etag: str | None = None
        self.seen_version_id: str | None = None  # what the opening GET reported, for reports only

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def _get(self, range_header: str, pinned: bool) -> dict[str, Any]:
        """GetObject of ``range_header``; retryable failures propagate raw for the reader's
        policy, everything else as the package's error naming the object."""
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": self.key, "Range": range_header}
        if self.version_id:
            kwargs["VersionId"] = self.version_id
        if pinned and self.etag:
            kwargs["IfMatch"] = self.etag
        try:
            return dict(self.client.get_object(**kwargs))
        except Exception as exc:
            failure = classify(exc)
            if failure.retryable or failure.code == "InvalidRange":
                raise
            if failure.precondition_failed:
                raise ObjectChangedError(
                    f"{self.describe()}: the object was replaced while being read (ETag {self.etag} no longer matches)"
                ) from exc
            raise_error(exc, self.describe(), reading=True)

    def open_tail(self, n: int) -> Tail:
        try:
            response = self._get(f"bytes=-{n}", pinned=False)
        except Exception as exc:
            if classify(exc).code != "InvalidRange":
                raise
            # Only an empty object refuses a suffix range: confirm with HEAD.
            head = self.client.head_object(Bucket=self.bucket, Key=self.key)
            return Tail(size=int(head["ContentLength"]), data=b"", etag=head.get("ETag"))
        data = response["Body"].read()
        content_range = response.get("ContentRange") or ""
        size = int(content_range.rsplit("/", 1)[1]) if "/" in content_range else len(data)
        self.etag = response.get("ETag")
        self.seen_version_id = self.version_id or response.get("VersionId")
        return Tail(size=size, data=data, etag=self.etag, version_id=self.seen_version_id)

    def open_range(self, start: int, end: int) -> RangeStream:
        body: RangeStream = self._get(f"bytes={start}-{end - 1}", pinned=True)["Body"]
        return body


class RangedReader(io.RawIOBase):
    """Seekable, read-only file object over a :class:`ByteSource` (see the module docstring).

    Raises :class:`SourceError` (missing key), :class:`ObjectChangedError` (replaced mid-read)
    and :class:`~airflow_s3stream.errors.TransientError` (retries exhausted).
    """

    def __init__(self, source: ByteSource, config: ReaderConfig | None = None) -> None:
        super().__init__()
        release_large_buffers()  # block buffers freed by read-ahead threads go back to the OS
        self.source = source
        self.config = config or ReaderConfig()
        self.stats = ReaderStats()
        self._lock = threading.Lock()
        tail = self._retry(lambda: source.open_tail(self.config.tail_size), "opening")
        self._count(len(tail.data))
        self.size = tail.size
        self.etag = tail.etag
        self.tail_start = tail.size - len(tail.data)
        self._tail = memoryview(tail.data)
        self._pos = 0
        # Sequential window: [_win_start, _win_start + len(_win)) buffered, then the stream.
        self._win = memoryview(b"")
        self._win_start = 0
        self._buffers = BlockBuffers(self.config.block_size, keep=self.config.max_streams + 2)
        self._stream: ResumableRead | None = None  # the streamed GET, resumed where it is cut
        # The next block of the stream, read on a thread of its own while the caller works on
        # this one: (its start, the read). Only one thread uses the stream at a time.
        self._stream_ahead: tuple[int, Future[tuple[memoryview, float]]] | None = None
        self._stream_thread: ThreadPoolExecutor | None = None
        self.controller = self.config.controller()
        self.stats.streams = self.controller.history
        self._readahead: ReadAhead | None = None

    # --- io.RawIOBase -------------------------------------------------------------------
    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.size}[whence]
        if base + offset < 0:
            raise ValueError(f"{self.source.describe()}: seek to negative offset {base + offset}")
        self._pos = base + offset
        return self._pos

    def readinto(self, b: Any) -> int:
        view = memoryview(b).cast("B")
        want = min(len(view), max(0, self.size - self._pos))
        got = 0
        while got < want:
            chunk = self._read_some(self._pos, want - got)
            view[got : got + len(chunk)] = chunk
            self._pos += len(chunk)
            got += len(chunk)
        return got

    def readall(self) -> bytes:
        return self.read(self.size - self._pos)

    def read(self, size: int | None = -1) -> bytes:
        """Up to ``size`` bytes from the current position (all remaining bytes when negative)."""
        if size is None or size < 0:
            size = self.size - self._pos
        size = min(size, max(0, self.size - self._pos))
        if size == 0:
            return b""
        first = self._read_some(self._pos, size)
        if len(first) == size:  # within the window: one copy
            self._pos += size
            return bytes(first)
        out = bytearray(size)  # across windows: a window's buffer is reused once it moves on
        self.readinto(out)
        return bytes(out)

    def close(self) -> None:
        self._stop_stream()
        if self._stream_thread is not None:
            self._stream_thread.shutdown(wait=True)
            self._stream_thread = None
        if self._readahead is not None:
            self._readahead.close()
            self._readahead = None
        self._set_window(memoryview(b""), 0)
        self._buffers.clear()
        super().close()

    # --- internals ----------------------------------------------------------------------
    def _count(self, nbytes: int, request: bool = True) -> None:
        with self._lock:
            self.stats.requests += int(request)
            self.stats.bytes_fetched += nbytes

    def _retry(self, fn: Callable[[], Any], what: str) -> Any:
        return self.config.retry.call(fn, what=f"{self.source.describe()}: {what}")

    def _read_some(self, pos: int, size: int) -> memoryview:
        """Up to ``size`` bytes at ``pos``: a view of the window, valid until the window moves."""
        if pos >= self.tail_start:
            return self._tail[pos - self.tail_start : pos - self.tail_start + size]
        win_end = self._win_start + len(self._win)
        if not (self._win_start <= pos < win_end):
            self._fill_window(pos)
            win_end = self._win_start + len(self._win)
        end = min(pos + size, win_end, self.tail_start)
        return self._win[pos - self._win_start : end - self._win_start]

    def _set_window(self, data: memoryview, start: int) -> None:
        """Make ``data`` the window; the old window's buffer goes back for the next block."""
        old, self._win, self._win_start = self._win, data, start
        if old.obj is not None and old.obj is not data.obj:
            self._buffers.give(old.obj)

    def _fill_window(self, pos: int) -> None:
        """Make the window a block that starts at ``pos`` (never past the tail)."""
        sequential = self._win_start + len(self._win) == pos
        self._set_window(memoryview(b""), pos)  # the old block's buffer can be reused for this one
        if not sequential:
            self.controller.restart()
        # Blocks already fetched are read first, whichever way the controller went since: fetching
        # them again would cost a GET and their bytes once more.
        if self._stream_ahead is not None and self._stream_ahead[0] == pos:
            waited = self._fill_from_stream(pos, sequential)
        elif self.controller.streams > 0 or (self._readahead is not None and self._readahead.holds(pos)):
            self._stop_stream()
            waited = self._fill_from_prefetch(pos)
        else:
            waited = self._fill_from_stream(pos, sequential)
        self.controller.observe(len(self._win), waited)

    def _fill_from_stream(self, pos: int, sequential: bool) -> float:
        """Fill the window from the streamed GET; returns the seconds spent waiting on it.

        In a sequential run the block at ``pos`` is usually read already, on the stream's
        thread, and the next one is read there meanwhile (while the controller stays on the
        streamed GET); after a seek nothing is read ahead until the caller reads on."""
        started = time.monotonic()
        ahead, self._stream_ahead = self._stream_ahead, None
        if ahead is not None and ahead[0] == pos:
            view, _ = ahead[1].result()
            waited = time.monotonic() - started
        else:
            self._discard(ahead)
            view, waited = self._stream_block(pos)
        self._set_window(view, pos)
        following = pos + len(view)
        if sequential and self.controller.streams == 0 and self._stream is not None and following < self._stream.end:
            if self._stream_thread is None:
                self._stream_thread = ThreadPoolExecutor(1, thread_name_prefix="ranged-stream")
            self._stream_ahead = (following, self._stream_thread.submit(self._stream_block, following))
        return waited

    def _stream_block(self, pos: int) -> tuple[memoryview, float]:
        """The block at ``pos`` from the streamed GET (opened, or skipped forward, as needed), and
        the seconds spent reading it.

        The wait for a new stream's first byte is left out: a streamed pass pays it once, so
        counting it would make one stream look slower than it is (against a store that reads
        the whole object before answering a range, like moto, several times slower)."""
        stream = self._stream
        if stream is None or not (stream.position <= pos <= stream.position + SKIP_FORWARD_LIMIT):
            stream = self._open_stream(pos)
        started = time.monotonic()
        while stream.position < pos:  # short forward skip: cheaper than a new request
            self._count(len(stream.read(min(STREAM_CHUNK, pos - stream.position))), request=False)
        want = min(self.config.block_size, stream.end - pos)
        view = memoryview(self._buffers.take(want))[:want]
        self._count(stream.readinto(view, STREAM_CHUNK), request=False)
        return view, time.monotonic() - started

    def _discard(self, ahead: tuple[int, Future[tuple[memoryview, float]]] | None) -> None:
        """Wait for a block read ahead that is not wanted (after a seek) and drop it; a failure
        there is left for the next read of the stream to meet again."""
        if ahead is None or ahead[1].cancel():
            return
        with contextlib.suppress(Exception):
            view, _ = ahead[1].result()
            self._buffers.give(view.obj)

    def _stop_stream(self) -> None:
        """Close the streamed GET once its thread is done with it."""
        ahead, self._stream_ahead = self._stream_ahead, None
        self._discard(ahead)
        self._drop_stream()

    def _open_stream(self, pos: int) -> ResumableRead:
        """The streamed GET from ``pos`` to the tail, opened now (its first byte's wait is not timed)."""
        self._drop_stream()
        self._stream = self._resumable(pos, self.tail_start)
        self._stream.open()
        return self._stream

    def _resumable(self, start: int, end: int) -> ResumableRead:
        """Bytes ``start..end - 1`` by pinned ranged GETs, each cut body resumed where it stopped."""

        def open_at(at: int) -> RangeStream:
            body = self.source.open_range(at, end)
            self._count(0)
            return body

        what = f"{self.source.describe()}: GET bytes={start}-{end - 1}"
        return self.config.retry.resumable_read(open_at, start, end, what, on_resume=self._resumed)

    def _resumed(self) -> None:
        with self._lock:
            self.stats.resumed += 1

    def _drop_stream(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None

    # parallel read-ahead ----------------------------------------------------------------
    def _fetch_block(self, start: int) -> memoryview:
        """The block at ``start``, by one pinned ranged GET; a body cut mid-way is resumed from
        the byte it stopped at (up to the retry policy's attempts), never fetched again whole."""
        end = min(start + self.config.block_size, self.tail_start)
        view = memoryview(self._buffers.take(end - start))[: end - start]
        block = self._resumable(start, end)
        try:
            self._count(block.readinto(view, STREAM_CHUNK), request=False)
        finally:
            block.close()
        return view

    def _fill_from_prefetch(self, pos: int) -> float:
        """Fill the window from the read-ahead queue; returns the seconds spent waiting on it.

        Blocks start at ``pos``, not at a multiple of the block size, so a run that began on the
        streamed GET goes on at the byte it stopped at: nothing is fetched twice."""
        if self._readahead is None:
            block = self.config.block_size
            self._readahead = ReadAhead(self._fetch_block, block, self.tail_start, self.controller.max_streams)
        data, waited = self._readahead.take(pos, self.controller.streams)
        self._set_window(data, pos)
        return waited
