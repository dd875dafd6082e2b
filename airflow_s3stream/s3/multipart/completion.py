"""Finish an upload: complete (or single PUT), read the object back with HeadObject, verify.

Shared by the streaming writer and the resumable uploader so both publish the same way: an object
whose size, checksum or ETag disagrees with what we computed raises
:class:`~airflow_s3stream.errors.ChecksumMismatchError`. It is deleted again only when another of
its identities (multipart ETag or checksum) matches ours, i.e. it is provably made of our bytes:
a 200 to CompleteMultipartUpload does not prove that the object is this upload's (Ceph RGW answers
a Complete of an upload id it does not hold with 200 and the ETag of the object already at the
key; another writer may replace the key between Complete and HeadObject), and deleting an object
that is not ours would destroy someone else's data.

The result separates what we computed from what the store said: ``checksum`` is ours,
``store_checksum`` what HeadObject reported (``''``: none), ``etag`` the object's (HeadObject's
when Complete answered none, as Ceph RGW's first Complete does; HEAD is then sent for it even when
``verify_after_complete`` is off).

CompleteMultipartUpload is not idempotent: it can succeed while its answer is lost, and the retry
(or the next try, after a worker was killed waiting) then hears ``NoSuchUpload``. The upload is
then judged by the object: :func:`confirm_completed` reads it back and reports success only when
its size and its multipart ETag (``md5(part MD5s)-N``, known when part MD5s were computed) or its
checksum (composite ``<base64>-N`` or full-object, when the server reports it) are exactly what
completing these parts produces. When nothing can identify it, the upload fails saying the
completion could not be confirmed; it never reports success it cannot prove.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from airflow_s3stream.errors import ChecksumMismatchError, DestinationError, UploadError
from airflow_s3stream.s3.classify import classify, raise_error
from airflow_s3stream.s3.multipart.checksums import (
    PartDigest,
    combine_full_object,
    composite_checksum,
    decode_checksum,
    encode_checksum,
    multipart_etag,
)
from airflow_s3stream.s3.multipart.config import CHECKSUM_MD5
from airflow_s3stream.s3.multipart.part_record import PartRecord, UploadGoneError
from airflow_s3stream.s3.multipart.result import UploadResult
from airflow_s3stream.s3.multipart.session import UploadSession
from airflow_s3stream.s3.multipart.verify import ExpectedObject, compare_object, verify_object
from airflow_s3stream.s3.objects import head_object

__all__ = ["Finished", "complete_and_verify", "confirm_completed", "put_and_verify"]

log = logging.getLogger("airflow_s3stream.s3.multipart")


@dataclass(frozen=True)
class Finished:
    """What completion produced, before the caller adds timing and counters."""

    size: int
    parts: int
    etag: str
    checksum: str  # ours, computed locally
    verified: list[str]
    version_id: str | None
    store_checksum: str | None = None  # what HeadObject reported; '' none, None not read back

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
            store_checksum=self.store_checksum,
            checked_by_store=session.checked_by_store,
            seconds=time.monotonic() - started,
            verified=self.verified,
            version_id=self.version_id,
            **extra,
        )


@dataclass(frozen=True)
class _ReadBack:
    verified: list[str]
    etag: str
    store_checksum: str | None


def _read_back(session: UploadSession, expected: ExpectedObject, answer: dict[str, Any]) -> _ReadBack:
    """HeadObject after Complete or PutObject (``answer``): verify (``verify_after_complete``), and
    take the ETag from it when the answer had none. Deletes a mismatching object only when it is
    provably ours (module docstring)."""
    answered = str(answer.get("ETag") or "").strip('"')
    verify = session.config.verify_after_complete
    if not verify and answered:
        return _ReadBack([], answered, _answered_checksum(session, answer))
    mode = session.plan.ask_args()
    try:
        head: dict[str, Any] = session.config.retry.call(
            lambda: dict(session.client.head_object(Bucket=session.bucket, Key=session.key, **mode)),
            what=f"reading back {session.uri}",
        )
    except Exception as exc:
        if not classify(exc).access_denied:
            raise_error(exc, f"reading back {session.uri}")
        log.warning(
            "%s: no permission to read the object back (HeadObject); not verified after completion%s",
            session.uri,
            "" if answered else ", and its ETag is unknown (the store answered none)",
        )
        return _ReadBack([], answered, _answered_checksum(session, answer))
    etag = str(head.get("ETag") or "").strip('"') or answered
    stored = session.plan.stored(head)
    if not verify:
        return _ReadBack([], etag, stored)
    comparison = compare_object(head, expected)
    if comparison.mismatches:
        problem = f"{session.uri}: {'; '.join(comparison.mismatches)}"
        if not comparison.identified:
            raise ChecksumMismatchError(
                f"{problem}; left as it is: nothing identifies it as the object this upload made (another "
                "writer may have replaced it, or the store answered for an upload it did not hold)"
            )
        session.client.delete_object(Bucket=session.bucket, Key=session.key)
        raise ChecksumMismatchError(f"{problem}; the object was deleted")
    return _ReadBack(comparison.verified, etag, stored)


def _answered_checksum(session: UploadSession, answer: dict[str, Any]) -> str | None:
    """The store's checksum in a Complete/PutObject answer, ``None`` when it gave none (not read back)."""
    return session.plan.stored(answer) or None


