"""The session's calls besides sending parts: a small object's PutObject, a part copy, the stored parts.

PutObject (an object smaller than one part), UploadPartCopy (the uploader's server-side copy of an
S3 source) and ListParts (what a resumed upload finds on the server) go through the one retry
policy and fail with the package's errors naming the part, the upload and the key, like every call of
:class:`~airflow_s3stream.s3.multipart.session.UploadSession`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from airflow_s3stream.errors import ChecksumMismatchError, SourceChangedError
from airflow_s3stream.s3.classify import classify, raise_error
from airflow_s3stream.s3.multipart.part_record import PartRecord

if TYPE_CHECKING:
    from airflow_s3stream.s3.multipart.checksums import PartDigest

if TYPE_CHECKING:
    from mypy_boto3_s3.type_defs import CopySourceTypeDef, ListPartsOutputTypeDef

    from airflow_s3stream.s3.multipart.session import UploadSession

__all__ = ["copy_part", "list_parts", "put_small_object"]


def copy_part(
    session: UploadSession, number: int, copy_source: dict[str, Any], byte_range: tuple[int, int], if_match: str
) -> PartRecord:
    """UploadPartCopy bytes ``first..last`` (``byte_range``, inclusive) of ``copy_source`` into part
    ``number`` of ``session``'s upload.

    ``if_match`` is the source ETag we planned with: a replaced source fails the part with
    :class:`SourceChangedError` instead of mixing two versions.
    """
    first, last = byte_range
    upload_id = session.upload_id
    assert upload_id is not None, "create() first"
    what = f"part {number} of {session.uri} (server-side copy)"
    try:
        response = session.config.retry.call(
            lambda: session.client.upload_part_copy(
                Bucket=session.bucket,
                Key=session.key,
                UploadId=upload_id,
                PartNumber=number,
                CopySource=cast("CopySourceTypeDef", copy_source),
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
    session.copied = True
    result = response.get("CopyPartResult", {})
    return PartRecord(
        number, last - first + 1, str(result["ETag"]), str(result.get(f"Checksum{session.algorithm}", ""))
    )


def list_parts(session: UploadSession) -> dict[int, dict[str, Any]] | None:
    """Parts the server holds for ``session``'s upload, by part number (ListParts, all pages), or
    ``None`` when the upload no longer exists (``NoSuchUpload``: completed, aborted, expired).

    Throttling, 5xx and resets are retried by the policy; any other refusal (``AccessDenied``)
    raises the package's error naming the upload and the key: it says nothing about the upload.
    """
    upload_id = session.upload_id
    assert upload_id is not None
    what = f"listing the parts of upload {session.upload_id} of {session.uri}"

    def pages() -> list[ListPartsOutputTypeDef]:
        paginator = session.client.get_paginator("list_parts")
        return list(paginator.paginate(Bucket=session.bucket, Key=session.key, UploadId=upload_id))

    try:
        listed = session.config.retry.call(pages, what=what)
    except Exception as exc:
        if classify(exc).not_found:
            return None
        raise_error(exc, what)
    parts: dict[int, dict[str, Any]] = {}
    for page in listed:
        for part in page.get("Parts", []):
            parts[int(part["PartNumber"])] = dict(part)
    return parts


def put_small_object(session: UploadSession, data: bytes | bytearray, digest: PartDigest) -> dict[str, Any]:
    """PutObject for an object smaller than one part (including the empty object).

    Under ``auto`` a store refusing the checksum header gets the object again with MD5.
    """
    session.learn_checks()  # explicit algorithms too: the result says what the store checked
    plan = session.plan
    algorithm, sent = plan.algorithm, plan.value(digest)
    what = f"uploading {session.uri}"
    try:
        with plan.guard(session.client):
            response = session.config.retry.call(
                lambda: session.client.put_object(
                    Bucket=session.bucket,
                    Key=session.key,
                    Body=data,  # type: ignore[arg-type]  # botocore sends a bytearray as it is, uncopied
                    **plan.send_args(sent),
                    **session.extra_args,
                ),
                what=what,
            )
    except Exception as exc:
        if session.fall_back(exc, algorithm, what):
            return put_small_object(session, data, digest)
        raise_error(exc, what)
    mismatch = session.mismatch(dict(response), digest, sent, algorithm)
    if mismatch is not None:
        # Only servers that ignore checksums get here: take the corrupt object down again.
        session.call(
            f"deleting corrupt {session.uri}",
            lambda: session.client.delete_object(Bucket=session.bucket, Key=session.key),
        )
        raise ChecksumMismatchError(f"{what}: {mismatch}; the object was deleted")
    return dict(response)
