"""A local file as the source of a resumable upload, read by byte range.

A local file is read with ``os.pread`` per part, from as many threads as parts are in flight, and
each part is streamed to the HTTP connection from the file rather than held in memory: a part is
read twice from the page cache (checksums first, then the send), so memory does not grow with the
part size.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
from typing import Any

from airflow_s3stream.errors import SourceChangedError, SourceError
from airflow_s3stream.s3.multipart.bodies import FileRange, part_body
from airflow_s3stream.s3.multipart.checksums import PartDigest, PartHasher, crc_of, looks_like_md5
from airflow_s3stream.s3.multipart.config import PartRange
from airflow_s3stream.s3.multipart.part_record import PartRecord
from airflow_s3stream.s3.multipart.session import UploadSession, checksum_value
from airflow_s3stream.units import KiB, MiB
from airflow_s3stream.upload.resume import SourceFingerprint

__all__ = ["FileSha256", "LocalFile"]

READ_BLOCK = 1 * MiB  # bytes per pread while checksumming a part
SAMPLE_BYTES = 64 * KiB  # bytes in each of the three fingerprint samples (start, middle, end)


class LocalFile:
    """A local file opened for ranged reads; use as a context manager."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self.fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError as exc:
            raise SourceError(f"source file {path} does not exist") from exc
        except IsADirectoryError as exc:
            raise SourceError(f"source {path} is a directory, not a file") from exc
        except OSError as exc:
            raise SourceError(f"source file {path} cannot be read: {exc.strerror}") from exc
        st = os.fstat(self.fd)
        self.size = st.st_size
        self.mtime_ns = st.st_mtime_ns

    def __enter__(self) -> LocalFile:
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)

    def fingerprint(self) -> SourceFingerprint:
        """Size, mtime and a CRC64NVME over three 64 KiB samples (start, middle, end)."""
        crc = 0
        for offset in sorted({0, max(0, self.size // 2 - SAMPLE_BYTES // 2), max(0, self.size - SAMPLE_BYTES)}):
            crc = crc_of("CRC64NVME", os.pread(self.fd, SAMPLE_BYTES, offset), crc)
        return SourceFingerprint("file", os.path.abspath(self.path), self.size, str(self.mtime_ns), f"{crc:016x}")

    def check_unchanged(self) -> None:
        """Raise :class:`SourceChangedError` if size or mtime differ from when it was opened."""
        st = os.stat(self.path)
        if (st.st_size, st.st_mtime_ns) != (self.size, self.mtime_ns):
            raise SourceChangedError(
                f"source file {self.path} changed during the upload "
                f"(size {self.size} -> {st.st_size}, mtime_ns {self.mtime_ns} -> {st.st_mtime_ns})"
            )

    def digest(self, offset: int, length: int, algorithm: str, md5: bool) -> PartDigest:
        """Checksums of ``length`` bytes at ``offset``, read in 1 MiB blocks into one buffer."""
        hasher = PartHasher(algorithm, md5)
        block = bytearray(min(READ_BLOCK, max(1, length)))
        view = memoryview(block)
        done = 0
        while done < length:
            n = os.preadv(self.fd, [view[: min(len(block), length - done)]], offset + done)
            if n == 0:
                raise SourceChangedError(f"source file {self.path} shrank during the upload")
            hasher.update(view[:n])
            done += n
        return hasher.digest()

    def stored_part(
        self, number: int, offset: int, length: int, algorithm: str, listed: dict[str, Any]
    ) -> PartRecord | None:
        """The record of part ``number`` if the server's ListParts entry ``listed`` holds exactly our
        bytes at ``offset``: same size, an ETag equal to their MD5 (and the same CRC where the server
        lists one). ``None`` otherwise (an opaque ETag under SSE-KMS included): the part is sent again.

        This is how a resumed upload keeps parts the server acknowledged after the last state write.
        """
        etag = str(listed.get("ETag", ""))
        if int(listed.get("Size", -1)) != length or not looks_like_md5(etag):
            return None
        digest = self.digest(offset, length, algorithm, md5=True)
        if digest.md5 != etag.strip('"').lower():
            return None
        checksum = checksum_value(algorithm, digest)
        server_checksum = listed.get(f"Checksum{algorithm}")
        if server_checksum and server_checksum != checksum:
            return None
        return PartRecord(number, length, etag, checksum, digest.md5)

    def send(self, session: UploadSession, part: PartRange) -> PartRecord:
        """Upload ``part`` into ``session``'s upload, streamed from the file (checksums first)."""
        digest = self.digest(part.offset, part.length, session.algorithm, session.md5_up_front)
        return session.upload_part(part.number, lambda: self.body(part.offset, part.length), digest)

    def recover(self, session: UploadSession, part: PartRange, listed: dict[str, Any]) -> PartRecord | None:
        """:meth:`stored_part` for ``part`` of ``session``'s upload, as ListParts ``listed`` it."""
        return self.stored_part(part.number, part.offset, part.length, session.algorithm, listed)

    def read(self, offset: int, length: int) -> bytes:
        return os.pread(self.fd, length, offset)

    def body(self, offset: int, length: int) -> io.BufferedReader:
        """A fresh seekable body for ``length`` bytes at ``offset`` (one per attempt)."""
        return part_body(FileRange(self.fd, offset, length, self.path))


class FileSha256:
    """SHA-256 of a file, computed by one sequential reader thread alongside the upload."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.value = ""
        self._thread = threading.Thread(target=self._run, name="s3stream-sha256", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        digest = hashlib.sha256()
        with open(self.path, "rb", buffering=0) as f:
            while chunk := f.read(READ_BLOCK):
                digest.update(chunk)
        self.value = digest.hexdigest()

    def join(self) -> str:
        """The hex digest, once the whole file was read."""
        self._thread.join()
        return self.value
