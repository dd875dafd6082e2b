"""The decisions of a multipart upload session, as pure functions over plain values.

:class:`~airflow_s3stream.s3.multipart.session.UploadSession` makes the boto3 calls; what it
decides on their answers lives here, so it is tested without a server:

* what an answer says about the bytes it stored (:func:`answer_mismatch`, :func:`echoes_checksum`);
* whether ``auto`` may still switch an upload to ``Content-MD5`` (:func:`can_fall_back`) and what
  a refused checksum header means for the request (:func:`fall_back`);
* when a part's MD5 is needed, and whether before it is sent (:func:`md5_up_front`, :func:`wants_md5`);
* the checksum type that goes with an algorithm (:func:`checksum_type_for`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from airflow_s3stream.s3.classify import S3Failure
from airflow_s3stream.s3.multipart.checksums import PartDigest, looks_like_md5
from airflow_s3stream.s3.multipart.config import CHECKSUM_MD5

__all__ = [
    "FallBack",
    "answer_mismatch",
    "can_fall_back",
    "checksum_type_for",
    "echoes_checksum",
    "fall_back",
    "md5_up_front",
    "wants_md5",
]

FallBack = Literal["no", "resend", "switch"]


def answer_mismatch(answer: Mapping[str, Any], digest: PartDigest, sent: str, algorithm: str) -> str | None:
    """What differs between the bytes we sent and what an UploadPart / PutObject ``answer`` says
    the server stored: its echoed CRC (``sent`` is ours, base64) or its ETag (a plain MD5, against
    ``digest.md5`` when we have one). ``None`` when nothing differs or nothing can tell."""
    echoed = answer.get(f"Checksum{algorithm}")
    if echoed and echoed != sent:
        return f"{algorithm} mismatch (sent {sent}, server stored {echoed})"
    etag = str(answer.get("ETag", "")).strip('"')
    if digest.md5 and looks_like_md5(etag) and etag != digest.md5:
        return f"MD5 mismatch (sent {digest.md5}, server stored {etag})"
    return None


def echoes_checksum(answer: Mapping[str, Any], algorithm: str, sent: str) -> bool:
    """The server repeated our checksum ``sent`` of ``algorithm`` in its answer (it computed the same)."""
    return bool(sent) and answer.get(f"Checksum{algorithm}") == sent


def can_fall_back(*, auto: bool, algorithm: str, stored_parts: int, created_here: bool) -> bool:
    """``auto`` may still switch the upload to MD5: it sends a CRC, no part of it is stored yet, and
    the upload was created by this session (or not yet created): a resumed one keeps its algorithm."""
    return auto and algorithm != CHECKSUM_MD5 and stored_parts == 0 and created_here


def fall_back(failure: S3Failure, *, used: str, auto: bool, current: str, may_switch: bool) -> FallBack:
    """What a refused request sent with ``used`` calls for, while the session now uses ``current``:

    * ``"no"``: not a refused checksum header, or not ``auto``, or too late (``may_switch`` false):
      the failure stands;
    * ``"resend"``: another request switched the upload to MD5 meanwhile: send it again as MD5;
    * ``"switch"``: switch the upload to MD5 (re-creating it when it exists), then send it again.
    """
    if used == CHECKSUM_MD5 or not auto or not failure.checksum_headers_refused:
        return "no"
    if current == CHECKSUM_MD5:
        return "resend"
    return "switch" if may_switch else "no"


def md5_up_front(algorithm: str, *, may_fall_back: bool) -> bool:
    """A part's MD5 must be known before it is sent: it is the ``Content-MD5`` header (MD5), or may
    have to be (``auto`` may still fall back). Otherwise it is computed as the bytes are sent."""
    return algorithm == CHECKSUM_MD5 or may_fall_back


def wants_md5(*, up_front: bool, verify_part_etag: bool | str, server_echoes: bool) -> bool:
    """Parts need their MD5: up front, or to check each part's ETag (``verify_part_etag``: ``True``,
    ``False``, or ``"auto"``, which checks only until the server is seen to echo our checksums)."""
    if up_front:
        return True
    if verify_part_etag == "auto":
        return not server_echoes
    return bool(verify_part_etag)


def checksum_type_for(algorithm: str, configured: str | None) -> str:
    """``COMPOSITE`` or ``FULL_OBJECT``: the configured type, but an MD5 upload is always composite."""
    return "COMPOSITE" if algorithm == CHECKSUM_MD5 else str(configured)
