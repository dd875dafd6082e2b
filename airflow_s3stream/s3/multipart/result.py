"""The small, JSON-able summary of a finished upload (what operators push to XCom)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["UploadResult"]


@dataclass(frozen=True)
class UploadResult:
    """A finished, verified upload: what we computed and sent, and what the store said and checked.

    ``parts`` is 0 for an object stored with one PutObject. ``etag`` is the object's ETag as the
    store reports it (HeadObject's when CompleteMultipartUpload answered none, as Ceph RGW does).

    Computed by us, locally, from the bytes we sent (not a statement about the store):

    * ``checksum_algorithm``: the one used (``auto`` resolved to ``CRC32C`` or ``MD5``).
    * ``checksum``: the object's checksum as we computed it (composite values end in ``-N``); for
      ``MD5`` the multipart ETag it must have (``md5(part MD5s)-N``, or the MD5 of a single PUT).
      ``''`` when nothing was computed (a server-side copy whose part checksums the store did not return).

    Said or done by the store:

    * ``store_checksum``: ``Checksum<algorithm>`` as HeadObject reported it after completion;
      ``''`` when the store reported none (it keeps no additional checksum: Ceph RGW, moto), ``None``
      when it was not asked (``MD5`` uploads, whose stored identity is ``etag``; no read-back).
    * ``checked_by_store``: what the store is known to have checked against the bytes it received:
      ``["Content-MD5"]``, ``["CRC32C"]`` (or the CRC it echoed back), or ``[]``. Known from the
      endpoint's probe (:mod:`airflow_s3stream.s3.store_checks`: a deliberately wrong checksum
      refused as corrupt) or from the server echoing our checksum, never assumed from having sent
      it. ``[]`` for server-side copies, and where the store ignores what was sent.

    ``verified`` lists what *we* compared after completion (``size``, ``checksum``, ``etag``; see
    :mod:`.verify`). ``resumed_parts`` counts parts a previous try had stored and this one reused.
    """

    bucket: str
    key: str
    size: int
    parts: int
    part_size: int
    etag: str
    checksum_algorithm: str
    checksum_type: str
    checksum: str
    seconds: float
    resumed_parts: int = 0
    uploaded_parts: int = 0
    copied: bool = False
    verified: list[str] = field(default_factory=list)
    version_id: str | None = None
    sha256: str | None = None
    store_checksum: str | None = None
    checked_by_store: list[str] = field(default_factory=list)

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @property
    def mb_per_s(self) -> float:
        """Throughput in decimal MB per second over the whole call."""
        return round(self.size / 1e6 / self.seconds, 2) if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict (XCom), including ``mb_per_s``."""
        data = asdict(self)
        data["seconds"] = round(self.seconds, 3)
        data["mb_per_s"] = self.mb_per_s
        return data
