"""The one checksum choice: which checksum a request carries, and whether to ask the store for one.

A :class:`ChecksumPlan` is an algorithm and what the endpoint is known to check
(:class:`~airflow_s3stream.s3.store_checks.StoreChecks`, probed and remembered once per endpoint
per process in :mod:`~airflow_s3stream.s3.store_checks`). From those two alone it decides, purely:

* what an upload sends: ``Content-MD5`` (the ``MD5`` algorithm) or an ``x-amz-checksum-*`` value,
  on CreateMultipartUpload, UploadPart, PutObject and CompleteMultipartUpload;
* whether botocore must be kept from adding a checksum of its own (an MD5 request, or any request
  to a store that refuses the headers: :func:`~.checksum_headers.without_checksum_headers`);
* whether to ask for the stored checksum (``ChecksumMode=ENABLED``): only for a CRC, and never of a
  store that refuses checksum headers (``x-amz-checksum-mode`` is one of them);
* what the store can be said to have checked.

The multipart session, the single-object calls, the read-back after completion and the load's
manifest check all take their checksum decisions here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from airflow_s3stream.s3.checksum_headers import content_md5_of_hex, without_checksum_headers
from airflow_s3stream.s3.store_checks import StoreChecks, checked_by_store, choose_algorithm, known_checks

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

    from airflow_s3stream.s3.multipart.checksums import PartDigest

__all__ = ["BOTOCORE_ALGORITHM", "CHECKSUM_MD5", "ChecksumPlan"]

CHECKSUM_MD5 = "MD5"  # the algorithm that sends Content-MD5 and no additional checksum
BOTOCORE_ALGORITHM = "CRC32"  # what botocore adds to a request itself (request_checksum_calculation)


@dataclass(frozen=True)
class ChecksumPlan:
    """What requests of one upload (or read) to one endpoint carry and ask for (module docstring).

    :param algorithm: ``CRC32C``, ``CRC32``, ``CRC64NVME`` or ``MD5`` (never ``auto``: see :meth:`choose`).
    :param checks: what the endpoint is known to check.
    """

    algorithm: str
    checks: StoreChecks = field(default_factory=StoreChecks)

    @classmethod
    def choose(cls, configured: str, checks: StoreChecks) -> ChecksumPlan:
        """The plan of a new upload configured with ``configured`` (``auto`` resolved from ``checks``)."""
        return cls(choose_algorithm(configured, checks), checks)

    @classmethod
    def known(cls, client: S3Client, algorithm: str) -> ChecksumPlan:
        """The plan for ``algorithm`` on ``client``'s endpoint, from what this process knows of it
        (no probe is sent)."""
        return cls(algorithm, known_checks(client))

    @classmethod
    def for_endpoint(cls, client: S3Client) -> ChecksumPlan:
        """The plan of a request whose checksum botocore adds itself (a manifest, a report, a
        DeleteObjects): ``MD5`` to a store known to refuse checksum headers, else botocore's CRC32."""
        checks = known_checks(client)
        return cls(CHECKSUM_MD5 if checks.additional == "refused" else BOTOCORE_ALGORITHM, checks)

    @property
    def md5(self) -> bool:
        """Requests carry ``Content-MD5`` and no additional checksum."""
        return self.algorithm == CHECKSUM_MD5

    @property
    def refused(self) -> bool:
        """The endpoint refuses additional checksum headers."""
        return self.checks.additional == "refused"

    def value(self, digest: PartDigest) -> str:
        """What is sent for ``digest``: the base64 CRC, or the ``Content-MD5`` of an MD5 plan."""
        from airflow_s3stream.s3.multipart.checksums import encode_checksum  # multipart imports this module

        if not self.md5:
            return encode_checksum(self.algorithm, digest.crc)
        if not digest.md5:
            raise AssertionError("an MD5 upload needs each part's MD5 (PartHasher with md5=True)")
        return content_md5_of_hex(digest.md5)

    def send_args(self, value: str) -> dict[str, Any]:
        """The UploadPart / PutObject argument carrying ``value`` (from :meth:`value`)."""
        return {"ContentMD5": value} if self.md5 else {f"Checksum{self.algorithm}": value}

    def create_args(self, checksum_type: str | None) -> dict[str, Any]:
        """CreateMultipartUpload's checksum arguments (none for MD5)."""
        if self.md5:
            return {}
        return {"ChecksumAlgorithm": self.algorithm, "ChecksumType": checksum_type}

    def part_entry(self, number: int, etag: str, checksum: str) -> CompletedPartTypeDef:
        """One part as CompleteMultipartUpload lists it (its CRC only when it has one and sends CRCs)."""
        entry: dict[str, Any] = {"PartNumber": number, "ETag": etag}
        if checksum and not self.md5:
            entry[f"Checksum{self.algorithm}"] = checksum
        return cast("CompletedPartTypeDef", entry)

    def full_object_args(self, crc: int | None) -> dict[str, Any]:
        """CompleteMultipartUpload's full-object checksum arguments (none without a CRC)."""
        from airflow_s3stream.s3.multipart.checksums import encode_checksum  # multipart imports this module

        if crc is None or self.md5:
            return {}
        return {f"Checksum{self.algorithm}": encode_checksum(self.algorithm, crc), "ChecksumType": "FULL_OBJECT"}

    def ask_args(self) -> dict[str, Any]:
        """HeadObject / GetObject arguments asking for the stored checksum: ``ChecksumMode`` for a
        CRC, none for MD5 (its checksum is the ETag) or for a store that refuses checksum headers."""
        return {} if self.md5 or self.refused else {"ChecksumMode": "ENABLED"}

    def stored(self, answer: Mapping[str, object]) -> str | None:
        """The checksum an answer (HeadObject, Complete, PutObject) reports for this plan: ``''`` when
        it has none, ``None`` for MD5 (whose checksum is the ETag, never asked for)."""
        return None if self.md5 else str(answer.get(f"Checksum{self.algorithm}") or "")

    def guard(self, client: S3Client) -> contextlib.AbstractContextManager[None]:
        """Where the calls of this plan are made: without botocore's own checksum for MD5 (its
        ``when_supported`` would add a CRC32 beside ``Content-MD5``)."""
        return without_checksum_headers(client) if self.md5 else contextlib.nullcontext()

    def checked_by_store(self, *, echoed: bool = False) -> list[str]:
        """What the store is known to have checked of bytes sent with this plan (``echoed``: the
        server repeated our CRC): ``["Content-MD5"]``, ``["CRC32C"]``, or ``[]``."""
        return checked_by_store(self.algorithm, self.checks, echoed=echoed)
