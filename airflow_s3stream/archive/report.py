"""The verification report: what was checked, what is wrong, and what it cost.

:class:`VerificationReport` is plain data; :meth:`VerificationReport.to_dict` is the
JSON-serialisable form an operator pushes to XCom and can store beside the archive.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["Finding", "VerificationReport"]


@dataclass(frozen=True)
class Finding:
    """One error or warning: the member (or tag file) at fault and why."""

    member: str
    reason: str

    def __str__(self) -> str:
        return f"{self.member}: {self.reason}" if self.member else self.reason


@dataclass
class VerificationReport:
    """Outcome of one verification pass over an archive."""

    source: str
    mode: str  # "zip" or "bagit" (what was actually checked)
    archive_bytes: int = 0
    members_total: int = 0
    members_checked: int = 0
    uncompressed_bytes: int = 0
    payload_files: int = 0
    payload_bytes: int = 0
    algorithms: list[str] = field(default_factory=list)
    bag_root: str | None = None
    bagit_version: str | None = None
    fetch_entries: int = 0
    errors: list[Finding] = field(default_factory=list)
    warnings: list[Finding] = field(default_factory=list)
    requests: int = 0
    bytes_read: int = 0
    seconds: float = 0.0

    @property
    def valid(self) -> bool:
        return not self.errors

    def summary(self, limit: int = 20) -> str:
        """A readable multi-line summary for task logs: verdict, counts, first ``limit`` errors."""
        verdict = "VALID" if self.valid else f"INVALID ({len(self.errors)} errors)"
        lines = [
            f"{self.source}: {verdict} as {self.mode}; {self.members_checked}/{self.members_total} members, "
            f"{self.payload_files} payload files ({self.payload_bytes} bytes), {len(self.warnings)} warnings, "
            f"{self.requests} requests, {self.bytes_read} bytes read in {self.seconds:.2f} s"
        ]
        lines += [f"  error: {e}" for e in self.errors[:limit]]
        if len(self.errors) > limit:
            lines.append(f"  ... and {len(self.errors) - limit} more errors")
        return "\n".join(lines)

    def to_dict(self, max_findings: int = 1000) -> dict[str, Any]:
        """JSON-serialisable form; at most ``max_findings`` errors and warnings each (XCom is small)."""
        data = asdict(self)
        data["valid"] = self.valid
        data["error_count"], data["warning_count"] = len(self.errors), len(self.warnings)
        data["errors"] = [asdict(f) for f in self.errors[:max_findings]]
        data["warnings"] = [asdict(f) for f in self.warnings[:max_findings]]
        data["seconds"] = round(self.seconds, 3)
        return data
