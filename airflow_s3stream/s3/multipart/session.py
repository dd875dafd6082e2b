"""One multipart upload on the wire: create, upload or copy parts, complete, abort.

Both the streaming :class:`~.writer.MultipartWriter` and the resumable source uploader go through
:class:`UploadSession`, the one place that talks S3's multipart API. It makes the boto3 calls; its
decisions are pure functions (:mod:`~.session_rules`) and its checksum headers come from the
endpoint's :class:`~airflow_s3stream.s3.checksum_plan.ChecksumPlan`. Every part carries its locally
computed checksum; a part whose bytes arrived corrupted is sent again by the one retry loop, at
most ``max_attempts`` times, then :class:`~airflow_s3stream.errors.ChecksumMismatchError` names it.
At its first upload I/O a session learns what its endpoint checks (one probe per endpoint per
process); under ``auto``, a store that still refuses the checksum header before any part is stored
makes the session switch to MD5 once (re-creating an upload created with the CRC).

The two calls that are not idempotent handle a lost answer explicitly. The key's open uploads are
listed before the first Create, and uploads of the key that appeared meanwhile are aborted after a
lost one. A Complete retried after its first answer was lost may meet ``NoSuchUpload``:
:class:`UploadGoneError` tells the caller to look at the object (:func:`~.completion.complete_and_verify`).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from airflow_s3stream.s3.checksum_plan import ChecksumPlan
from airflow_s3stream.s3.classify import CorruptedInTransitError, checksum_problem, classify, raise_error
from airflow_s3stream.s3.client import warn_if_retrying
from airflow_s3stream.s3.multipart import part_calls
from airflow_s3stream.s3.multipart import session_rules as rules
from airflow_s3stream.s3.multipart.bodies import hashing_raw
from airflow_s3stream.s3.multipart.checksums import PartDigest
from airflow_s3stream.s3.multipart.cleanup import abort_untracked, abort_upload, open_upload_ids
from airflow_s3stream.s3.multipart.config import CHECKSUM_AUTO, CHECKSUM_MD5, MultipartConfig
from airflow_s3stream.s3.multipart.part_record import Body, PartRecord, UploadGoneError
from airflow_s3stream.s3.store_checks import StoreChecks, remember_refusal, store_checks

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

__all__ = ["UploadSession", "checksum_value"]

log = logging.getLogger("airflow_s3stream.s3.multipart")


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
        client: S3Client,
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
        self.copied = False  # a part was copied server side: no checksum of ours went with its bytes

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
        return self.learn_checks()

    def learn_checks(self) -> StoreChecks:
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
        if self.copied:
            return []
        return self.plan.checked_by_store(echoed=self.server_echoes_checksums)

    @property
    def checksum_type(self) -> str:
        """``COMPOSITE`` or ``FULL_OBJECT`` for the algorithm in use (an MD5 upload is composite)."""
        return rules.checksum_type_for(self.algorithm, self.config.checksum_type)

    @property
    def full_object(self) -> bool:
        """True when the object's checksum is a CRC of all its bytes (see ``MultipartConfig``)."""
        return self.checksum_type == "FULL_OBJECT"

    @property
    def can_fall_back(self) -> bool:
        """``auto`` may still switch this upload to MD5: nothing was stored with the CRC yet."""
        created_here = self.upload_id is None or self._created
        return rules.can_fall_back(
            auto=self.auto, algorithm=self.algorithm, stored_parts=self._stored, created_here=created_here
        )

    @property
    def wants_md5(self) -> bool:
        """Whether parts need their MD5 (see ``MultipartConfig.verify_part_etag``)."""
        return rules.wants_md5(
            up_front=self.md5_up_front,
            verify_part_etag=self.config.verify_part_etag,
            server_echoes=self.server_echoes_checksums,
        )

    @property
    def md5_up_front(self) -> bool:
        """Whether a part's MD5 must be known before it is sent: it is the ``Content-MD5`` header
        (the MD5 algorithm), or may have to be (``auto`` may still fall back). Otherwise the MD5
        for the ETag check is computed from the bytes as they are sent (:meth:`upload_part`)."""
        return rules.md5_up_front(self.algorithm, may_fall_back=self.can_fall_back)

    def call(self, what: str, fn: Callable[[], Any], *, fall_back: bool = False) -> Any:
        """``fn()`` retried by the policy; ``fall_back``: sent again as MD5 if ``auto`` switches."""
        algorithm = self.algorithm
        try:
            return self.config.retry.call(fn, what=what)
        except Exception as exc:
            if fall_back and self.fall_back(exc, algorithm, what):
                return self.call(what, fn)  # ``fn`` reads the algorithm again: MD5 now
            raise_error(exc, what)

    def fall_back(self, exc: BaseException, used: str, what: str) -> bool:
        """Switch to MD5 if ``exc`` is the store refusing the checksum header of a request sent with
        ``used`` and ``auto`` still may; True when that request should be sent again.

        An upload already created with the CRC (the refusal came at its first part) is aborted and
        created again without one, so no upload ever holds parts of two algorithms.
        """
        failure = classify(exc)
        if rules.fall_back(failure, used=used, auto=self.auto, current=used, may_switch=True) == "no":
            return False  # cheap check first: most failures are not a refused header
        with self._switch:
            current = self._algorithm or used
            decision = rules.fall_back(
                failure, used=used, auto=self.auto, current=current, may_switch=self.can_fall_back
            )
            if decision != "switch":
                return decision == "resend"
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
        self.learn_checks()  # the first upload I/O: learn what the store checks before using it
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
            response = self.call(what, attempt, fall_back=True)
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

    def mismatch(self, response: dict[str, Any], digest: PartDigest, sent: str, algorithm: str) -> str | None:
        """What differs in ``response`` (:func:`~.session_rules.answer_mismatch`); notes an echoed CRC."""
        mismatch = rules.answer_mismatch(response, digest, sent, algorithm)
        if rules.echoes_checksum(response, algorithm, sent):
            self.server_echoes_checksums = True
        return mismatch

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
        self.learn_checks()  # a resumed session's first I/O may be a part
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
            if self._current()[1] != upload_id or self.fall_back(exc, algorithm, what):
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
        assert upload_id is not None, "create() first"
        response = self.client.upload_part(
            Bucket=self.bucket,
            Key=self.key,
            UploadId=upload_id,
            PartNumber=number,
            Body=part,  # type: ignore[arg-type]  # botocore sends any bytes-like or file-like body
            ContentLength=digest.size,
            **plan.send_args(sent),
        )
        checked = digest if raw is None else dataclasses.replace(digest, md5=raw.md5_hexdigest())
        mismatch = self.mismatch(dict(response), checked, sent, plan.algorithm)
        if mismatch is not None:
            raise CorruptedInTransitError(mismatch)
        return PartRecord(number, checked.size, str(response["ETag"]), sent, checked.md5)

    def copy_part(self, number: int, copy_source: dict[str, Any], first: int, last: int, if_match: str) -> PartRecord:
        """UploadPartCopy into part ``number`` (:func:`~.part_calls.copy_part`)."""
        return part_calls.copy_part(self, number, copy_source, (first, last), if_match)

    def list_parts(self) -> dict[int, dict[str, Any]] | None:
        """The parts the server holds for this upload (:func:`~.part_calls.list_parts`)."""
        return part_calls.list_parts(self)

    def complete(self, parts: list[PartRecord], full_object_crc: int | None) -> dict[str, Any]:
        """CompleteMultipartUpload with ``parts`` (any order); sends the full-object CRC when given.

        Retried like every call, although it is not idempotent: when the server answers
        ``NoSuchUpload`` (to a retry whose first attempt completed the upload, or because the
        upload was aborted), raises :class:`UploadGoneError`; whether the object is ours is for the
        caller to check. Other failures raise the package's errors naming the object.
        """
        upload_id = self.upload_id
        assert upload_id is not None, "create() first"
        self.learn_checks()  # a staged upload's Complete may be the first I/O in this process
        plan = self.plan
        listed = [plan.part_entry(p.number, p.etag, p.checksum) for p in sorted(parts, key=lambda p: p.number)]
        extra = plan.full_object_args(full_object_crc)
        what = f"completing the multipart upload of {self.uri}"
        try:
            response = self.config.retry.call(
                lambda: self.client.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=self.key,
                    UploadId=upload_id,
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
        """PutObject for an object smaller than one part (:func:`~.part_calls.put_small_object`)."""
        return part_calls.put_small_object(self, data, digest)


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
