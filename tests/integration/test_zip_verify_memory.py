"""Memory that does not grow with the entry count, a hostile directory, or a forged directory size.

Each verification runs in a child process that first imports the operators (the idle baseline a
worker pays anyway) and reports its peak RSS above that baseline. Archives are written record by
record (:func:`tests.support.bags.write_many_member_zip`) and read through
:class:`~tests.support.local_sources.LocalFileSource`: the memory under test is the verifier's, and
the test S3 endpoint would add its own whole-object reads.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tests.support.bags import write_many_member_zip

MiB = 1024 * 1024
ROOT = Path(__file__).resolve().parents[2]

CHILD = r"""
import json, sys
import boto3
from tests.support.memory import peak_rss_kib
from airflow_s3stream.operators import S3ZipVerifyOperator  # the idle baseline: what a worker imports anyway
from airflow_s3stream.archive.verify import VerifyConfig, verify_archive
from tests.support.local_sources import LocalFileSource
from airflow_s3stream.errors import ArchiveError
idle = peak_rss_kib()
result = {}
try:
    report = verify_archive(LocalFileSource(sys.argv[1]), VerifyConfig(mode=sys.argv[2]))
    result = {"valid": report.valid, "checked": report.members_checked, "total": report.members_total,
              "errors": report.errors.total, "kept": len(report.errors), "first": str(report.errors[:1])}
except ArchiveError as exc:
    result = {"raised": str(exc)}
peak = peak_rss_kib()
print(json.dumps({**result, "above_idle_mib": (peak - idle) / 1024}))
"""


def _verify_in_child(path: Path, mode: str = "auto") -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), mode],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "AIRFLOW__CORE__LOAD_EXAMPLES": "False"},
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.mark.slow
def test_a_million_entry_archive_verifies_within_192_mib_above_idle(tmp_path: Path) -> None:
    path = tmp_path / "million.zip"
    write_many_member_zip(path, 1_000_000)
    result = _verify_in_child(path)
    assert result["valid"] and result["checked"] == 1_000_000, result
    assert result["above_idle_mib"] <= 192, result


@pytest.mark.slow
def test_entries_all_pointing_at_one_member_are_flagged_in_flat_memory(tmp_path: Path) -> None:
    path = tmp_path / "hostile.zip"
    write_many_member_zip(path, 500_000, shared=True)
    result = _verify_in_child(path)
    assert not result["valid"] and result["checked"] == 1 and result["total"] == 500_000, result
    # every overlap is counted, the first 10,000 kept: findings cannot pile up with the entry count
    assert result["errors"] == 499_999 and result["kept"] == 10_000, result
    assert "overlaps member d0000/m0000000.txt" in result["first"], result
    assert result["above_idle_mib"] <= 192, result


def _forge_directory_size(path: Path) -> None:
    """Make the end record claim that the whole object before it is the central directory."""
    data = bytearray(path.read_bytes())
    eocd = data.rfind(b"PK\x05\x06")
    struct.pack_into("<2L", data, eocd + 12, eocd, 0)  # size = every byte before the EOCD, offset 0
    path.write_bytes(bytes(data))


@pytest.mark.slow
def test_a_forged_directory_size_costs_no_more_than_a_valid_archive(tmp_path: Path) -> None:
    valid = tmp_path / "valid.zip"
    with zipfile.ZipFile(valid, "w", zipfile.ZIP_STORED) as zf:
        for i in range(12):
            zf.writestr(f"m{i}.bin", bytes([i]) * (16 * MiB))
    forged = tmp_path / "forged.zip"
    forged.write_bytes(valid.read_bytes())
    _forge_directory_size(forged)
    honest = _verify_in_child(valid, "zip")
    hostile = _verify_in_child(forged, "zip")
    assert honest["valid"], honest
    assert "central directory entry 0 at offset 0: bad signature" in hostile["raised"], hostile
    # the old reader loaded the claimed 192 MiB (twice) before finding the first bad signature
    assert hostile["above_idle_mib"] <= honest["above_idle_mib"] + 4, (honest, hostile)
