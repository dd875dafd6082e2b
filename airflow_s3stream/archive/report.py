"""The verification report: what was checked, what is wrong, and what it cost.

:class:`VerificationReport` is plain data; :meth:`VerificationReport.to_dict` is the
JSON-serialisable form an operator pushes to XCom and can store beside the archive.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["MAX_KEPT_FINDINGS", "Finding", "Findings", "VerificationReport"]

MAX_KEPT_FINDINGS = 10_000  # errors (and warnings) kept per report; the rest are only counted


@dataclass(frozen=True)
class Finding:
    """One error or warning: the member (or tag file) at fault and why."""

    member: str
    reason: str

    def __str__(self) -> str:
        return f"{self.member}: {self.reason}" if self.member else self.reason


class Findings(list[Finding]):
    """A list of findings that keeps the first ``limit`` and counts the rest (:attr:`dropped`).

    A hostile archive can produce one finding per entry (a million entries pointing at one
    member); keeping them all would make memory grow with the archive, not with what a reader
    of the report can use. :attr:`total` is the full count.
    """

    def __init__(self, items: Iterable[Finding] = (), limit: int = MAX_KEPT_FINDINGS) -> None:
        super().__init__()
        self.limit = limit
        self.dropped = 0
        self.extend(items)

    @property
    def total(self) -> int:
        return len(self) + self.dropped

    def append(self, finding: Finding) -> None:
        if len(self) < self.limit:
            super().append(finding)
        else:
            self.dropped += 1

    def extend(self, findings: Iterable[Finding]) -> None:
        for finding in findings:
            self.append(finding)
        if isinstance(findings, Findings):
            self.dropped += findings.dropped

    def __iadd__(self, findings: Iterable[Finding]) -> Findings:  # type: ignore[override,misc]
        self.extend(findings)
        return self


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
    errors: Findings = field(default_factory=Findings)
    warnings: Findings = field(default_factory=Findings)
    requests: int = 0
    bytes_read: int = 0
    seconds: float = 0.0

    @property
    def valid(self) -> bool:
        return not self.errors

    def summary(self, limit: int = 20) -> str:
        """A readable multi-line summary for task logs: verdict, counts, first ``limit`` errors."""
        verdict = "VALID" if self.valid else f"INVALID ({self.errors.total} errors)"
        lines = [
            f"{self.source}: {verdict} as {self.mode}; {self.members_checked}/{self.members_total} members, "
            f"{self.payload_files} payload files ({self.payload_bytes} bytes), {self.warnings.total} warnings, "
            f"{self.requests} requests, {self.bytes_read} bytes read in {self.seconds:.2f} s"
        ]
        lines += [f"  error: {e}" for e in self.errors[:limit]]
        if self.errors.total > limit:
            lines.append(f"  ... and {self.errors.total - limit} more errors")
        return "\n".join(lines)

    def to_dict(self, max_findings: int = 1000) -> dict[str, Any]:
        """JSON-serialisable form; at most ``max_findings`` errors and warnings each (XCom is small)."""
        data = asdict(self)
        data["valid"] = self.valid
        data["error_count"], data["warning_count"] = self.errors.total, self.warnings.total
        data["errors"] = [asdict(f) for f in self.errors[:max_findings]]
        data["warnings"] = [asdict(f) for f in self.warnings[:max_findings]]
        data["seconds"] = round(self.seconds, 3)
        return data
