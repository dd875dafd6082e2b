"""An S3 object as the source of a resumable upload: its parts are copied server side.

The source lives in the destination's endpoint and is read with the destination's client; every
part is an UploadPartCopy of a byte range, so no byte passes through the worker. Each part names the
source's ETag (``CopySourceIfMatch``): S3 refuses a part of a replaced source, and
:meth:`ObjectCopy.check_unchanged` catches the stores that ignore that condition.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_s3stream.errors import SourceChangedError, UploadError
from airflow_s3stream.s3.multipart.config import PartRange
from airflow_s3stream.s3.multipart.part_record import PartRecord
from airflow_s3stream.s3.multipart.session import UploadSession
from airflow_s3stream.s3.objects import S3Object
from airflow_s3stream.s3.retry import RetryPolicy
from airflow_s3stream.upload.resume import SourceFingerprint

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

__all__ = ["ObjectCopy"]


class ObjectCopy:
    """The object ``source_uri`` (``s3://bucket/key``), as it was when this copy started.

    Raises :class:`~airflow_s3stream.errors.SourceError` naming it when it is absent or forbidden.
    """

    def __init__(self, client: S3Client, source_uri: str, retry: RetryPolicy) -> None:
        self.client = client
        self.retry = retry
        self.uri = source_uri
        self.source = S3Object.head(client, source_uri, retry)

    @property
    def size(self) -> int:
        return self.source.size

    def fingerprint(self) -> SourceFingerprint:
        """The source's identity in the resume state: its ETag and version."""
        return SourceFingerprint.of_object(self.source)

    def check_unchanged(self) -> None:
        """Raise :class:`SourceChangedError` when the source was replaced since this copy started."""
        # S3 enforces CopySourceIfMatch per part; servers that ignore it are caught here.
        now = S3Object.head(self.client, self.uri, self.retry)
        if (now.etag, now.size) != (self.source.etag, self.source.size):
            raise SourceChangedError(
                f"source {self.source.uri} was replaced during the copy (ETag {self.source.etag} -> {now.etag})"
            )

    def recover(self, session: UploadSession, part: PartRange, listed: dict[str, Any]) -> PartRecord | None:
        """Always ``None``: a copied part cannot be checked against the source without reading its
        bytes, so a part the state does not record is copied again."""
        return None

    def send(self, session: UploadSession, part: PartRange) -> PartRecord:
        """Copy ``part``'s byte range of the source into ``session``'s upload."""
        last = part.offset + part.length - 1
        try:
            return session.copy_part(part.number, self.source.copy_source(), part.offset, last, self.source.etag)
        except UploadError:
            # A replaced source can be refused for its new size (Ceph RGW: 416 InvalidRange)
            # before its ETag (S3: 412): name the cause when it is the source.
            self.check_unchanged()
            raise
