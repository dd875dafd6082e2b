"""The provider view's pages: pure rendering of our operators' real result dicts to escaped HTML."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi import HTTPException

from airflow_s3stream.archive.report import Finding, Findings, VerificationReport
from airflow_s3stream.s3.multipart.result import UploadResult
from airflow_s3stream.ui.app import parse_map_index, previewable_keys
from airflow_s3stream.ui.plugin import EXTERNAL_VIEWS, TASK_VIEW_HREF
from airflow_s3stream.ui.views import RunRow, TaskRef, render_result, render_runs, result_kind, verdict_of

REF = TaskRef("dag_a", "manual__2026-12-05T10:00:00+00:00", "verify", -1)


def _text(html: str) -> str:
    """The page's visible text, tags removed (entities kept)."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def _invalid_report() -> dict[str, object]:
    report = VerificationReport(
        source="s3://b/bag.zip",
        mode="bagit",
        members_total=5,
        members_checked=5,
        payload_files=3,
        payload_bytes=3000,
        algorithms=["sha256"],
        errors=Findings([Finding("bag/data/b.txt", "sha256 mismatch (expected 00aa, got 11bb)")]),
        requests=3,
        bytes_read=4096,
    )
    return report.to_dict()


def test_a_tampered_bag_names_the_member_and_its_reason_with_counts_bytes_and_requests() -> None:
    html = render_result(_invalid_report(), operator="S3ZipVerifyOperator", ref=REF)
    text = _text(html)
    assert "INVALID: 1 error" in text
    assert "bag/data/b.txt sha256 mismatch (expected 00aa, got 11bb)" in text
    assert "members checked 5" in text
    assert "bytes read 4,096" in text
    assert "requests 3" in text


def test_a_valid_report_says_valid_and_lists_no_errors() -> None:
    report = VerificationReport(source="s3://b/ok.zip", mode="zip", members_total=2, members_checked=2)
    html = render_result(report.to_dict(), operator="S3ZipVerifyOperator")
    assert "VALID" in _text(html)
    assert "INVALID" not in _text(html)
    assert verdict_of("S3ZipVerifyOperator", report.to_dict()) == "valid"
    assert verdict_of("S3ZipVerifyOperator", _invalid_report()) == "invalid (1 error)"


def test_member_names_and_reasons_are_escaped_never_markup() -> None:
    result = _invalid_report()
    result["errors"] = [{"member": "<script>alert(1)</script>", "reason": "x & 'y'"}]
    html = render_result(result, operator="S3ZipVerifyOperator")
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "x &amp; &#x27;y&#x27;" in html


def test_an_export_lists_the_manifests_files_with_rows_bytes_and_checksums_and_links_previews() -> None:
    result = {
        "bucket": "exports",
        "files": [{"key": "day/part-00000.csv.gz", "rows": 10, "bytes": 200}],
        "rows": 10,
        "bytes": 200,
        "seconds": 0.5,
        "mb_per_s": 0.0,
        "manifest_key": "day/_manifest.json",
        "commit_ms": 3.0,
    }
    manifest = {
        "version": 1,
        "format": "csv",
        "compression": "gzip",
        "files": [
            {
                "key": "day/part-00000.csv.gz",
                "rows": 10,
                "bytes": 200,
                "etag": '"abc-1"',
                "checksum": {"algorithm": "CRC32C", "type": "COMPOSITE", "value": "AAAA-1"},
            }
        ],
        "rows": 10,
    }
    html = render_result(result, operator="PostgresToS3StreamOperator", ref=REF, manifest=manifest)
    text = _text(html)
    assert "day/part-00000.csv.gz 10 200 CRC32C COMPOSITE AAAA-1" in text
    assert "day/_manifest.json" in text
    assert "s3://exports/day/" in text  # where it wrote: the manifest's folder
    assert "preview?dag_id=dag_a&amp;run_id=manual__2026-12-05T10%3A00%3A00%2B00%3A00" in html
    assert previewable_keys(result, manifest) == ["day/part-00000.csv.gz"]


def test_an_export_whose_manifest_cannot_be_read_says_why_and_still_lists_the_xcom_files() -> None:
    result = {"bucket": "b", "files": [{"key": "k.csv", "rows": 1, "bytes": 5}], "rows": 1, "manifest_key": "m.json"}
    html = render_result(result, operator="PostgresToS3StreamOperator", manifest_error="manifest s3://b/m.json: gone")
    assert "manifest s3://b/m.json: gone" in _text(html)
    assert "k.csv 1 5" in _text(html)


def test_an_upload_shows_parts_sent_and_reused_and_what_the_store_checked() -> None:
    result = UploadResult(
        bucket="b",
        key="big.bin",
        size=20_000_000,
        parts=4,
        part_size=5_242_880,
        etag='"e-4"',
        checksum_algorithm="CRC32C",
        checksum_type="COMPOSITE",
        checksum="AAAA-4",
        seconds=2.0,
        resumed_parts=3,
        uploaded_parts=1,
        verified=["size", "checksum"],
        checked_by_store=["CRC32C"],
        store_checksum="AAAA-4",
    ).to_dict()
    text = _text(render_result(result, operator="S3MultipartUploadOperator"))
    assert "stored as 4 parts" in text
    assert "parts sent by this try 1" in text
    assert "parts reused from an earlier try 3" in text
    assert "checked by the store on receipt CRC32C" in text
    assert "compared by us after completion size, checksum" in text


