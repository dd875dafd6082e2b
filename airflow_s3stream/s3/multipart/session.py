"""One multipart upload on the wire: create, upload or copy parts with retries, complete, abort.

Both the streaming :class:`~.writer.MultipartWriter` and the resumable source uploader go through
:class:`UploadSession`, so there is one place that talks S3's multipart API. Every part is sent with
its locally computed additional checksum (so botocore computes no other one) and, when configured,
its MD5 is compared with the ETag the server answers; a part whose bytes arrived corrupted is sent
again, and after the retry budget :class:`~airflow_s3stream.errors.ChecksumMismatchError` names it.

With the ``MD5`` algorithm a part carries ``Content-MD5`` and no additional checksum header at all
(botocore is kept from adding one: :func:`~airflow_s3stream.s3.checksum_headers.without_checksum_headers`).
At its first upload I/O (reading :attr:`UploadSession.algorithm` under ``auto``, or the first
create, part, PutObject or Complete) a session learns what its endpoint checks
(:func:`~airflow_s3stream.s3.store_checks.store_checks`: one probe per endpoint per process).
``auto`` then sends CRC32C where the store checks it (or nothing could be learnt) and MD5 where it
ignores or refuses additional checksums. If the store still refuses the header at
CreateMultipartUpload, PutObject or a part before any part is stored, the session switches to MD5
once (aborting and re-creating an upload already created with the CRC, so no upload mixes
algorithms) and the endpoint is remembered. :attr:`UploadSession.checked_by_store` says what the
store is known to have checked of what this session sent.

The two calls that are not idempotent handle a lost answer (a reset or timeout after the server
acted) explicitly. A lost CreateMultipartUpload may have started an upload nobody tracks: the key's
open uploads are listed before the first Create, and uploads of the key that appeared meanwhile are
aborted afterwards. A CompleteMultipartUpload that is retried after its first answer was lost may
meet ``NoSuchUpload``: :class:`UploadGoneError` tells the caller to look at the object instead
(:func:`~.completion.complete_and_verify` does).
"""

from __future__ import annotations

import dataclasses
import functools
import io
import logging
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import IO, Any

from airflow_s3stream.errors import ChecksumMismatchError, SourceChangedError, UploadError
from airflow_s3stream.s3.checksum_plan import ChecksumPlan
from airflow_s3stream.s3.classify import CorruptedInTransitError, checksum_problem, classify, raise_error
from airflow_s3stream.s3.client import warn_if_retrying
from airflow_s3stream.s3.multipart.bodies import hashing_raw
from airflow_s3stream.s3.multipart.checksums import PartDigest, looks_like_md5
from airflow_s3stream.s3.multipart.cleanup import abort_untracked, abort_upload, open_upload_ids
from airflow_s3stream.s3.multipart.config import CHECKSUM_AUTO, CHECKSUM_MD5, MultipartConfig
from airflow_s3stream.s3.store_checks import (
    StoreChecks,
    remember_refusal,
    store_checks,
)

__all__ = ["Body", "PartRecord", "UploadGoneError", "UploadSession", "checksum_value"]

log = logging.getLogger("airflow_s3stream.s3.multipart")

Body = bytes | bytearray | IO[bytes] | io.RawIOBase


class UploadGoneError(UploadError):
    """The server no longer knows the multipart upload (``NoSuchUpload``): it was completed (perhaps
    by an earlier attempt whose answer was lost), aborted, or expired. Only the object can tell which."""


@dataclass(frozen=True)
class PartRecord:
    """A part the server has stored: what CompleteMultipartUpload and the resume state need."""

    number: int
    size: int
    etag: str
    checksum: str  # base64 CRC (or Content-MD5) we computed and sent ('' for copies we cannot see)
    md5: str = ""  # hex MD5 we computed ('' when not computed)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PartRecord:
        return cls(**{k: data[k] for k in ("number", "size", "etag", "checksum", "md5")})


