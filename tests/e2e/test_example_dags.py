"""Every example DAG parses, and runs through ``dag.test()`` against real Postgres and S3.

The assertions are on what each DAG leaves in S3 (objects, reports, manifests), read back over
HTTP from the session's endpoint, not on task return values alone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.bags import make_bag, zip_dir

pytestmark = pytest.mark.e2e

EXPECTED_DAG_IDS = {"s3stream_verify_archive"}


def _make_zipped_bag(tmp_path: Path, name: str, files: dict[str, bytes], corrupt: str | None = None) -> bytes:
    """A bag made by bagit-python, zipped under its top-level directory ``name``."""
    bag_dir = make_bag(tmp_path, files, checksums=("sha256",), name=name)
    if corrupt is not None:  # change a payload file after the manifest was written
        (bag_dir / "data" / corrupt).write_bytes(b"tampered")
    return zip_dir(bag_dir)


def _run(dag: Any, **kwargs: Any) -> tuple[str, dict[str, str]]:
    """Run ``dag`` with ``dag.test()``; return the run state and the state of every task."""
    run = dag.test(**kwargs)
    states = {
        ti.task_id + ("" if ti.map_index < 0 else f"[{ti.map_index}]"): ti.state for ti in run.get_task_instances()
    }
    return str(run.state), {k: str(v) for k, v in states.items()}


def test_every_example_dag_parses_with_documentation(example_dags: dict[str, Any]) -> None:
    assert set(example_dags) >= EXPECTED_DAG_IDS
    for dag_id, dag in example_dags.items():
        assert dag.doc_md and len(dag.doc_md) > 200, f"{dag_id} is not documented at the top"


def test_verify_dag_form_has_typed_params_with_enums_and_descriptions(example_dags: dict[str, Any]) -> None:
    params = example_dags["s3stream_verify_archive"].params
    schema = {name: params.get_param(name).schema for name in params}
    assert schema["mode"]["enum"] == ["auto", "zip", "bagit"]
    assert schema["write_report"]["type"] == "boolean"
    assert schema["bucket"]["type"] == schema["key"]["type"] == "string"
    assert schema["extract_member"]["type"] == ["null", "string"]
    assert all(params.get_param(name).description for name in params)
    assert example_dags["s3stream_verify_archive"].schedule is None  # UI-triggered only


def test_verify_dag_writes_the_report_and_extracts_the_asked_member(
    example_dags: dict[str, Any], s3_client: Any, bucket: str, tmp_path: Path
) -> None:
    payload = {"hello.txt": b"hello, archive\n", "sub/blob.bin": bytes(range(256)) * 4000}
    s3_client.put_object(Bucket=bucket, Key="bags/b1.zip", Body=_make_zipped_bag(tmp_path, "b1", payload))

    state, tasks = _run(
        example_dags["s3stream_verify_archive"],
        run_conf={
            "bucket": bucket,
            "key": "bags/b1.zip",
            "mode": "bagit",
            "write_report": True,
            "extract_member": "b1/data/sub/blob.bin",
        },
    )

    assert (state, tasks) == ("success", {"verify": "success", "extract_member": "success"})
    report = json.loads(s3_client.get_object(Bucket=bucket, Key="bags/b1.zip.verification.json")["Body"].read())
    assert report["valid"] is True
    assert report["mode"] == "bagit"
    assert report["payload_files"] == 2
    extracted = s3_client.get_object(Bucket=bucket, Key="bags/b1.zip.extracted/b1/data/sub/blob.bin")["Body"].read()
    assert extracted == payload["sub/blob.bin"]


def test_verify_dag_fails_on_a_tampered_bag_and_still_writes_the_report(
    example_dags: dict[str, Any], s3_client: Any, bucket: str, tmp_path: Path
) -> None:
    archive = _make_zipped_bag(tmp_path, "b2", {"a.txt": b"original"}, corrupt="a.txt")
    s3_client.put_object(Bucket=bucket, Key="b2.zip", Body=archive)

    state, tasks = _run(
        example_dags["s3stream_verify_archive"],
        run_conf={"bucket": bucket, "key": "b2.zip", "mode": "auto", "write_report": True, "extract_member": None},
    )

    assert state == "failed"
    assert tasks["verify"] == "failed"
    assert tasks["extract_member"] == "upstream_failed"
    report = json.loads(s3_client.get_object(Bucket=bucket, Key="b2.zip.verification.json")["Body"].read())
    assert report["valid"] is False
    assert any("a.txt" in str(error) for error in report["errors"])


def test_verify_dag_without_report_or_member_writes_nothing(
    example_dags: dict[str, Any], s3_client: Any, bucket: str, tmp_path: Path
) -> None:
    s3_client.put_object(Bucket=bucket, Key="plain.zip", Body=_make_zipped_bag(tmp_path, "b3", {"x": b"x"}))

    state, tasks = _run(
        example_dags["s3stream_verify_archive"],
        run_conf={"bucket": bucket, "key": "plain.zip", "mode": "zip", "write_report": False, "extract_member": None},
    )

    assert (state, tasks) == ("success", {"verify": "success", "extract_member": "skipped"})
    keys = [obj["Key"] for obj in s3_client.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert keys == ["plain.zip"]
