"""Check a completed object against what we sent: size, checksum and multipart ETag.

Policy (explicit, because S3-compatible servers differ):

* **Size** must equal the bytes we sent, always.
* **Full-object checksum** (CRC64NVME, or CRC32/CRC32C with ``FULL_OBJECT``): we send our value
  with CompleteMultipartUpload, S3 checks it against the bytes, and HeadObject must report the
  same value. Any other value is a mismatch.
* **Composite checksum**: compared only when the server reports it in S3's composite form
  ``<base64>-<N>`` with N equal to our part count. A value without that suffix is not S3's
  composite checksum (moto reports a different number there) and is recorded as unverifiable.
* **Multipart ETag**: when it looks like ``<32 hex>-<N>`` and we computed part MD5s, it must equal
  ``md5(part md5s)-N``. Opaque ETags (SSE-KMS, SSE-C, some stores) are recorded as unverifiable.
* **MD5 uploads** (no additional checksum, for stores that refuse one): the ETag is the checksum,
  ``md5(part md5s)-N`` or a single PutObject's MD5, checked as above; no ``Checksum*`` is read.

A mismatch raises :class:`~airflow_s3stream.errors.ChecksumMismatchError`. :func:`compare_object`
says also whether an identity (ETag or checksum) matched: only then is the object provably made of
our bytes, and only then may the caller delete it (:mod:`.completion`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from airflow_s3stream.errors import ChecksumMismatchError

__all__ = ["Comparison", "ExpectedObject", "compare_object", "verify_object"]

_MULTIPART_ETAG = re.compile(r'^"?([0-9a-f]{32}-\d+)"?$')


@dataclass(frozen=True)
class ExpectedObject:
    """What the object should look like, from local computation."""

    uri: str
    size: int
    algorithm: str
    checksum: str  # full-object base64 value, or composite ``<base64>-N``
    full_object: bool
    parts: int  # 0 for a single PutObject
    etag: str = ""  # expected multipart ETag ``md5-N`` or a single PUT's MD5; '' if not computed


def verify_object(head: dict[str, Any], expected: ExpectedObject) -> list[str]:
    """Compare a HeadObject (``ChecksumMode=ENABLED``) answer with ``expected``.

    Returns the names of what was verified (``size``, ``checksum``, ``etag``); raises
    :class:`ChecksumMismatchError` naming the object and both values of every mismatch.
    """
    comparison = compare_object(head, expected)
    if comparison.mismatches:
        raise ChecksumMismatchError(f"{expected.uri}: {'; '.join(comparison.mismatches)}")
    return comparison.verified


@dataclass(frozen=True)
class Comparison:
    """What :func:`compare_object` found: ``verified`` matched, ``mismatches`` describe what did not."""

    verified: list[str]
    mismatches: list[str]

    @property
    def identified(self) -> bool:
        """An identity of the object (multipart ETag or checksum) matched what we computed: the
        object is made of our bytes, whatever else disagrees."""
        return "etag" in self.verified or "checksum" in self.verified


def compare_object(head: dict[str, Any], expected: ExpectedObject) -> Comparison:
    """Compare everything comparable in a HeadObject answer with ``expected``; never raises (pure)."""
    verified: list[str] = []
    mismatches: list[str] = []
    size = int(head.get("ContentLength", -1))
    if size == expected.size:
        verified.append("size")
    else:
        mismatches.append(f"size mismatch (sent {expected.size} bytes, stored {size})")

    reported = head.get(f"Checksum{expected.algorithm}") if expected.algorithm != "MD5" else None
    if reported and expected.checksum:  # nothing computed locally (some server-side copies): nothing to compare
        comparable = expected.full_object or expected.parts == 0 or reported.endswith(f"-{expected.parts}")
        if comparable and reported == expected.checksum:
            verified.append("checksum")
        elif comparable:
            mismatches.append(f"{expected.algorithm} mismatch (computed {expected.checksum}, stored {reported})")

    etag = str(head.get("ETag", "")).lower()
    if expected.etag:
        match = _MULTIPART_ETAG.match(etag)
        plain = etag.strip('"')
        if (match and expected.parts) or (expected.parts == 0 and len(plain) == 32 and "-" not in plain):
            if plain == expected.etag:
                verified.append("etag")
            else:
                mismatches.append(f"ETag mismatch (computed {expected.etag}, stored {plain})")
    return Comparison(verified, mismatches)