def _expected(session: UploadSession, parts: list[PartRecord]) -> tuple[ExpectedObject, int | None]:
    """What completing ``parts`` (numbered 1..N without gaps) produces, and the full-object CRC to send."""
    parts = sorted(parts, key=lambda p: p.number)
    if [p.number for p in parts] != list(range(1, len(parts) + 1)):
        raise AssertionError(f"parts of {session.uri} are not 1..{len(parts)}")
    algorithm = session.algorithm
    have_crcs = algorithm != CHECKSUM_MD5 and all(p.checksum for p in parts)
    full_crc = None
    if session.full_object and have_crcs:
        full_crc = combine_full_object(algorithm, ((decode_checksum(p.checksum), p.size) for p in parts))
    if full_crc is not None:
        checksum = encode_checksum(algorithm, full_crc)
    elif have_crcs:
        checksum = composite_checksum(algorithm, [decode_checksum(p.checksum) for p in parts])
    else:
        checksum = ""
    expected_etag = multipart_etag([p.md5 for p in parts]) if all(p.md5 for p in parts) else ""
    expected = ExpectedObject(
        uri=session.uri,
        size=sum(p.size for p in parts),
        algorithm=algorithm,
        checksum=expected_etag if algorithm == CHECKSUM_MD5 else checksum,  # an MD5 upload's checksum: its ETag
        full_object=session.full_object,
        parts=len(parts),
        etag=expected_etag,
    )
    return expected, full_crc


def complete_and_verify(session: UploadSession, parts: list[PartRecord]) -> Finished:
    """CompleteMultipartUpload with ``parts`` (numbered 1..N without gaps), then verify.

    A ``NoSuchUpload`` answer (the completion's first answer was lost, or the upload was aborted)
    is settled by :func:`confirm_completed`: success if the object is the one these parts make,
    else :class:`~airflow_s3stream.errors.UploadError` saying why.
    """
    expected, full_crc = _expected(session, parts)
    try:
        response = session.complete(parts, full_crc)
    except UploadGoneError as gone:
        log.warning("%s; checking whether %s is the object it would have made", gone, session.uri)
        return confirm_completed(session, parts, because=str(gone))
    back = _read_back(session, expected, response)
    return Finished(
        expected.size,
        expected.parts,
        back.etag,
        expected.checksum,
        back.verified,
        response.get("VersionId"),
        back.store_checksum,
    )


def confirm_completed(session: UploadSession, parts: list[PartRecord], *, because: str = "") -> Finished:
    """Settle an upload the server no longer knows: is ``s3://bucket/key`` what completing ``parts``
    (numbered 1..N) made?

    HeadObject (``ChecksumMode=ENABLED``, retried) must show the expected size and at least one
    identity: the multipart ETag (when every part's MD5 was computed) or the checksum (when the
    server reports it in a comparable form). Returns the :class:`Finished` of that object, which is
    left as it is. Raises :class:`~airflow_s3stream.errors.UploadError` naming the object when it
    does not exist (the upload was aborted), is another object, or cannot be identified
    ("could not be confirmed"); nothing is deleted, since the object may not be ours.
    ``because`` prefixes those messages (what made the check necessary).
    """
    expected, _ = _expected(session, parts)
    prefix = f"{because}; " if because else ""
    try:
        head = head_object(session.client, session.bucket, session.key, session.config.retry, **session.plan.ask_args())
    except DestinationError as exc:  # what a refused HeadObject of a destination raises (write-only credentials)
        raise UploadError(
            f"{prefix}{session.uri}: the completion of upload {session.upload_id} could not be confirmed: "
            f"no permission to read the object back ({exc})"
        ) from exc
    if head is None:
        raise UploadError(
            f"{prefix}{session.uri} does not exist: upload {session.upload_id} was aborted (a lifecycle rule, "
            "abort_stale_uploads or another try) before it completed"
        )
    try:
        verified = verify_object(head, expected)
    except ChecksumMismatchError as exc:
        raise UploadError(
            f"{prefix}{session.uri} is not the object upload {session.upload_id} makes ({exc}): the upload was "
            "aborted, or another writer replaced the object"
        ) from exc
    if "etag" not in verified and "checksum" not in verified:
        raise UploadError(
            f"{prefix}{session.uri}: the completion of upload {session.upload_id} could not be confirmed: the "
            f"object has the expected size ({expected.size} bytes) but neither a multipart ETag to compare "
            f"(part MD5s {'were not computed' if not expected.etag else 'do not apply to its ETag'}) nor a "
            f"comparable {expected.algorithm} checksum; it may or may not be this upload's"
        )
    log.info("%s: upload %s had completed (%s match); not sent again", session.uri, session.upload_id, verified)
    stored = session.plan.stored(head)
    version = head.get("VersionId")
    etag = str(head.get("ETag", "")).strip('"')
    return Finished(
        expected.size, expected.parts, etag, expected.checksum, verified, version if version != "null" else None, stored
    )


def put_and_verify(session: UploadSession, data: bytes | bytearray, digest: PartDigest) -> Finished:
    """PutObject ``data`` (smaller than one part, possibly empty), then verify."""
    response = session.put_object(data, digest)
    checksum = digest.md5 if session.algorithm == CHECKSUM_MD5 else encode_checksum(session.algorithm, digest.crc)
    expected = ExpectedObject(session.uri, digest.size, session.algorithm, checksum, True, 0, digest.md5)
    back = _read_back(session, expected, response)
    return Finished(digest.size, 0, back.etag, checksum, back.verified, response.get("VersionId"), back.store_checksum)
