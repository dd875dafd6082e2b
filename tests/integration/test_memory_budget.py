"""At the default ``memory_budget`` (128 MiB) a task of ours adds at most 128 MiB to its process.

Each operator runs ``execute({})`` in a fresh child process on data several times larger than its
buffers. The child first imports what the task imports and builds its clients (the idle task
runtime), records its peak RSS (``VmHWM``), runs the operator, and reports the peak again; the
difference is what the task added. The export's formats are covered in ``test_export_memory.py``.
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

MiB = 1024 * 1024
ROOT = Path(__file__).resolve().parents[2]
BUDGET_MIB = 128

CHILD = r"""
import json, sys
import pyarrow.parquet
from airflow_s3stream.hooks.s3 import S3StreamHook
from airflow_s3stream.operators import S3MultipartUploadOperator, S3ToBagItZipOperator, S3ZipVerifyOperator
from tests.support.memory import peak_rss_kib
case, bucket, arg = sys.argv[1:4]
S3StreamHook().get_s3_client().list_buckets()  # clients built and used: the idle task runtime
idle = peak_rss_kib()
if case == "upload":
    result = S3MultipartUploadOperator(task_id="up", source=arg, s3_bucket=bucket, s3_key="big.bin").execute({})
elif case == "package":
    result = S3ToBagItZipOperator(task_id="bag", source_bucket=bucket, source_prefix=arg, s3_bucket=bucket,
                                  s3_key="bags/b.zip", checksums=["sha256"]).execute({})
else:
    result = S3ZipVerifyOperator(task_id="verify", s3_bucket=bucket, s3_key=arg, mode="zip").execute({})
print(json.dumps({"added_mib": (peak_rss_kib() - idle) / 1024, "result": result}, default=str))
"""


def added_by(case: str, bucket: str, arg: str) -> tuple[float, dict[str, Any]]:
    """(MiB the operator added over the idle task runtime, its XCom result), in a fresh child."""
    out = subprocess.run(
        [sys.executable, "-c", CHILD, case, bucket, arg],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    measured = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"\n{case}: added {measured['added_mib']:.0f} MiB")
    return float(measured["added_mib"]), measured["result"]


@pytest.mark.slow
def test_upload_of_a_384_mib_file_adds_at_most_the_budget(tmp_path: Path, bucket: str) -> None:
    path = tmp_path / "big.bin"
    with open(path, "wb") as f:
        for _ in range(384):
            f.write(os.urandom(MiB))

    added, result = added_by("upload", bucket, str(path))

    assert result["size"] == 384 * MiB
    assert added <= BUDGET_MIB


@pytest.mark.slow
def test_packaging_160_mb_into_a_bag_adds_at_most_the_budget(bucket: str, s3_client: Any) -> None:
    for i in range(40):
        s3_client.put_object(Bucket=bucket, Key=f"src/f{i:03d}.bin", Body=os.urandom(4 * MiB))

    added, result = added_by("package", bucket, "src/")

    assert result["files"] == 40 and result["payload_bytes"] == 160 * MiB
    assert added <= BUDGET_MIB


@pytest.mark.slow
def test_verifying_a_384_mib_archive_adds_at_most_the_budget(tmp_path: Path, bucket: str, s3_client: Any) -> None:
    path = tmp_path / "a.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for i in range(48):
            zf.writestr(f"m{i}.bin", os.urandom(8 * MiB))
    s3_client.upload_file(str(path), bucket, "a.zip")

    added, result = added_by("verify", bucket, "a.zip")

    assert result["valid"] and result["members_checked"] == 48
    assert added <= BUDGET_MIB
