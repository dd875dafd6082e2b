"""The export manifest: its schema, the one writer and the one reader of ``_manifest.json``.

``<prefix>/_manifest.json`` is written LAST by a commit, so its presence means "this export is
complete", and each ``files`` entry names the object's ``etag`` and ``checksum`` so a reader can
check that what it reads is what was published. Schema version 1::

    {"version": 1,
     "format": "csv", "compression": "gzip",
     "csv": {"delimiter": ",", "header": true, "null_string": ""},      # null unless format is csv
     "query": "SELECT ...",                  # null when the files of a job come from different queries
     "columns": [{"name": "id", "type": "int8"}, ...],
     "files": [{"key": "exp/day/part-00000.csv.gz", "rows": 1000, "bytes": 5242880,
                "etag": "\\"...-2\\"", "checksum": {"algorithm": "CRC32C", "type": "COMPOSITE",
                                                 "value": "...-2", "etag": "\\"...-2\\""}}, ...],
     "rows": 1000, "bytes": 5242880, "seconds": 2.5, "created_at": "2026-11-26T12:00:00Z"}

``rows`` and ``bytes`` are the sums over ``files``. A staged file's ``etag`` and ``checksum`` are
filled in by the commit from the completed object (:func:`with_published`). The reader also takes
manifests older than version 1 (just ``format``, ``files``, ``rows``, ``bytes``) and refuses a later
version rather than half-understand it. Pure functions over documents and bytes: no I/O here.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from airflow_s3stream.errors import SourceError
from airflow_s3stream.s3.multipart.result import UploadResult

__all__ = [
    "MANIFEST_NAME",
    "MANIFEST_VERSION",
    "Manifest",
    "ManifestFile",
    "build_manifest",
    "csv_settings",
    "encode_manifest",
    "index_entry",
    "parse_manifest",
    "with_published",
]

MANIFEST_NAME = "_manifest.json"  # the object name of a manifest, beside or inside the files it lists
MANIFEST_VERSION = 1  # the version written, and the newest one read


@dataclass(frozen=True)
class ManifestFile:
    """One ``files`` entry: key, data rows, stored bytes, and the ETag and checksum when listed."""

    key: str
    rows: int | None
    bytes: int | None
    etag: str | None = None
    checksum_algorithm: str | None = None
    checksum_value: str | None = None


@dataclass(frozen=True)
class Manifest:
    """A manifest as read: the fields a load needs, and the whole ``document`` as stored."""

    key: str
    files: tuple[ManifestFile, ...]
    rows: int | None
    file_format: str | None
    compression: str | None
    csv: dict[str, Any] | None
    version: int | None
    document: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


def csv_settings(file_format: str, *, delimiter: str, header: bool, null_string: str) -> dict[str, Any] | None:
    """The ``csv`` block: what a loader needs to read the files back unchanged; ``None`` for other formats."""
    if file_format != "csv":
        return None
    return {"delimiter": delimiter, "header": header, "null_string": null_string}


def build_manifest(
    *,
    file_format: str | None,
    compression: str | None,
    csv: dict[str, Any] | None,
    query: str | None,
    columns: Sequence[Mapping[str, str]],
    files: Sequence[Mapping[str, Any]],
    seconds: float,
) -> dict[str, Any]:
    """The manifest document (version 1) of an export of ``files`` (mappings with ``key``, ``rows``,
    ``bytes``, and ``etag``/``checksum`` once published). ``files`` keep the order given: a loader
    reads them in that order. ``seconds`` is rounded to milliseconds; ``created_at`` is now (UTC)."""
    listed = [dict(f) for f in files]
    return {
        "version": MANIFEST_VERSION,
        "format": file_format,
        "compression": compression,
        "csv": csv,
        "query": query,
        "columns": [dict(c) for c in columns],
        "files": listed,
        "rows": sum(int(f["rows"]) for f in listed),
        "bytes": sum(int(f["bytes"]) for f in listed),
        "seconds": round(seconds, 3),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def index_entry(result: UploadResult | Mapping[str, Any]) -> dict[str, Any]:
    """The ``etag`` and ``checksum`` fields a ``files`` entry lists for one completed object
    (an :class:`UploadResult` or its ``to_dict()``)."""
    data = result.to_dict() if isinstance(result, UploadResult) else result
    return {
        "etag": data.get("etag"),
        "checksum": {
            "algorithm": data.get("checksum_algorithm"),
            "type": data.get("checksum_type"),
            "value": data.get("checksum"),
            "etag": data.get("etag"),
        },
    }


def with_published(document: Mapping[str, Any], results: Mapping[str, UploadResult]) -> dict[str, Any]:
    """``document`` with each ``files`` entry whose key is in ``results`` given that object's
    ``etag`` and ``checksum`` (:func:`index_entry`); other entries and fields are kept as they are."""
    published = dict(document)
    published["files"] = [
        {**entry, **(index_entry(results[entry["key"]]) if entry.get("key") in results else {})}
        for entry in document.get("files", [])
    ]
    return published


def encode_manifest(document: Mapping[str, Any]) -> bytes:
    """The bytes stored at ``_manifest.json``: JSON indented by two spaces, ASCII only."""
    return json.dumps(document, indent=2).encode()


def _count(value: Any, where: str, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SourceError(f"{where}: {what} must be a non-negative integer, got {value!r}")
    return value


def _text(value: Any, where: str, what: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise SourceError(f"{where}: {what} must be a string, got {value!r}")


def _object(value: Any, where: str, what: str) -> dict[str, Any] | None:
    if value is None or isinstance(value, dict):
        return value
    raise SourceError(f"{where}: {what} must be an object, got {value!r}")


def _file(entry: Any, where: str, index: int) -> ManifestFile:
    if not isinstance(entry, dict) or not isinstance(entry.get("key"), str) or not entry["key"]:
        raise SourceError(f"{where}: files[{index}] has no key")
    key = entry["key"]
    checksum = _object(entry.get("checksum"), where, f"checksum of {key}") or {}
    etag = _text(entry.get("etag"), where, f"etag of {key}") or _text(
        checksum.get("etag"), where, f"checksum.etag of {key}"
    )
    return ManifestFile(
        key=key,
        rows=_count(entry.get("rows"), where, f"rows of {key}"),
        bytes=_count(entry.get("bytes"), where, f"bytes of {key}"),
        etag=etag or None,
        checksum_algorithm=_text(checksum.get("algorithm"), where, f"checksum.algorithm of {key}") or None,
        checksum_value=_text(checksum.get("value"), where, f"checksum.value of {key}") or None,
    )


def parse_manifest(body: bytes, bucket: str, key: str) -> Manifest:
    """Read the manifest stored at ``s3://bucket/key``.

    :raises SourceError: naming the manifest and the field at fault: not JSON, not an object, a
        ``version`` that is not a positive integer or is newer than :data:`MANIFEST_VERSION`, no
        ``files`` list, an entry without key, a count that is not a non-negative integer, a
        ``format``, ``compression``, ``etag`` or checksum field that is not a string, a ``csv`` or
        ``checksum`` that is not an object.
    """
    where = f"manifest s3://{bucket}/{key}"
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SourceError(f"{where}: not valid JSON ({exc})") from exc
    if not isinstance(doc, dict):
        raise SourceError(f"{where}: expected a JSON object, got {type(doc).__name__}")
    version = doc.get("version")
    if version is not None and (isinstance(version, bool) or not isinstance(version, int) or version < 1):
        raise SourceError(f"{where}: version must be a positive integer, got {version!r}")
    if version is not None and version > MANIFEST_VERSION:
        raise SourceError(f"{where}: version {version!r} is newer than this package reads ({MANIFEST_VERSION})")
    files = doc.get("files")
    if not isinstance(files, list):
        raise SourceError(f"{where}: no 'files' list")
    return Manifest(
        key=key,
        files=tuple(_file(entry, where, i) for i, entry in enumerate(files)),
        rows=_count(doc.get("rows"), where, "rows"),
        file_format=_text(doc.get("format"), where, "format"),
        compression=_text(doc.get("compression"), where, "compression"),
        csv=_object(doc.get("csv"), where, "csv"),
        version=version,
        document=doc,
    )
