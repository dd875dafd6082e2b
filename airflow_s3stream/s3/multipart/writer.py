"""A writable file object that streams into an S3 multipart upload, parts uploading in parallel.

    with MultipartWriter(client, "bucket", "exports/day.csv", extra_args={"ContentType": "text/csv"}) as w:
        w.write(chunk)          # blocks while max_concurrency parts are in flight (backpressure)
    print(w.result.to_dict())   # after a clean close: size, parts, checksum, ETag, seconds, ...

Bytes are copied once, into the current part buffer; a full buffer is handed to a bounded pool of
upload threads and a new one is started, so memory stays at about ``(max_concurrency + 1) x
part_size``. Closing without error completes and verifies the upload (an object smaller than one
part becomes a single PutObject, the empty object included). An exception inside the ``with``
block, :meth:`MultipartWriter.abort`, or a failed part aborts the multipart upload: nothing is
published and nothing is left billed. A failed part surfaces on the next ``write``/``close``.
With ``stage=True`` closing uploads the last part (any size, the empty file a 0-byte part) and
leaves the upload open: :attr:`MultipartWriter.staged` records what completing it needs, and the
caller publishes it later (:mod:`airflow_s3stream.publish`) or aborts it (:func:`~.staged.abort_staged`).
A writer dropped without ``close``/``abort`` only logs a warning: the garbage collector is no place
for network calls, so its upload waits for the bucket's lifecycle rule or ``abort_stale_uploads``.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from types import TracebackType
from typing import TYPE_CHECKING, Any

from airflow_s3stream.budget import release_large_buffers
from airflow_s3stream.errors import S3StreamError, UploadError
from airflow_s3stream.progress import Progress, log_progress
from airflow_s3stream.s3.classify import to_error
from airflow_s3stream.s3.multipart.bodies import BufferBody, part_body
from airflow_s3stream.s3.multipart.checksums import PartHasher
from airflow_s3stream.s3.multipart.completion import complete_and_verify, put_and_verify
from airflow_s3stream.s3.multipart.config import MultipartConfig, PartSizer
from airflow_s3stream.s3.multipart.part_record import PartRecord
from airflow_s3stream.s3.multipart.result import UploadResult
from airflow_s3stream.s3.multipart.session import UploadSession
from airflow_s3stream.s3.multipart.staged import StagedUpload

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

__all__ = ["MultipartWriter"]

log = logging.getLogger("airflow_s3stream.s3.multipart")


class MultipartWriter(io.BufferedIOBase):
    """Write-only, non-seekable file object whose bytes become ``s3://bucket/key``.

    :param client: boto3 S3 client (its connection pool should hold ``max_concurrency``).
    :param config: part size, concurrency, checksum, retry; defaults from :class:`MultipartConfig`.
    :param extra_args: passed to CreateMultipartUpload / PutObject (``ContentType``, SSE, ...).
    :param expected_size: total bytes if known; only used to choose the part size.
    :param report_progress: log a progress line every ``config.progress_interval`` seconds (an
        export turns this off: it reports rows and bytes of all its files itself).
    :param stage: ``close()`` leaves the upload open and sets :attr:`staged` instead of completing
        it (:attr:`result` stays ``None``); ``abort()`` still aborts it until the caller takes over.
    """

    def __init__(
        self,
        client: S3Client,
        bucket: str,
        key: str,
        *,
        config: MultipartConfig | None = None,
        extra_args: dict[str, Any] | None = None,
        expected_size: int | None = None,
        report_progress: bool = True,
        stage: bool = False,
    ) -> None:
        super().__init__()
        self.config = config or MultipartConfig()
        self._session = UploadSession(client, bucket, key, self.config, extra_args=extra_args)
        self._sizer = PartSizer(expected_size, self.config.part_size)
        self._progress = Progress(
            self._session.uri,
            expected_size,
            self.config.progress_interval,
            report=log_progress if report_progress else None,
        )
        self._started = time.monotonic()
        self._buf: bytearray | None = None
        self._view: memoryview | None = None
        self._pos = 0
        self._number = 0  # parts handed to the pool
        self._written = 0
        self._slots = threading.Semaphore(self.config.max_concurrency)
        self._pool: ThreadPoolExecutor | None = None
        self._futures: list[Future[PartRecord]] = []
        self._spare: list[bytearray] = []  # part buffers whose upload finished, reused as they are
        self._spare_lock = threading.Lock()
        self._error: S3StreamError | None = None
        self._error_lock = threading.Lock()
        self._done = False
        self._aborted = False
        self._stage = stage
        release_large_buffers()  # part buffers freed by upload threads go back to the OS
        self.result: UploadResult | None = None
        self.staged: StagedUpload | None = None

    # -- io.BufferedIOBase ------------------------------------------------------------------

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False

    def seekable(self) -> bool:
        return False

    @property
    def closed(self) -> bool:
        return self._done

    def tell(self) -> int:
        """Bytes written so far."""
        return self._written

    def flush(self) -> None:
        """Nothing to do: only whole parts are sent before close()."""

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        """Append ``data`` (bytes, bytearray, memoryview); returns its length in bytes.

        Blocks while ``max_concurrency`` parts are uploading. Raises the error of a failed part
        (naming the part and ``s3://bucket/key``) after aborting the upload.
        """
        if self._done:
            raise ValueError(f"write to closed MultipartWriter for {self._session.uri}")
        self._raise_if_failed()
        src = memoryview(data).cast("B")
        n = len(src)
        off = 0
        while off < n:
            if self._view is None:
                self._start_part()
            assert self._buf is not None and self._view is not None
            take = min(len(self._buf) - self._pos, n - off)
            self._view[self._pos : self._pos + take] = src[off : off + take]
            self._pos += take
            off += take
            if self._pos == len(self._buf):
                self._hand_off()
        self._written += n
        return n

    def close(self) -> None:
        """Upload the last part, complete and verify; sets :attr:`result` (staged: leaves the upload
        open and sets :attr:`staged`). Aborts on failure."""
        if self._done:
            return
        try:
            self._finish()
        except BaseException:
            self.abort()
            raise
        finally:
            self._done = True
            if self._pool is not None:
                self._pool.shutdown(wait=True)

    def abort(self) -> None:
        """Stop, wait for parts in flight, and abort the multipart upload.

        Idempotent: a second call, or one after :meth:`close` (whether it succeeded or failed and
        aborted already), does nothing.
        """
        if self._aborted or self.result is not None:
            return
        self._aborted = True
        self._done = True
        if self._pool is not None:
            for future in self._futures:
                future.cancel()
            self._pool.shutdown(wait=True)
        self._session.abort()
        self._buf = self._view = None

    def __enter__(self) -> MultipartWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is not None:
            log.warning("aborting upload of %s: %s", self._session.uri, exc_type.__name__)
            self.abort()
        else:
            self.close()

    def __del__(self) -> None:
        # io.IOBase.__del__ would close(), i.e. publish a half-written object. Aborting is no better
        # here: network calls from the garbage collector run on any thread, at any time, even during
        # interpreter shutdown. So only say what is left behind.
        if getattr(self, "_done", True):
            return
        upload_id = self._session.upload_id
        if upload_id is not None:
            log.warning(
                "MultipartWriter for %s was dropped without close() or abort(): multipart upload %s stays open "
                "(and billed) until the bucket's lifecycle rule or abort_stale_uploads removes it",
                self._session.uri,
                upload_id,
            )

    # -- internals --------------------------------------------------------------------------

    def _start_part(self) -> None:
        # Recycling buffers keeps memory at (max_concurrency + 1) parts: freshly allocated 16 MiB
        # buffers fragment glibc's heap once its mmap threshold has adapted, and RSS creeps up.
        size = self._sizer.size_of(self._number + 1)
        with self._spare_lock:
            spare = [b for b in self._spare if len(b) == size]
            self._spare.clear()
        self._buf = spare[0] if spare else bytearray(size)
        self._view = memoryview(self._buf)
        self._pos = 0

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            error = self._error
            self.abort()
            raise error

    def _hand_off(self) -> None:
        """Give the current buffer to the pool (blocking while the pool is full)."""
        assert self._buf is not None and self._view is not None
        if self._session.upload_id is None:
            self._session.create()
            log.info("started multipart upload of %s", self._session.uri)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.config.max_concurrency, thread_name_prefix="s3stream-part")
        self._view.release()
        buf = self._buf
        if self._pos < len(buf):
            del buf[self._pos :]
        self._buf = self._view = None
        self._pos = 0
        self._number += 1
        self._slots.acquire()
        self._raise_if_failed_released()
        future = self._pool.submit(self._upload, self._number, buf)
        future.add_done_callback(self._part_done)
        self._futures.append(future)

    def _raise_if_failed_released(self) -> None:
        if self._error is not None:
            self._slots.release()
            self._raise_if_failed()

    def _upload(self, number: int, buf: bytearray) -> PartRecord:
        if self._error is not None:
            raise UploadError(f"part {number} of {self._session.uri}: skipped after an earlier failure")
        digest = PartHasher.of(self._session.algorithm, self._session.md5_up_front, buf)
        record = self._session.upload_part(number, lambda: part_body(BufferBody(buf)), digest)
        with self._spare_lock:
            self._spare.append(buf)
        return record

    def _part_done(self, future: Future[PartRecord]) -> None:
        self._slots.release()
        if future.cancelled():
            return
        exc = future.exception()
        if exc is None:
            self._progress.add(future.result().size)
            return
        with self._error_lock:
            if self._error is None:
                self._error = to_error(exc, f"uploading {self._session.uri}")

    def _finish(self) -> None:
        self._raise_if_failed()
        if self._stage:
            self._finish_staged()
            return
        if self._session.upload_id is None:
            data = self._buf[: self._pos] if self._buf is not None else bytearray()
            if self._view is not None:
                self._view.release()
            self._buf = self._view = None
            digest = PartHasher.of(self._session.algorithm, self._session.wants_md5, data)
            finished = put_and_verify(self._session, data, digest)
            self.result = finished.result(self._session, self._sizer.size_of(1), self._started)
            return
        if self._pos > 0:
            self._hand_off()
        parts = [f.result() for f in self._futures_done()]
        finished = complete_and_verify(self._session, parts)
        self.result = finished.result(self._session, self._sizer.size_of(1), self._started, uploaded_parts=len(parts))
        self._progress.finish()

    def _finish_staged(self) -> None:
        """Upload the last part (a file smaller than one part is a one-part upload, the empty file a
        0-byte part) and keep the upload open."""
        if self._session.upload_id is None and self._buf is None:
            self._buf = bytearray()  # the empty file: no part-sized buffer for nothing
            self._view = memoryview(self._buf)
            self._pos = 0
        if self._pos > 0 or self._number == 0:
            self._hand_off()
        parts = [f.result() for f in self._futures_done()]
        session = self._session
        assert session.upload_id is not None
        self.staged = StagedUpload(
            session.bucket,
            session.key,
            session.upload_id,
            session.algorithm,
            session.checksum_type,
            tuple(sorted(parts, key=lambda p: p.number)),
        )
        self._progress.finish()

    def _futures_done(self) -> list[Future[PartRecord]]:
        wait(self._futures)
        for future in self._futures:
            exc = future.exception()
            if exc is not None:
                with self._error_lock:
                    if self._error is None:
                        self._error = to_error(exc, f"uploading {self._session.uri}")
        self._raise_if_failed()
        return self._futures
