"""A staged upload: a file whose parts are all uploaded, its multipart upload left open.

A writer in staged mode (``MultipartWriter(stage=True)``) records one :class:`StagedUpload` per
file; nothing is visible until the upload is completed (:mod:`airflow_s3stream.publish` publishes
staged files together), and :func:`abort_staged` discards them. This module knows only the S3
upload, nothing of what a publication writes beside it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_s3stream.s3.multipart.config import CHECKSUM_MD5, MultipartConfig
from airflow_s3stream.s3.multipart.part_record import PartRecord
from airflow_s3stream.s3.multipart.session import UploadSession

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

__all__ = ["StagedUpload", "abort_staged"]


@dataclass(frozen=True)
class StagedUpload:
    """A file uploaded but not completed: what completing (or aborting) it needs, and nothing more."""

    bucket: str
    key: str
    upload_id: str
    algorithm: str
    checksum_type: str
    parts: tuple[PartRecord, ...]

    @property
    def size(self) -> int:
        """Bytes of the file (all parts)."""
        return sum(p.size for p in self.parts)

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def session(self, client: S3Client, config: MultipartConfig) -> UploadSession:
        """An :class:`UploadSession` on this upload, with the algorithm and checksum type it was created with."""
        if self.algorithm == CHECKSUM_MD5:
            config = dataclasses.replace(config, checksum_algorithm=CHECKSUM_MD5, checksum_type=None)
        else:
            config = dataclasses.replace(config, checksum_algorithm=self.algorithm, checksum_type=self.checksum_type)
        return UploadSession(client, self.bucket, self.key, config, upload_id=self.upload_id)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (an XCom value, a commit state entry): parts as ``[number, size, etag, checksum, md5]``."""
        return {
            "key": self.key,
            "upload_id": self.upload_id,
            "algorithm": self.algorithm,
            "checksum_type": self.checksum_type,
            "parts": [[p.number, p.size, p.etag, p.checksum, p.md5] for p in self.parts],
        }

    @classmethod
    def from_dict(cls, bucket: str, data: dict[str, Any]) -> StagedUpload:
        """The upload :meth:`to_dict` describes, in ``bucket``.

        :raises KeyError, TypeError, ValueError: ``data`` is not such a description.
        """
        parts = tuple(PartRecord(int(n), int(s), str(e), str(c), str(m)) for n, s, e, c, m in data["parts"])
        return cls(bucket, data["key"], data["upload_id"], data["algorithm"], data["checksum_type"], parts)


def abort_staged(client: S3Client, uploads: Sequence[StagedUpload], config: MultipartConfig) -> None:
    """Abort every staged upload. Never raises: what cannot be aborted is logged (and left to the
    bucket's lifecycle rule or :func:`~.cleanup.abort_stale_uploads`)."""
    for staged in uploads:
        staged.session(client, config).abort()
