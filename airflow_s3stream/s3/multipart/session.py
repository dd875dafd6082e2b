"""One multipart upload on the wire: create, upload or copy parts with retries, complete, abort.

Both the streaming :class:`~.writer.MultipartWriter` and the resumable source uploader go through
:class:`UploadSession`, so there is one place that talks S3's multipart API. Every part is sent with
its locally computed additional checksum (so botocore computes no other one) and, when configured,
its MD5 is compared with the ETag the server answers; a part whose bytes arrived corrupted is sent
again, and after the retry budget :class:`~airflow_s3stream.errors.ChecksumMismatchError` names it.

The two calls that are not idempotent handle a lost answer (a reset or timeout after the server
acted) explicitly. A lost CreateMultipartUpload may have started an upload nobody tracks: the key's
open uploads are listed before the first Create, and uploads of the key that appeared meanwhile are
aborted afterwards. A CompleteMultipartUpload that is retried after its first answer was lost may
meet ``NoSuchUpload``: :class:`UploadGoneError` tells the caller to look at the object instead
(:func:`~.completion.complete_and_verify` does).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import IO, Any

from airflow_s3stream.errors import ChecksumMismatchError, SourceChangedError, UploadError
from airflow_s3stream.s3.classify import classify, to_error
from airflow_s3stream.s3.multipart.checksums import PartDigest, encode_checksum, looks_like_md5
from airflow_s3stream.s3.multipart.config import MultipartConfig

__all__ = ["Body", "PartRecord", "UploadGoneError", "UploadSession"]

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
    checksum: str  # base64 CRC we computed and S3 checked ('' for server-side copies we cannot see)
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
        self.client = client
        self.bucket = bucket
        self.key = key
        self.config = config
        self.extra_args = dict(extra_args or {})
        self.upload_id = upload_id
        self.algorithm = config.checksum_algorithm
        self.uri = f"s3://{bucket}/{key}"
        self.server_echoes_checksums = False  # set once an UploadPart answer repeats our CRC
        self._ended = False  # completed or aborted: a later abort() is a no-op

    @property
    def wants_md5(self) -> bool:
        """Whether parts still need their MD5 computed (see ``MultipartConfig.verify_part_etag``)."""
        if self.config.verify_part_etag == "auto":
            return not self.server_echoes_checksums
        return bool(self.config.verify_part_etag)

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        try:
            return self.config.retry.call(fn, what=what)
        except Exception as exc:
            raise to_error(exc, what) from exc

    def create(self) -> str:
        """CreateMultipartUpload with the configured checksum algorithm and type; returns the id.

        A Create whose answer was lost (reset, timeout) may have started an upload that nobody
        tracks and that is billed until a lifecycle rule removes it. So the key's open uploads are
        listed first, and when an attempt's answer was lost, every upload of the key that was not
        open before (other than the one finally returned) is aborted once the retries are over.
        Uploads that were open before are left alone: another live try may own them. Without
        permission to list uploads, the cleanup is skipped with a warning.
        """
        what = f"creating a multipart upload for {self.uri}"
        known = self._open_upload_ids()
        lost = False

        def attempt() -> Any:
            nonlocal lost
            try:
                return self.client.create_multipart_upload(
                    Bucket=self.bucket,
                    Key=self.key,
                    ChecksumAlgorithm=self.algorithm,
                    ChecksumType=self.config.checksum_type,
                    **self.extra_args,
                )
            except Exception as exc:
                lost = lost or classify(exc).retryable  # the server may have acted
                raise

        try:
            response = self.config.retry.call(attempt, what=what)
        except Exception as exc:
            if lost:
                self._abort_untracked(known, keep=None)
            raise to_error(exc, what) from exc
        self.upload_id = str(response["UploadId"])
        self._ended = False
        if lost:
            self._abort_untracked(known, keep=self.upload_id)
        return self.upload_id

    def _open_upload_ids(self) -> set[str] | None:
        """Ids of this key's open uploads (ListMultipartUploads, exact key); ``None`` if not allowed."""
        what = f"listing the open multipart uploads of {self.uri}"

        def listing() -> set[str]:
            paginator = self.client.get_paginator("list_multipart_uploads")
            ids: set[str] = set()
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.key):
                ids.update(str(u["UploadId"]) for u in page.get("Uploads", []) if u.get("Key") == self.key)
            return ids

        try:
            return self.config.retry.call(listing, what=what)
        except Exception as exc:
            if classify(exc).access_denied:
                log.debug("%s: not permitted (%s); a lost Create answer cannot be cleaned up", what, exc)
                return None
            raise to_error(exc, what) from exc

    def _abort_untracked(self, known: set[str] | None, keep: str | None) -> None:
        """Abort uploads of this key that were not open before Create and are not ``keep``. Never raises."""
        now = None
        if known is not None:
            try:
                now = self._open_upload_ids()
            except Exception as exc:
                log.warning("%s: could not list open uploads (%s)", self.uri, exc)
        if now is None or known is None:
            log.warning(
                "a CreateMultipartUpload answer for %s was lost and the uploads it may have started cannot be "
                "listed: they stay until the bucket's lifecycle rule or abort_stale_uploads removes them",
                self.uri,
            )
            return
        for upload_id in sorted(now - known - {keep}):
            log.warning("aborting upload %s of %s, started by a Create whose answer was lost", upload_id, self.uri)
            UploadSession(self.client, self.bucket, self.key, self.config, upload_id=upload_id).abort()

    def _mismatch(self, response: dict[str, Any], digest: PartDigest, sent: str) -> str | None:
        echoed = response.get(f"Checksum{self.algorithm}")
        if echoed and echoed != sent:
            return f"{self.algorithm} mismatch (sent {sent}, server stored {echoed})"
        if echoed:
            self.server_echoes_checksums = True
        etag = str(response.get("ETag", ""))
        if digest.md5 and looks_like_md5(etag) and etag.strip('"') != digest.md5:
            return f"MD5 mismatch (sent {digest.md5}, server stored {etag.strip(chr(34))})"
        return None

    def upload_part(self, number: int, body: Callable[[], Body], digest: PartDigest) -> PartRecord:
        """UploadPart ``number`` with the bytes ``body()`` returns (called again for each attempt).

        Transient failures are retried by the policy; a body the server stored differently from
        what we hashed is sent again up to ``retry.max_attempts`` times, then
        :class:`ChecksumMismatchError`. Other failures raise our errors naming part and URI.
        """
        assert self.upload_id is not None, "create() first"
        sent = encode_checksum(self.algorithm, digest.crc)
        what = f"part {number} of {self.uri}"
        problem = ""
        for attempt in range(1, self.config.retry.max_attempts + 1):
            try:
                response = self._send_part(number, body, digest, sent, what)
            except Exception as exc:
                if classify(exc).kind != "checksum":
                    raise to_error(exc, what) from exc
                problem = f"server refused the checksum: {exc}"
            else:
                mismatch = self._mismatch(response, digest, sent)
                if mismatch is None:
                    return PartRecord(number, digest.size, str(response["ETag"]), sent, digest.md5)
                problem = mismatch
            log.warning("%s: bytes corrupted in transit (%s), attempt %d; sending again", what, problem, attempt)
        raise ChecksumMismatchError(f"{what}: {problem} after {self.config.retry.max_attempts} attempts")

    def _send_part(
        self, number: int, body: Callable[[], Body], digest: PartDigest, sent: str, what: str
    ) -> dict[str, Any]:
        return dict(
            self.config.retry.call(
                lambda: self.client.upload_part(
                    Bucket=self.bucket,
                    Key=self.key,
                    UploadId=self.upload_id,
                    PartNumber=number,
                    Body=body(),
                    ContentLength=digest.size,
                    **{f"Checksum{self.algorithm}": sent},
                ),
                what=what,
            )
        )

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
            raise to_error(exc, what) from exc
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
        listed = []
        for part in sorted(parts, key=lambda p: p.number):
            entry: dict[str, Any] = {"PartNumber": part.number, "ETag": part.etag}
            if part.checksum:
                entry[f"Checksum{self.algorithm}"] = part.checksum
            listed.append(entry)
        extra: dict[str, Any] = {}
        if full_object_crc is not None:
            extra = {f"Checksum{self.algorithm}": encode_checksum(self.algorithm, full_object_crc)}
            extra["ChecksumType"] = "FULL_OBJECT"
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
            raise to_error(exc, what) from exc
        self._ended = True
        return dict(response)

    def abort(self) -> None:
        """AbortMultipartUpload. Never raises; idempotent: an upload already gone is fine, and a
        second call, or one after a successful :meth:`complete`, sends nothing."""
        if self.upload_id is None or self._ended:
            return
        try:
            self.config.retry.call(
                lambda: self.client.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id),
                what=f"aborting the multipart upload of {self.uri}",
            )
        except Exception as exc:
            if not classify(exc).not_found:
                log.error("could not abort multipart upload %s of %s: %s", self.upload_id, self.uri, exc)
                return  # not ended: a later abort() tries again
        self._ended = True
        log.info("aborted multipart upload %s of %s", self.upload_id, self.uri)

    def put_object(self, data: bytes | bytearray, digest: PartDigest) -> dict[str, Any]:
        """PutObject for an object smaller than one part (including the empty object)."""
        sent = encode_checksum(self.algorithm, digest.crc)
        what = f"uploading {self.uri}"
        response = self._call(
            what,
            lambda: self.client.put_object(
                Bucket=self.bucket,
                Key=self.key,
                Body=data,
                **{f"Checksum{self.algorithm}": sent},
                **self.extra_args,
            ),
        )
        mismatch = self._mismatch(response, digest, sent)
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
            raise to_error(exc, what) from exc
        parts: dict[int, dict[str, Any]] = {}
        for page in listed:
            for part in page.get("Parts", []):
                parts[int(part["PartNumber"])] = part
        return parts
