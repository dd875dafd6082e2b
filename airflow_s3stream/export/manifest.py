"""The export manifest: one schema, written by one function, for a single task and a job of mapped tasks.

``<prefix>/_manifest.json`` is written LAST by a commit, so its presence means "this export is
complete", and each ``files`` entry names the object's ``etag`` and ``checksum`` so a reader can
check that what it reads is what was published (version 1)::

    {"version": 1,
     "format": "csv", "compression": "gzip",
     "csv": {"delimiter": ",", "header": true, "null_string": ""},      # null unless format is csv
     "query": "SELECT ...",                  # null when the files of a job come from different queries
     "columns": [{"name": "id", "type": "int8"}, ...],
     "files": [{"key": "exp/day/part-00000.csv.gz", "rows": 1000, "bytes": 5242880,
                "etag": "\\"...-2\\"", "checksum": {"algorithm": "CRC32C", "type": "COMPOSITE",
                                                 "value": "...-2", "etag": "\\"...-2\\""}}, ...],
     "rows": 1000, "bytes": 5242880, "seconds": 2.5, "created_at": "2026-11-26T12:00:00Z"}

``rows`` and ``bytes`` are the sums over ``files``. The ``etag`` and ``checksum`` of a staged file
are filled in by the commit, from the completed object (:func:`~airflow_s3stream.s3.multipart.commit.index_entry`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

__all__ = ["MANIFEST_VERSION", "build_manifest", "csv_settings"]

MANIFEST_VERSION = 1


def csv_settings(file_format: str, *, delimiter: str, header: bool, null_string: str) -> dict[str, Any] | None:
    """The ``csv`` block: what a loader needs to read the files back unchanged; ``None`` for other formats."""
    if file_format != "csv":
        return None
    return {"delimiter": delimiter, "header": header, "null_string": null_string}


def build_manifest(
    *,
    file_format: str,
    compression: str | None,
    csv: dict[str, Any] | None,
    query: str | None,
    columns: Sequence[dict[str, str]],
    files: Sequence[dict[str, Any]],
    seconds: float,
) -> dict[str, Any]:
    """The manifest document (version 1) of an export of ``files`` (dicts with ``key``, ``rows``, ``bytes``).

    ``files`` keep the order given: a loader reads them in that order.
    """
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
