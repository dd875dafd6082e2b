"""The commit plan and its persisted form, the *commit state*: what a killed try's next try finishes.

A :class:`CommitPlan` says everything one commit does: complete ``uploads``, delete ``delete``,
write ``manifest`` at ``manifest_key``. Before its first Complete the commit stores the plan as
JSON (``version`` 1) beside the manifest, a few hundred bytes per file::

    {"version": 1, "bucket": "b", "index_key": "exp/day/_manifest.json", "index": {... "files": [{"key": ...}]},
     "delete": ["exp/day/part-00004.csv"],
     "uploads": [{"key": "exp/day/part-00000.csv", "upload_id": "...", "algorithm": "CRC32C",
                  "checksum_type": "COMPOSITE", "parts": [[1, 5242880, "\\"etag\\"", "crc-b64", "md5-hex"], ...]}]}

(``index_key`` and ``index`` are the manifest's key and document: the names states already stored use.)
Pure data: no I/O here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from airflow_s3stream.s3.multipart.staged import StagedUpload

__all__ = ["COMMIT_STATE_VERSION", "CommitPlan"]

COMMIT_STATE_VERSION = 1


@dataclass(frozen=True)
class CommitPlan:
    """Everything one commit does: complete ``uploads``, delete ``delete``, write ``manifest`` at ``manifest_key``.

    ``manifest`` is a manifest document (:func:`~airflow_s3stream.publish.manifest.build_manifest`)
    whose ``files`` entries get the ``etag`` and ``checksum`` of their completed object before it is written.
    """

    bucket: str
    uploads: tuple[StagedUpload, ...]
    delete: tuple[str, ...] = ()
    manifest_key: str | None = None
    manifest: dict[str, Any] | None = None

    def to_json(self) -> bytes:
        """The commit state (compact JSON)."""
        return json.dumps(
            {
                "version": COMMIT_STATE_VERSION,
                "bucket": self.bucket,
                "index_key": self.manifest_key,
                "index": self.manifest,
                "delete": list(self.delete),
                "uploads": [u.to_dict() for u in self.uploads],
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> CommitPlan:
        """The plan a commit state records.

        :raises ValueError: not JSON, or another ``version``. :raises KeyError, TypeError: a field is
            missing or of the wrong kind.
        """
        data = json.loads(raw)
        if data.get("version") != COMMIT_STATE_VERSION:
            raise ValueError(f"commit state version {data.get('version')!r} is not {COMMIT_STATE_VERSION}")
        bucket = str(data["bucket"])
        uploads = tuple(StagedUpload.from_dict(bucket, u) for u in data["uploads"])
        return cls(bucket, uploads, tuple(data["delete"]), data.get("index_key"), data.get("index"))
