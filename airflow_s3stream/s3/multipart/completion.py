"""Finish an upload: complete (or single PUT), read the object back with HeadObject, verify.

Shared by the streaming writer and the resumable uploader so both publish the same way: an object
whose size, checksum or ETag disagrees with what we computed is deleted again and
:class:`~airflow_s3stream.errors.ChecksumMismatchError` is raised, so nothing corrupt stays visible.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from airflow_s3stream.errors import ChecksumMismatchError
from airflow_s3stream.s3.classify import classify, to_error
from airflow_s3stream.s3.multipart.checksums import (
    PartDigest,
    combine_full_object,
    composite_checksum,
    decode_checksum,
    encode_checksum,
    multipart_etag,
)
from airflow_s3stream.s3.multipart.config import CHECKSUM_MD5
from airflow_s3stream.s3.multipart.result import UploadResult
from airflow_s3stream.s3.multipart.session import PartRecord, UploadSession
from airflow_s3stream.s3.multipart.verify import ExpectedObject, verify_object

__all__ = ["Finished", "complete_and_verify", "put_and_verify"]

log = logging.getLogger("airflow_s3stream.s3.multipart")


@dataclass(frozen=True)
class Finished:
    """What completion produced, before the caller adds timing and counters."""

    size: int
    parts: int
    etag: str
    checksum: str
    verified: list[str]
    version_id: str | None

    def result(self, session: UploadSession, part_size: int, started: float, **extra: Any) -> UploadResult:
        return UploadResult(
            bucket=session.bucket,
            key=session.key,
            size=self.size,
            parts=self.parts,
            part_size=part_size,
            etag=self.etag,
            checksum_algorithm=session.algorithm,
            checksum_type=session.checksum_type if self.parts else "FULL_OBJECT",
            checksum=self.checksum,
            seconds=time.monotonic() - started,
            verified=self.verified,
            version_id=self.version_id,
            **extra,
        )


def _head_and_verify(session: UploadSession, expected: ExpectedObject) -> tuple[list[str], str]:
    if not session.config.verify_after_complete:
        return [], expected.checksum
    # x-amz-checksum-mode is a checksum header too: an MD5 upload's store may refuse it
    mode = {"ChecksumMode": "ENABLED"} if session.algorithm != CHECKSUM_MD5 else {}
    try:
        head = session.config.retry.call(
            lambda: session.client.head_object(Bucket=session.bucket, Key=session.key, **mode),
            what=f"reading back {session.uri}",
        )
    except Exception as exc:
        if not classify(exc).access_denied:
            raise to_error(exc, f"reading back {session.uri}") from exc
        # write-only credentials: the upload itself succeeded and S3 checked every part's CRC
        log.warning(
            "%s: no permission to read the object back (HeadObject); not verified after completion", session.uri
        )
        return [], expected.checksum
    try:
        verified = verify_object(head, expected)
    except ChecksumMismatchError as exc:
        session.client.delete_object(Bucket=session.bucket, Key=session.key)
        raise ChecksumMismatchError(f"{exc}; the object was deleted") from exc
    return verified, str(head.get(f"Checksum{session.algorithm}") or expected.checksum)


def complete_and_verify(session: UploadSession, parts: list[PartRecord]) -> Finished:
    """CompleteMultipartUpload with ``parts`` (numbered 1..N without gaps), then verify."""
    parts = sorted(parts, key=lambda p: p.number)
    if [p.number for p in parts] != list(range(1, len(parts) + 1)):
        raise AssertionError(f"parts of {session.uri} are not 1..{len(parts)}")
    algorithm = session.algorithm
    have_crcs = algorithm != CHECKSUM_MD5 and all(p.checksum for p in parts)
    full_crc = None
    if session.full_object and have_crcs:
        full_crc = combine_full_object(algorithm, ((decode_checksum(p.checksum), p.size) for p in parts))
    response = session.complete(parts, full_crc)
    if full_crc is not None:
        checksum = encode_checksum(algorithm, full_crc)
    elif have_crcs:
        checksum = composite_checksum(algorithm, [decode_checksum(p.checksum) for p in parts])
    else:
        checksum = ""
    size = sum(p.size for p in parts)
    expected_etag = multipart_etag([p.md5 for p in parts]) if all(p.md5 for p in parts) else ""
    expected = ExpectedObject(
        uri=session.uri,
        size=size,
        algorithm=algorithm,
        checksum=expected_etag if algorithm == CHECKSUM_MD5 else checksum,  # an MD5 upload's checksum: its ETag
        full_object=session.full_object,
        parts=len(parts),
        etag=expected_etag,
    )
    verified, reported = _head_and_verify(session, expected)
    etag = str(response.get("ETag", "")).strip('"')
    return Finished(size, len(parts), etag, reported, verified, response.get("VersionId"))


def put_and_verify(session: UploadSession, data: bytes | bytearray, digest: PartDigest) -> Finished:
    """PutObject ``data`` (smaller than one part, possibly empty), then verify."""
    response = session.put_object(data, digest)
    checksum = digest.md5 if session.algorithm == CHECKSUM_MD5 else encode_checksum(session.algorithm, digest.crc)
    expected = ExpectedObject(session.uri, digest.size, session.algorithm, checksum, True, 0, digest.md5)
    verified, reported = _head_and_verify(session, expected)
    etag = str(response.get("ETag", "")).strip('"')
    return Finished(digest.size, 0, etag, reported, verified, response.get("VersionId"))