def test_a_single_put_upload_says_one_put_not_zero_parts() -> None:
    result = UploadResult("b", "small", 4401, 0, 0, '"x"', "MD5", "FULL_OBJECT", "x", 0.1).to_dict()
    summary = _text(render_result(result, operator="S3MultipartUploadOperator")).split("Everything the task")[0]
    assert "stored as one PUT" in summary
    assert "0 parts" not in summary


def test_a_load_shows_rows_per_file_and_the_mode() -> None:
    result = {
        "table": "public.orders",
        "files": [{"key": "a.csv", "rows": 3, "bytes": 30}, {"key": "b.csv", "rows": 4, "bytes": 40}],
        "rows": 7,
        "bytes": 70,
        "seconds": 0.1,
        "mb_per_s": 0.0,
        "mode": "replace",
        "deleted_rows": 2,
    }
    text = _text(render_result(result, operator="S3ToPostgresStreamOperator"))
    assert "mode replace" in text
    assert "a.csv 3 30" in text and "b.csv 4 40" in text


def test_a_package_result_shows_the_bag_and_whether_it_verifies() -> None:
    result = {
        "bucket": "b",
        "key": "bag.zip",
        "bag_name": "bag",
        "files": 2,
        "payload_bytes": 10,
        "zip_bytes": 400,
        "oxum": "10.2",
        "manifests": ["sha256"],
        "verification": {"valid": False, "errors": ["bag/data/x: sha256 mismatch"]},
    }
    text = _text(render_result(result, operator="S3ToBagItZipOperator"))
    assert "Payload-Oxum 10.2" in text
    assert "the bag does NOT verify" in text
    assert "bag/data/x: sha256 mismatch" in text


def test_unknown_and_odd_shapes_render_as_a_key_value_table_never_an_exception() -> None:
    for operator, value in [
        ("S3ZipVerifyOperator", {"valid": "yes", "errors": "not a list", "error_count": "many"}),
        ("PostgresToS3StreamOperator", {"files": [1, None, {"key": 5}], "manifest_key": None}),
        ("S3MultipartUploadOperator", ["a", "list"]),
        ("SomeOtherOperator", {"answer": 42}),
        (None, "just a string"),
    ]:
        html = render_result(value, operator=operator)
        assert "Everything the task returned" in html
    assert "answer" in render_result({"answer": 42}, operator="SomeOtherOperator")


def test_the_kind_is_found_from_the_shape_when_the_operator_is_not_ours() -> None:
    assert result_kind("MyVerify", _invalid_report()) == "verification"
    assert result_kind(None, {"table": "t", "mode": "append", "files": []}) == "load"
    assert result_kind(None, {"whatever": 1}) == "unknown"


def test_the_runs_list_links_each_task_and_escapes_its_ids() -> None:
    row = RunRow(TaskRef("d<1>", "r&1", "t", 2), "S3ZipVerifyOperator", "failed", None, "invalid (3 errors)")
    html = render_runs([row], dag_id="d<1>", dag_ids=["d<1>"])
    assert "d&lt;1&gt;" in html and "<1>" not in html
    assert "ti?dag_id=d%3C1%3E&amp;run_id=r%261&amp;task_id=t&amp;map_index=2" in html
    assert "invalid (3 errors)" in html


def test_the_task_tab_href_carries_the_placeholders_the_ui_fills() -> None:
    for placeholder in ("{DAG_ID}", "{RUN_ID}", "{TASK_ID}", "{MAP_INDEX}"):
        assert placeholder in TASK_VIEW_HREF
    destinations = {v["destination"] for v in EXTERNAL_VIEWS}
    assert destinations == {"task_instance", "nav"}


def test_an_unmapped_task_whose_map_index_the_ui_leaves_unfilled_is_map_index_minus_one() -> None:
    assert parse_map_index("{MAP_INDEX}") == -1
    assert parse_map_index("") == -1
    assert parse_map_index("3") == 3
    with pytest.raises(HTTPException, match="map_index must be an integer"):
        parse_map_index("x")


def test_a_job_commit_lists_the_files_it_published_and_the_stale_ones_it_deleted() -> None:
    from airflow_s3stream.export.job import JobCommit

    files = [
        {"key": "job/part-00000.parquet", "rows": 5, "bytes": 900},
        {"key": "job/part-00001.parquet", "rows": 6, "bytes": 950},
    ]
    result = JobCommit("b", "job/_manifest.json", files, 11, 1850, deleted_stale=["job/part-00002.parquet"]).to_dict()
    text = _text(render_result(result, operator="S3StreamCommitOperator", ref=REF))
    assert "job/part-00000.parquet 5 900" in text and "job/part-00001.parquet 6 950" in text
    assert "stale files deleted" in text and "job/part-00002.parquet" in text
    assert verdict_of("S3StreamCommitOperator", result) == "11 rows"


def test_a_staged_export_says_the_jobs_commit_publishes_it_and_reads_no_manifest() -> None:
    result: dict[str, Any] = {
        "bucket": "b",
        "files": [{"key": "job/part-00000.csv", "rows": 2, "bytes": 9, "staged": {}}],
    }
    result |= {"rows": 2, "bytes": 9, "manifest_key": None, "staged": True, "description": {"format": "csv"}}
    text = _text(render_result(result, operator="PostgresToS3StreamOperator", ref=REF))
    assert "staged: 2 rows, published by the job&#x27;s commit" in text
    assert "Manifest" not in text.split("Everything the task")[0]
