"""Sources: what the resumable loop needs of one, and strings classified and streamed.

A :class:`PartSource` is a known-size source sent by parts (:class:`~.local_file.LocalFile`,
:class:`~.copy.ObjectCopy`).

A local path (or ``file://`` URI) and an ``s3://`` object in the destination's endpoint go to the
resumable uploader (ranged reads / server-side copy). Anything else smart_open can open (``http(s)``,
``s3`` through another connection, ``gs``, ``azure``, ``sftp``...) is read sequentially into a
:class:`~airflow_s3stream.s3.multipart.writer.MultipartWriter`; such uploads cannot resume (the
source cannot be re-read by range in general), but memory stays bounded the same way. Logged
names go through :func:`redact_uri` so presigned query strings and passwords never reach a log.
"""

from __future__ import annotations

import hashlib
import urllib.parse
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, Protocol

from airflow_s3stream.errors import SourceError
from airflow_s3stream.s3.multipart.config import MultipartConfig, PartRange
from airflow_s3stream.s3.multipart.part_record import PartRecord
from airflow_s3stream.s3.multipart.result import UploadResult
from airflow_s3stream.s3.multipart.session import UploadSession
from airflow_s3stream.s3.multipart.writer import MultipartWriter
from airflow_s3stream.units import MiB
from airflow_s3stream.upload.resume import SourceFingerprint

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

__all__ = ["PartSource", "SourceSpec", "classify_source", "redact_uri", "upload_uri"]

READ_CHUNK = 8 * MiB  # bytes per read from a smart_open stream

SourceKind = Literal["file", "s3copy", "uri"]


class PartSource(Protocol):
    """A known-size source the loop sends by parts: a local file, or an object copied server side."""

    @property
    def size(self) -> int: ...

    def fingerprint(self) -> SourceFingerprint:
        """What the resume state records to tell whether the source changed between tries."""
        ...

    def check_unchanged(self) -> None:
        """Raise :class:`~airflow_s3stream.errors.SourceChangedError` if it changed during this try."""
        ...

    def send(self, session: UploadSession, part: PartRange) -> PartRecord:
        """Store ``part`` in ``session``'s upload."""
        ...

    def recover(self, session: UploadSession, part: PartRange, listed: dict[str, Any]) -> PartRecord | None:
        """The record of a part the server lists (``listed``) but the state does not, if it holds
        the source's bytes; ``None``: send it again."""
        ...


class SourceSpec(NamedTuple):
    """What kind of source a string names: ``file`` (local path), ``s3copy`` or ``uri``."""

    kind: SourceKind
    location: str  # local path, s3:// URI, or the URI as given


def classify_source(source: str, *, s3_same_endpoint: bool = True) -> SourceSpec:
    """Classify ``source``; raises :class:`SourceError` when it is empty or not a string.

    ``s3://`` is a server-side copy when ``s3_same_endpoint`` (the source is read with the
    destination's connection), else a streamed URI read through its own client.
    """
    if not isinstance(source, str) or not source.strip():
        raise SourceError(f"source must be a path or URI, got {source!r}")
    source = source.strip()
    scheme = urllib.parse.urlsplit(source).scheme.lower()
    if scheme == "file":
        return SourceSpec("file", urllib.parse.unquote(urllib.parse.urlsplit(source).path))
    if scheme == "" or (len(scheme) == 1 and source[1:3] in (":\\", ":/")):  # plain path (or C:\ style)
        return SourceSpec("file", source)
    if scheme in ("s3", "s3a", "s3n") and s3_same_endpoint:
        return SourceSpec("s3copy", "s3://" + source.split("://", 1)[1])
    return SourceSpec("uri", source)


def redact_uri(uri: str) -> str:
    """``uri`` without user info, query string and fragment (presigned signatures, tokens)."""
    parts = urllib.parse.urlsplit(uri)
    if not parts.scheme:
        return uri
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    redacted = urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))
    return redacted + ("?…" if parts.query else "")


def upload_uri(
    client: S3Client,
    uri: str,
    bucket: str,
    key: str,
    *,
    config: MultipartConfig | None = None,
    transport_params: dict[str, Any] | None = None,
    extra_args: dict[str, Any] | None = None,
    compute_sha256: bool = False,
) -> UploadResult:
    """Stream ``uri`` (opened by smart_open, no decompression) into ``s3://bucket/key``.

    Raises :class:`SourceError` naming the redacted URI when it cannot be opened.
    """
    import smart_open

    name = redact_uri(uri)
    try:
        stream = smart_open.open(uri, "rb", compression="disable", transport_params=transport_params or {})
    except Exception as exc:
        # not chained: the original message may carry the full (presigned) URL
        raise SourceError(f"source {name} cannot be opened: {type(exc).__name__}") from None
    sha = hashlib.sha256() if compute_sha256 else None
    readinto = stream.readinto  # type: ignore[attr-defined]  # smart_open returns binary io objects
    buffer = bytearray(READ_CHUNK)
    view = memoryview(buffer)
    with stream, MultipartWriter(client, bucket, key, config=config, extra_args=extra_args) as writer:
        while True:
            try:
                n = readinto(buffer)
            except Exception as exc:
                raise SourceError(f"reading source {name} failed: {type(exc).__name__}") from None
            if not n:
                break
            writer.write(view[:n])
            if sha is not None:
                sha.update(view[:n])
    assert writer.result is not None
    return replace(writer.result, sha256=sha.hexdigest() if sha is not None else None)
