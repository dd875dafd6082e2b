"""What a multipart upload keeps of each stored part, and the error of an upload the server forgot."""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass
from typing import IO, Any

from airflow_s3stream.errors import UploadError

__all__ = ["Body", "PartRecord", "UploadGoneError"]

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
