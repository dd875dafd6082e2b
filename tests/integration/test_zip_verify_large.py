"""Large archives: over 4 GiB (ZIP64 offsets and sizes, local-file source) and bounded memory.

The >4 GiB archive is a sparse file (its member is zeros), verified through
:class:`~tests.support.local_sources.LocalFileSource` because the test S3 endpoint (moto) loads a
whole object per GET. Memory is measured as the peak RSS of a child process verifying archives
of two sizes from the real S3 endpoint.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from airflow_s3stream.archive.verify import VerifyConfig, verify_archive
from airflow_s3stream.archive.zip import ZipArchive
from airflow_s3stream.s3.reader import ReaderConfig
from tests.support.bags import SparseZeroWriter
from tests.support.local_sources import LocalFileSource

MiB = 1024 * 1024
GiB = 1024 * MiB


def _sparse_zip64(path: Path, zeros: int) -> None:
    """A ZIP written by zipfile: ``zeros`` bytes of stored zeros, then a small member after 4 GiB."""
    with SparseZeroWriter(path) as sink, zipfile.ZipFile(sink, "w", zipfile.ZIP_STORED) as zf:
        with zf.open("big/zeros.bin", "w", force_zip64=True) as member:
            block = bytes(MiB)
            for _ in range(zeros // MiB):
                member.write(block)
        zf.writestr("big/after.txt", b"beyond the 4 GiB mark\n")


@pytest.mark.slow
def test_archive_over_4_gib_verifies_with_zip64_offsets(tmp_path: Path) -> None:
    path = tmp_path / "huge.zip"
    _sparse_zip64(path, 4 * GiB + 64 * MiB)
    assert path.stat().st_size > 4 * GiB
    single_stream = VerifyConfig(mode="zip", reader=ReaderConfig(prefetch_blocks=0))
    report = verify_archive(LocalFileSource(path), single_stream)
    assert report.valid, report.summary()
    assert report.members_checked == 2 and report.uncompressed_bytes == 4 * GiB + 64 * MiB + 22
    assert report.requests == 2  # the tail, then one sequential pass
    with open(path, "rb") as f:
        archive = ZipArchive.open(f, path.stat().st_size)
    after = next(e for e in archive.entries if e.name == "big/after.txt")
    assert archive.location.zip64 and after.header_offset > 4 * GiB


CHILD = r"""
import json, sys
from airflow_s3stream.archive.verify import VerifyConfig, verify_archive
from airflow_s3stream.s3.reader import DEFAULT_MAX_STREAMS, ReaderConfig, S3ObjectSource
from tests.support import devservices
from tests.support.memory import peak_rss_kib
import boto3
endpoint, key_id, secret, region, bucket, key = sys.argv[1:]
client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=key_id, aws_secret_access_key=secret,
                      region_name=region)
before = peak_rss_kib()
# the adaptive ceiling held fixed, so both sizes fill the same window whatever the timing
reader = ReaderConfig(prefetch_blocks=DEFAULT_MAX_STREAMS)
report = verify_archive(S3ObjectSource(client, bucket, key), VerifyConfig(mode="zip", reader=reader))
print(json.dumps({"valid": report.valid, "before_kib": before,
                  "peak_kib": peak_rss_kib()}))
"""


def _child_peak(s3: Any, bucket: str, key: str) -> dict[str, Any]:
    args = [s3.endpoint_url, s3.access_key_id, s3.secret_access_key, s3.region, bucket, key]
    out = subprocess.run([sys.executable, "-c", CHILD, *args], check=True, capture_output=True, text=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.mark.slow
def test_peak_memory_does_not_grow_with_archive_size(tmp_path: Path, s3: Any, s3_client: Any, bucket: str) -> None:
    # both larger than the read-ahead window ((6 + 2) x 8 MiB), so both reach it; the second 4x the first
    for name, size in (("small.zip", 96 * MiB), ("large.zip", 384 * MiB)):
        path = tmp_path / name
        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
            for i in range(size // (8 * MiB)):
                zf.writestr(f"m{i}.bin", os.urandom(8 * MiB))
        s3_client.upload_file(str(path), bucket, name)
        path.unlink()
    small, large = _child_peak(s3, bucket, "small.zip"), _child_peak(s3, bucket, "large.zip")
    assert small["valid"] and large["valid"]
    growth_small = small["peak_kib"] - small["before_kib"]
    growth_large = large["peak_kib"] - large["before_kib"]
    assert growth_large < 96 * 1024, growth_large  # KiB: (6 + 2) x 8 MiB of read-ahead and slack, not the archive
    assert large["peak_kib"] <= 1.25 * small["peak_kib"], (small, large)
    assert growth_large <= growth_small + 24 * 1024, (growth_small, growth_large)
