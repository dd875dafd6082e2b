"""An export's ``_manifest.json`` read as plain data: the files to load and what each must be.

Pure functions over the parsed JSON document (no I/O), so every rule is tested without a server.
Schema version 1 (``{"version": 1, "format", "compression", "csv", "columns", "files": [{"key",
"rows", "bytes", "etag", "checksum": {"algorithm", "type", "value", "etag"}}], "rows", "bytes"}``)
and older manifests without ``version`` (just ``format``, ``files``, ``rows``, ``bytes``) are read;
a later version is refused rather than half-understood.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from airflow_s3stream.errors import SourceError

__all__ = ["MANIFEST_NAME", "SUPPORTED_MANIFEST_VERSION", "Manifest", "ManifestFile", "parse_manifest"]

MANIFEST_NAME = "_manifest.json"  # the export's name for it (export.keys.MANIFEST_NAME)
SUPPORTED_MANIFEST_VERSION = 1


@dataclass(frozen=True)
class ManifestFile:
    """One listed file: key, data rows, stored bytes, ETag and checksum (when listed)."""

    key: str
    rows: int | None
    bytes: int | None
    etag: str | None = None
    checksum_algorithm: str | None = None
    checksum_value: str | None = None


@dataclass(frozen=True)
class Manifest:
    """The parts of a manifest a load needs."""

    key: str
    files: tuple[ManifestFile, ...]
    rows: int | None
    file_format: str | None
    compression: str | None
    csv: dict[str, Any] | None
    version: int | None


def _int_or_none(value: Any, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SourceError(f"{what} must be a non-negative integer, got {value!r}")
    return value


def _file(entry: Any, where: str, index: int) -> ManifestFile:
    if not isinstance(entry, dict) or not isinstance(entry.get("key"), str) or not entry["key"]:
        raise SourceError(f"{where}: files[{index}] has no key")
    key = entry["key"]
    listed = entry.get("checksum")
    checksum: dict[str, Any] = listed if isinstance(listed, dict) else {}
    etag = entry.get("etag") or checksum.get("etag")
    return ManifestFile(
        key=key,
        rows=_int_or_none(entry.get("rows"), f"{where}: rows of {key}"),
        bytes=_int_or_none(entry.get("bytes"), f"{where}: bytes of {key}"),
        etag=str(etag) if etag else None,
        checksum_algorithm=str(checksum["algorithm"]) if checksum.get("algorithm") else None,
        checksum_value=str(checksum["value"]) if checksum.get("value") else None,
    )


def parse_manifest(body: bytes, bucket: str, key: str) -> Manifest:
    """Parse the manifest stored at ``s3://bucket/key``.

    :raises SourceError: not JSON, not an object, no ``files`` list, an entry without key, a
        negative count, or a ``version`` newer than this package reads. The message names the key.
    """
    where = f"manifest s3://{bucket}/{key}"
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SourceError(f"{where}: not valid JSON ({exc})") from exc
    if not isinstance(doc, dict):
        raise SourceError(f"{where}: expected a JSON object, got {type(doc).__name__}")
    version = doc.get("version")
    if version is not None and version != SUPPORTED_MANIFEST_VERSION:
        raise SourceError(f"{where}: version {version!r} is newer than this package reads (1)")
    files = doc.get("files")
    if not isinstance(files, list):
        raise SourceError(f"{where}: no 'files' list")
    csv = doc.get("csv")
    return Manifest(
        key=key,
        files=tuple(_file(entry, where, i) for i, entry in enumerate(files)),
        rows=_int_or_none(doc.get("rows"), f"{where}: rows"),
        file_format=doc.get("format") if isinstance(doc.get("format"), str) else None,
        compression=doc.get("compression") if isinstance(doc.get("compression"), str) else None,
        csv=csv if isinstance(csv, dict) else None,
        version=version,
    )
