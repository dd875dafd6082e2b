"""Sources a resumable upload reads: a local file by byte range, or an S3 object copied server side.

A local file is read with ``os.pread`` per part, from as many threads as parts are in flight, and
each part is streamed to the HTTP connection from the file rather than held in memory: a part is
read twice from the page cache (checksums first, then the send), so memory does not grow with the
part size. An S3 source in the same endpoint never passes through the worker (UploadPartCopy).
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from typing import Any

from airflow_s3stream.errors import SourceChangedError, SourceError
from airflow_s3stream.s3.multipart.bodies import FileRange, part_body
from airflow_s3stream.s3.multipart.checksums import PartDigest, PartHasher, crc_of
from airflow_s3stream.s3.multipart.resume import SourceFingerprint

__all__ = ["LocalFile", "S3Object", "parse_s3_uri"]

READ_BLOCK = 1024 * 1024  # bytes per pread while checksumming a part
SAMPLE_BYTES = 64 * 1024  # bytes in each of the three fingerprint samples (start, middle, end)


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

    def read(self, offset: int, length: int) -> bytes:
        return os.pread(self.fd, length, offset)

    def body(self, offset: int, length: int) -> io.BufferedReader:
        """A fresh seekable body for ``length`` bytes at ``offset`` (one per attempt)."""
        return part_body(FileRange(self.fd, offset, length))


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> ``(bucket, key)``; raises :class:`SourceError` if it is not one."""
    if not uri.startswith("s3://"):
        raise SourceError(f"{uri!r} is not an s3:// URI")
    bucket, _, key = uri[5:].partition("/")
    if not bucket or not key:
        raise SourceError(f"{uri!r} must name a bucket and a key: s3://bucket/key")
    return bucket, key


@dataclass(frozen=True)
class S3Object:
    """An S3 object in the destination's endpoint, identified by its ETag (and version)."""

    bucket: str
    key: str
    size: int
    etag: str
    version_id: str | None = None

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @classmethod
    def head(cls, client: Any, uri: str) -> S3Object:
        """HeadObject the source; raises :class:`SourceError` if it is missing or unreadable."""
        bucket, key = parse_s3_uri(uri)
        try:
            head = client.head_object(Bucket=bucket, Key=key)
        except Exception as exc:
            status = getattr(exc, "response", {}).get("ResponseMetadata", {}).get("HTTPStatusCode")
            reason = {404: "does not exist", 403: "access denied"}.get(status or 0, str(exc))
            raise SourceError(f"source {uri}: {reason}") from exc
        version = head.get("VersionId")
        return cls(bucket, key, int(head["ContentLength"]), str(head["ETag"]), version if version != "null" else None)

    def fingerprint(self) -> SourceFingerprint:
        return SourceFingerprint("s3", self.uri, self.size, f"{self.etag}/{self.version_id or ''}")

    def copy_source(self) -> dict[str, str]:
        source = {"Bucket": self.bucket, "Key": self.key}
        if self.version_id:
            source["VersionId"] = self.version_id
        return source
