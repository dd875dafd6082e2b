"""Resume state of an upload, kept in S3 beside the destination, and the pure resume decision.

Where the state lives: a small JSON object in the destination bucket at
``<state_prefix><key>.json`` (default prefix ``.s3stream-resume/``). It survives the worker (a
killed pod, a retried task on another machine) and is deleted when the upload completes or is
aborted. It records the upload id, a fingerprint of the source (size, mtime or ETag, and a
CRC64NVME over three 64 KiB samples), the part size and checksum settings, and every part the
server has acknowledged with its ETag, size, CRC and MD5.

Why not only ListParts: moto (and some S3-compatible stores) return no part checksums there, and
an ETag is not a reliable MD5 (SSE-KMS). A part is reused only if the state records it and
ListParts still shows it with the same ETag and size (and the same checksum where the server
reports one); everything else is uploaded again.

Who may use it: the state names its ``owner`` (a token per try) and that owner's ``lease`` in
seconds. A live owner rewrites the state at least every quarter lease; a try that finds a state
owned by another try and written less than ``lease`` seconds ago leaves it alone (see
:mod:`.state_store`). An owner that stops on purpose releases it (``owner`` empty), so the next
try continues at once.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from airflow_s3stream.errors import ConcurrentUploadError, TransientError
from airflow_s3stream.s3.multipart.config import AUTO_PREFERRED_ALGORITHM, CHECKSUM_MD5
from airflow_s3stream.s3.multipart.part_record import PartRecord
from airflow_s3stream.s3.objects import S3Object
from airflow_s3stream.upload.lease import Lease
from airflow_s3stream.upload.plan import PartPlan

__all__ = [
    "DEFAULT_STATE_PREFIX",
    "AfterFailure",
    "ResumeDecision",
    "ResumeState",
    "SourceFingerprint",
    "after_failure",
    "decide_resume",
    "describes",
    "resumable_checksum",
    "state_key",
]

DEFAULT_STATE_PREFIX = ".s3stream-resume/"
STATE_VERSION = 1


def state_key(key: str, prefix: str = DEFAULT_STATE_PREFIX) -> str:
    """Key of the resume state object for destination ``key``."""
    return f"{prefix}{key}.json"


@dataclass(frozen=True)
class SourceFingerprint:
    """Identity of a source's content: changes if the source is replaced or edited.

    ``version`` is the mtime in nanoseconds for a file, the ETag (and VersionId) for an S3 object.
    ``sample`` is a CRC over a few fixed ranges (files), '' when reading is not free (S3 copy).
    """

    kind: str  # "file" | "s3"
    name: str  # path or s3:// URI (never a presigned URL)
    size: int
    version: str
    sample: str = ""

    @classmethod
    def of_object(cls, obj: S3Object) -> SourceFingerprint:
        """The fingerprint of an S3 source: its ETag and version say whether it was replaced."""
        return cls("s3", obj.uri, obj.size, f"{obj.etag}/{obj.version_id or ''}")


@dataclass
class ResumeState:
    """Everything a later try needs to continue ``upload_id``."""

    bucket: str
    key: str
    upload_id: str
    source: SourceFingerprint
    part_size: int
    checksum_algorithm: str
    checksum_type: str
    parts: dict[int, PartRecord] = field(default_factory=dict)
    version: int = STATE_VERSION
    owner: str = ""  # token of the try using it; '' = released (or written before owners existed)
    lease: float = 0.0  # seconds after its last write that the owner counts as gone

    @property
    def holder(self) -> Lease:
        """Who holds this state, and for how long after each write (:mod:`.lease`)."""
        return Lease(self.owner, self.lease)

    def held_by_other(self, owner: str, age: float) -> bool:
        """True when a try other than ``owner`` holds this state and wrote it ``age`` seconds ago,
        within its lease: that try may be alive, so it must not be resumed or overwritten."""
        return self.holder.held_against(owner, age)

    def to_json(self) -> bytes:
        data = asdict(self)
        data["parts"] = [p.to_dict() for _, p in sorted(self.parts.items())]
        return json.dumps(data, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> ResumeState:
        """Parse a state object; raises ``ValueError`` (or ``KeyError``/``TypeError``) if malformed."""
        data = json.loads(raw)
        if data.get("version") != STATE_VERSION:
            raise ValueError(f"unsupported resume state version {data.get('version')!r}")
        parts = {int(p["number"]): PartRecord.from_dict(p) for p in data["parts"]}
        return cls(
            bucket=data["bucket"],
            key=data["key"],
            upload_id=data["upload_id"],
            source=SourceFingerprint(**data["source"]),
            part_size=int(data["part_size"]),
            checksum_algorithm=data["checksum_algorithm"],
            checksum_type=data["checksum_type"],
            parts=parts,
            owner=str(data.get("owner") or ""),
            lease=float(data.get("lease") or 0.0),
        )


@dataclass(frozen=True)
class ResumeDecision:
    """``resume`` True: continue ``state.upload_id`` reusing ``trusted`` parts. Else start fresh."""

    resume: bool
    reason: str
    trusted: dict[int, PartRecord] = field(default_factory=dict)
    abort_old: bool = False  # an upload exists that must be aborted before starting fresh


def decide_resume(
    state: ResumeState | None,
    *,
    bucket: str,
    key: str,
    source: SourceFingerprint,
    part_size: int,
    checksum_algorithm: str,
    checksum_type: str,
    listed: dict[int, dict[str, Any]] | None,
) -> ResumeDecision:
    """Decide whether to continue the recorded upload. Pure: no I/O.

    :param listed: ListParts of ``state.upload_id`` by part number, or ``None`` if the upload no
        longer exists (completed or aborted).
    """
    if state is None:
        return ResumeDecision(False, "no earlier upload recorded")
    if listed is None:
        return ResumeDecision(False, f"earlier upload {state.upload_id} no longer exists")
    if (state.bucket, state.key) != (bucket, key):
        return ResumeDecision(False, "state belongs to another destination", abort_old=False)
    if state.source != source:
        changed = [
            name
            for name in ("kind", "name", "size", "version", "sample")
            if getattr(state.source, name) != getattr(source, name)
        ]
        return ResumeDecision(False, f"source changed since the earlier try ({', '.join(changed)})", abort_old=True)
    if (state.part_size, state.checksum_algorithm, state.checksum_type) != (
        part_size,
        checksum_algorithm,
        checksum_type,
    ):
        return ResumeDecision(False, "part size or checksum settings differ from the earlier try", abort_old=True)
    trusted: dict[int, PartRecord] = {}
    for number, record in state.parts.items():
        server = listed.get(number)
        if server is None or not record.checksum:
            continue
        if str(server.get("ETag")) != record.etag or int(server.get("Size", -1)) != record.size:
            continue
        server_checksum = server.get(f"Checksum{checksum_algorithm}")
        if server_checksum and server_checksum != record.checksum:
            continue
        trusted[number] = record
    return ResumeDecision(True, f"reusing {len(trusted)} of {len(listed)} stored parts", trusted)


def resumable_checksum(
    state: ResumeState, *, auto: bool, current: Callable[[], str], checksum_type: str | None
) -> tuple[str, str]:
    """The checksum algorithm and type an earlier try's upload may be continued with. Pure.

    ``auto`` continues with whichever algorithm the earlier try chose (CRC32C or MD5); otherwise it
    is ``current()``, the algorithm this try uses (only asked for when needed: resolving ``auto``
    may probe the endpoint). An MD5 upload is composite; any other has the configured ``checksum_type``.
    """
    if auto and state.checksum_algorithm in (AUTO_PREFERRED_ALGORITHM, CHECKSUM_MD5):
        algorithm = state.checksum_algorithm
    else:
        algorithm = current()
    return algorithm, "COMPOSITE" if algorithm == CHECKSUM_MD5 else str(checksum_type)


def describes(
    state: ResumeState,
    plan: PartPlan,
    *,
    bucket: str,
    key: str,
    source: SourceFingerprint,
    checksum: Callable[[], tuple[str, str]],
) -> list[PartRecord] | None:
    """The records of every planned part when ``state`` describes this very upload (same
    destination, source, and the algorithm and type ``checksum()`` gives: asked only when the rest
    matches, since it may probe the endpoint) and records all of them; else ``None``. Pure.

    This is what lets a try that finds its recorded upload gone ask whether the destination is
    already the object that upload would have made. Whoever owns the state does not matter.
    """
    if (state.bucket, state.key, state.source) != (bucket, key, source):
        return None
    if (state.checksum_algorithm, state.checksum_type) != checksum():
        return None
    return plan.all_recorded(state.parts)


class AfterFailure(enum.Enum):
    """What becomes of an upload whose try failed."""

    ABORT = "abort"  # abort the upload and delete its state: nothing is left to resume
    KEEP = "keep"  # keep the upload and release its state: the next try continues at once
    LEAVE = "leave"  # another try has taken the upload over: touch neither


def after_failure(exc: BaseException, *, resumable: bool, taken_over: bool, keep_for_retry: bool) -> AfterFailure:
    """Decide what a failed try does with its upload. Pure.

    :param resumable: the try keeps resume state (``resume=True``); without it, it always aborts.
    :param taken_over: the try's checkpointer found its state written by another try.
    :param keep_for_retry: a next try will follow. Only a transient failure is kept for it (an
        interrupted try counts as one); a failure that retrying cannot fix is aborted.
    """
    if not resumable:
        return AfterFailure.ABORT
    if taken_over or isinstance(exc, ConcurrentUploadError):
        return AfterFailure.LEAVE
    if keep_for_retry and isinstance(exc, TransientError):
        return AfterFailure.KEEP
    return AfterFailure.ABORT
