"""What the operators log, read from their real runs: whole ``s3://bucket/prefix`` paths, plurals
right, and a small upload says it went in one PUT rather than "0 parts (0 reused)"."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from airflow_s3stream.operators import PostgresToS3StreamOperator, S3MultipartUploadOperator


def _logged(capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> str:
    captured = capsys.readouterr()
    return captured.out + captured.err + caplog.text


def test_a_small_upload_logs_one_put_not_zero_parts(
    bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    source = tmp_path / "small.bin"
    source.write_bytes(b"x" * 4_401)
    caplog.set_level(logging.INFO)
    upload = S3MultipartUploadOperator(task_id="upload", source=str(source), s3_bucket=bucket, s3_key="in/small.bin")
    result = upload.execute({})
    assert result["parts"] == 0  # the XCom keeps its keys and values: a single PUT has 0 parts
    logged = _logged(capsys, caplog)
    assert f"uploaded s3://{bucket}/in/small.bin: 4,401 bytes in one PUT" in logged
    assert "0 parts" not in logged


def test_an_export_logs_the_whole_path_it_committed_under(
    bucket: str, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    export = PostgresToS3StreamOperator(
        task_id="export",
        sql="SELECT g, md5(g::text) AS h FROM generate_series(1, 1000) g",
        s3_bucket=bucket,
        s3_key="exports/orders/2024-01-01",
        max_rows_per_file=400,
        write_manifest=True,
    )
    export.execute({})
    logged = _logged(capsys, caplog)
    assert f"committed 3 files under s3://{bucket}/exports/orders/2024-01-01/ in " in logged
    assert f"s3://{bucket}/exports/orders/2024-01-01/part-00002.csv: 200 rows, " in logged
    assert "file(s)" not in logged and "1 parts" not in logged