class UploadSession:
    """The multipart API calls for ``s3://bucket/key``; ``upload_id`` set once created or resumed.

    :param client: a boto3 S3 client (thread-safe; size its pool to ``max_concurrency``).
    :param extra_args: CreateMultipartUpload/PutObject arguments such as ``ContentType``,
        ``ServerSideEncryption``, ``Metadata``.

    ``algorithm`` is the checksum algorithm in use (``config.checksum_algorithm``, with ``auto``
    resolved to CRC32C or MD5 when first read: that may probe the endpoint); a resumed upload must
    set it to the one the upload was created with.
    ``on_restart`` is called after ``auto`` replaced the upload by an MD5 one (new ``upload_id``).
    """

    def __init__(
        self,
        client: Any,
        bucket: str,
        key: str,
        config: MultipartConfig,
        *,
        extra_args: dict[str, Any] | None = None,
        upload_id: str | None = None,
    ) -> None:
        warn_if_retrying(client)
        self.client = client
        self.bucket = bucket
        self.key = key
        self.config = config
        self.extra_args = dict(extra_args or {})
        self.upload_id = upload_id
        self.auto = config.checksum_algorithm == CHECKSUM_AUTO
        self._algorithm: str | None = None if self.auto else config.checksum_algorithm  # auto: at first I/O
        self.uri = f"s3://{bucket}/{key}"
        self.server_echoes_checksums = False  # set once an UploadPart answer repeats our CRC
        self._ended = False  # completed or aborted: a later abort() is a no-op
        self.on_restart: Callable[[UploadSession], None] | None = None
        self._switch = threading.RLock()  # guards algorithm/upload_id while auto switches to MD5
        self._stored = 0  # parts stored in the current upload: once one is, the algorithm is final
        self._created = False  # this session created its upload (a resumed one never switches)
        self._copied = False  # a part was copied server side: no checksum of ours went with its bytes

    @property
    def algorithm(self) -> str:
        """The checksum algorithm in use; under ``auto`` chosen on first use from what the store
        checks (:func:`~airflow_s3stream.s3.store_checks.choose_algorithm`; may probe the endpoint)."""
        if self._algorithm is None:
            chosen = ChecksumPlan.choose(self.config.checksum_algorithm, self.checks).algorithm
            with self._switch:
                if self._algorithm is None:
                    self._algorithm = chosen
        return self._algorithm

    @algorithm.setter
    def algorithm(self, value: str) -> None:
        self._algorithm = value

    @property
    def checks(self) -> StoreChecks:
        """What this session's endpoint checks; probed the first time any session needs it."""
        return self._learn_checks()

    def _learn_checks(self) -> StoreChecks:
        # what auto needs to choose, then what the algorithm in use needs for its claims
        wanted = self._algorithm or self.config.checksum_algorithm
        return store_checks(self.client, self.bucket, self.config.retry, wanted)

    @property
    def plan(self) -> ChecksumPlan:
        """The checksum plan of the algorithm in use on this endpoint (may probe it, like :attr:`checks`)."""
        return ChecksumPlan(self.algorithm, self.checks)

    @property
    def checked_by_store(self) -> list[str]:
        """What the store is known to have checked of the bytes this session sent: ``["Content-MD5"]``,
        ``["CRC32C"]`` (or the CRC the server echoed), or ``[]`` (nothing known, or a server-side copy)."""
        if self._copied:
            return []
        return self.plan.checked_by_store(echoed=self.server_echoes_checksums)

    @property
    def checksum_type(self) -> str:
        """``COMPOSITE`` or ``FULL_OBJECT`` for the algorithm in use (an MD5 upload is composite)."""
        return "COMPOSITE" if self.algorithm == CHECKSUM_MD5 else str(self.config.checksum_type)

    @property
    def full_object(self) -> bool:
        """True when the object's checksum is a CRC of all its bytes (see ``MultipartConfig``)."""
        return self.checksum_type == "FULL_OBJECT"

    @property
    def can_fall_back(self) -> bool:
        """``auto`` may still switch this upload to MD5: nothing was stored with the CRC yet."""
        created_or_none = self.upload_id is None or self._created
        return self.auto and self.algorithm != CHECKSUM_MD5 and self._stored == 0 and created_or_none

    @property
    def wants_md5(self) -> bool:
        """Whether parts need their MD5 (see ``MultipartConfig.verify_part_etag``)."""
        if self.md5_up_front:
            return True
        if self.config.verify_part_etag == "auto":
            return not self.server_echoes_checksums
        return bool(self.config.verify_part_etag)

    @property
    def md5_up_front(self) -> bool:
        """Whether a part's MD5 must be known before it is sent: it is the ``Content-MD5`` header
        (the MD5 algorithm), or may have to be (``auto`` may still fall back). Otherwise the MD5
        for the ETag check is computed from the bytes as they are sent (:meth:`upload_part`)."""
        return self.algorithm == CHECKSUM_MD5 or self.can_fall_back

    def _call(self, what: str, fn: Callable[[], Any], *, fall_back: bool = False) -> Any:
        algorithm = self.algorithm
        try:
            return self.config.retry.call(fn, what=what)
        except Exception as exc:
            if fall_back and self._fall_back(exc, algorithm, what):
                return self._call(what, fn)  # ``fn`` reads the algorithm again: MD5 now
            raise_error(exc, what)

    def _fall_back(self, exc: BaseException, used: str, what: str) -> bool:
        """Switch to MD5 if ``exc`` is the store refusing the checksum header of a request sent with
        ``used`` and ``auto`` still may; True when that request should be sent again.

        An upload already created with the CRC (the refusal came at its first part) is aborted and
        created again without one, so no upload ever holds parts of two algorithms.
        """
        if used == CHECKSUM_MD5 or not self.auto:
            return False
        failure = classify(exc)
        if not failure.checksum_headers_refused:
            return False
        with self._switch:
            if self._algorithm == CHECKSUM_MD5:
                return True  # another part switched this upload meanwhile
            if not self.can_fall_back:
                return False
            remember_refusal(self.client, what, failure)
            self._algorithm = CHECKSUM_MD5
            if self.upload_id is not None:
                refused = self.upload_id
                self.abort()
                self.upload_id = None
                self.create()
                log.info("%s: upload %s replaced by %s without checksum headers", self.uri, refused, self.upload_id)
                if self.on_restart is not None:
                    self.on_restart(self)
        return True

    def _current(self) -> tuple[str, str | None]:
        algorithm = self.algorithm  # resolved outside the lock (it may probe)
        with self._switch:
            return self._algorithm or algorithm, self.upload_id

    def _stored_in(self, upload_id: str | None) -> bool:
        """Count a part stored in ``upload_id``; False when that upload was replaced meanwhile."""
        with self._switch:
            if upload_id != self.upload_id:
                return False
            self._stored += 1
            return True

    def create(self) -> str:
        """CreateMultipartUpload with the checksum algorithm and type in use (none for MD5); returns
        the id. Under ``auto`` a store refusing the checksum headers is asked again without them.

        A Create whose answer was lost (reset, timeout) may have started an upload that nobody
        tracks and that is billed until a lifecycle rule removes it. So the key's open uploads are
        listed first, and when an attempt's answer was lost, every upload of the key that was not
        open before (other than the one finally returned) is aborted once the retries are over.
        Uploads that were open before are left alone: another live try may own them. Without
        permission to list uploads, the cleanup is skipped with a warning.
        """
        what = f"creating a multipart upload for {self.uri}"
        self._learn_checks()  # the first upload I/O: learn what the store checks before using it
        known = open_upload_ids(self.client, self.bucket, self.key, self.config.retry)
        lost = False

        def attempt() -> Any:
            nonlocal lost
            try:
                return self.client.create_multipart_upload(
                    Bucket=self.bucket,
                    Key=self.key,
                    **self.plan.create_args(self.config.checksum_type),
                    **self.extra_args,
                )
            except Exception as exc:
                lost = lost or classify(exc).retryable  # the server may have acted
                raise

        try:
            response = self._call(what, attempt, fall_back=True)
        except Exception:
            if lost:
                abort_untracked(self.client, self.bucket, self.key, self.config.retry, known=known, keep=None)
            raise
        self.upload_id = str(response["UploadId"])
        self._created = True
        self._ended = False
        if lost:
            abort_untracked(self.client, self.bucket, self.key, self.config.retry, known=known, keep=self.upload_id)
        return self.upload_id

    def _mismatch(self, response: dict[str, Any], digest: PartDigest, sent: str, algorithm: str) -> str | None:
        echoed = response.get(f"Checksum{algorithm}")
        if echoed and echoed != sent:
            return f"{algorithm} mismatch (sent {sent}, server stored {echoed})"
        if echoed:
            self.server_echoes_checksums = True
        etag = str(response.get("ETag", ""))
        if digest.md5 and looks_like_md5(etag) and etag.strip('"') != digest.md5:
            return f"MD5 mismatch (sent {digest.md5}, server stored {etag.strip(chr(34))})"
        return None

    def upload_part(self, number: int, body: Callable[[], Body], digest: PartDigest) -> PartRecord:
        """UploadPart ``number`` with the bytes ``body()`` returns (called again for each attempt).

        ``digest`` carries the size and CRC (and the MD5 when :attr:`md5_up_front`). When the MD5
        is wanted only for the ETag check, a :func:`~.bodies.part_body` body hashes the bytes as
        botocore sends them. Transient failures and bytes the server stored differently from what
        we hashed (or refused as corrupt) are retried by the policy, so a part is sent at most
        ``retry.max_attempts`` times in all; then :class:`ChecksumMismatchError` (corruption) or
        :class:`~airflow_s3stream.errors.TransientError`. Other failures raise our errors naming
        part and URI.
        """
        assert self.upload_id is not None, "create() first"
        self._learn_checks()  # a resumed session's first I/O may be a part
        algorithm, upload_id = self._current()
        plan = ChecksumPlan(algorithm, self.checks)
        what = f"part {number} of {self.uri}"
        try:
            with plan.guard(self.client):
                record = self.config.retry.call(
                    lambda: self._send_part(number, body, digest, plan, upload_id),
                    what=what,
                    on_retry=functools.partial(_log_corruption, what),
                )
        except Exception as exc:
            if self._current()[1] != upload_id or self._fall_back(exc, algorithm, what):
                return self.upload_part(number, body, digest)  # to the MD5 upload that replaced it
            raise_error(exc, what)
        if not self._stored_in(upload_id):
            return self.upload_part(number, body, digest)  # its upload was replaced meanwhile
        return record

    def _send_part(
        self, number: int, body: Callable[[], Body], digest: PartDigest, plan: ChecksumPlan, upload_id: str | None
    ) -> PartRecord:
        """One UploadPart; :class:`CorruptedInTransitError` when the answer shows other bytes were stored."""
        sent = plan.value(digest)
        part = body()
        raw = hashing_raw(part) if not digest.md5 and self.wants_md5 else None
        if raw is not None:
            raw.hash_md5()
        response = self.client.upload_part(
            Bucket=self.bucket,
            Key=self.key,
            UploadId=upload_id,
            PartNumber=number,
            Body=part,
            ContentLength=digest.size,
            **plan.send_args(sent),
        )
        checked = digest if raw is None else dataclasses.replace(digest, md5=raw.md5_hexdigest())
        mismatch = self._mismatch(dict(response), checked, sent, plan.algorithm)
        if mismatch is not None:
            raise CorruptedInTransitError(mismatch)
        return PartRecord(number, checked.size, str(response["ETag"]), sent, checked.md5)

    def copy_part(self, number: int, copy_source: dict[str, Any], first: int, last: int, if_match: str) -> PartRecord:
        """UploadPartCopy bytes ``first..last`` (inclusive) of ``copy_source`` into part ``number``.

        ``if_match`` is the source ETag we planned with: a replaced source fails the part with
        :class:`SourceChangedError` instead of mixing two versions.
        """
        assert self.upload_id is not None, "create() first"
        what = f"part {number} of {self.uri} (server-side copy)"
        try:
            response = self.config.retry.call(
                lambda: self.client.upload_part_copy(
                    Bucket=self.bucket,
                    Key=self.key,
                    UploadId=self.upload_id,
                    PartNumber=number,
                    CopySource=copy_source,
                    CopySourceRange=f"bytes={first}-{last}",
                    CopySourceIfMatch=if_match,
                ),
                what=what,
            )
        except Exception as exc:
            if classify(exc).precondition_failed:
                raise SourceChangedError(
                    f"{what}: source s3://{copy_source['Bucket']}/{copy_source['Key']} "
                    f"was replaced during the copy (ETag is no longer {if_match})"
                ) from exc
            raise_error(exc, what)
        self._copied = True
        result = response.get("CopyPartResult", {})
        return PartRecord(
            number, last - first + 1, str(result["ETag"]), str(result.get(f"Checksum{self.algorithm}", ""))
        )

    def complete(self, parts: list[PartRecord], full_object_crc: int | None) -> dict[str, Any]:
        """CompleteMultipartUpload with ``parts`` (any order); sends the full-object CRC when given.

        Retried like every call, although it is not idempotent: when the server answers
        ``NoSuchUpload`` (to a retry whose first attempt completed the upload, or because the
        upload was aborted), raises :class:`UploadGoneError`; whether the object is ours is for the
        caller to check. Other failures raise the package's errors naming the object.
        """
        assert self.upload_id is not None, "create() first"
        self._learn_checks()  # a staged upload's Complete may be the first I/O in this process
        plan = self.plan
        listed = [plan.part_entry(p.number, p.etag, p.checksum) for p in sorted(parts, key=lambda p: p.number)]
        extra = plan.full_object_args(full_object_crc)
        what = f"completing the multipart upload of {self.uri}"
        try:
            response = self.config.retry.call(
                lambda: self.client.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=self.key,
                    UploadId=self.upload_id,
                    MultipartUpload={"Parts": listed},
                    **extra,
                ),
                what=what,
            )
        except Exception as exc:
            failure = classify(exc)
            if failure.not_found:
                raise UploadGoneError(
                    f"{what}: upload {self.upload_id} no longer exists ({failure.describe()})"
                ) from exc
            raise_error(exc, what)
        self._ended = True
        return dict(response)

    def abort(self) -> None:
        """AbortMultipartUpload. Never raises; idempotent: an upload already gone is fine, and a
        second call, or one after a successful :meth:`complete`, sends nothing."""
        if self.upload_id is None or self._ended:
            return
        if not abort_upload(self.client, self.bucket, self.key, self.upload_id, self.config.retry):
            return  # not ended: a later abort() tries again
        self._ended = True
        log.info("aborted multipart upload %s of %s", self.upload_id, self.uri)

    def put_object(self, data: bytes | bytearray, digest: PartDigest) -> dict[str, Any]:
        """PutObject for an object smaller than one part (including the empty object).

        Under ``auto`` a store refusing the checksum header gets the object again with MD5.
        """
        self._learn_checks()  # explicit algorithms too: the result says what the store checked
        plan = self.plan
        algorithm, sent = plan.algorithm, plan.value(digest)
        what = f"uploading {self.uri}"
        try:
            with plan.guard(self.client):
                response = self.config.retry.call(
                    lambda: self.client.put_object(
                        Bucket=self.bucket,
                        Key=self.key,
                        Body=data,
                        **plan.send_args(sent),
                        **self.extra_args,
                    ),
                    what=what,
                )
        except Exception as exc:
            if self._fall_back(exc, algorithm, what):
                return self.put_object(data, digest)
            raise_error(exc, what)
        mismatch = self._mismatch(response, digest, sent, algorithm)
        if mismatch is not None:
            # Only servers that ignore checksums get here: take the corrupt object down again.
            self._call(
                f"deleting corrupt {self.uri}", lambda: self.client.delete_object(Bucket=self.bucket, Key=self.key)
            )
            raise ChecksumMismatchError(f"{what}: {mismatch}; the object was deleted")
        return dict(response)

    def list_parts(self) -> dict[int, dict[str, Any]] | None:
        """Parts the server holds for this upload, by part number (ListParts, all pages), or
        ``None`` when the upload no longer exists (``NoSuchUpload``: completed, aborted, expired).

        Throttling, 5xx and resets are retried by the policy; any other refusal (``AccessDenied``)
        raises the package's error naming the upload and the key: it says nothing about the upload.
        """
        assert self.upload_id is not None
        what = f"listing the parts of upload {self.upload_id} of {self.uri}"

        def pages() -> list[dict[str, Any]]:
            paginator = self.client.get_paginator("list_parts")
            return list(paginator.paginate(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id))

        try:
            listed = self.config.retry.call(pages, what=what)
        except Exception as exc:
            if classify(exc).not_found:
                return None
            raise_error(exc, what)
        parts: dict[int, dict[str, Any]] = {}
        for page in listed:
            for part in page.get("Parts", []):
                parts[int(part["PartNumber"])] = part
        return parts


def _log_corruption(what: str, attempt: int, exc: BaseException) -> None:
    """Before the policy sends a part again: say so when its bytes were corrupted on the way."""
    failure = classify(exc)
    if failure.kind == "checksum":
        log.warning(
            "%s: bytes corrupted in transit (%s), attempt %d; sending again", what, checksum_problem(failure), attempt
        )


def checksum_value(algorithm: str, digest: PartDigest) -> str:
    """What is sent for ``digest``: the base64 CRC, or the ``Content-MD5`` for MD5 (:class:`ChecksumPlan`)."""
    return ChecksumPlan(algorithm).value(digest)
