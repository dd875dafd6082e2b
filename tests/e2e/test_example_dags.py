"""Every example DAG parses, and runs through ``dag.test()`` against real Postgres and S3.

The assertions are on what each DAG leaves in S3 (objects, reports, manifests), read back over
HTTP from the session's endpoint, not on task return values alone.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tests.support.bags import make_bag, zip_dir

pytestmark = pytest.mark.e2e

EXPECTED_DAG_IDS = {
    "s3stream_verify_archive",
    "s3stream_verify_prefix",
    "s3stream_export_partitioned",
    "s3stream_upload",
    "s3stream_postgres_to_s3_daily",
    "s3stream_package_bag",
}


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


def test_prefix_fanout_verifies_each_archive_in_its_own_mapped_task_and_names_the_invalid_one(
    example_dags: dict[str, Any], s3_client: Any, bucket: str, tmp_path: Path
) -> None:
    for name in ("good1", "good2"):
        s3_client.put_object(Bucket=bucket, Key=f"in/{name}.zip", Body=_make_zipped_bag(tmp_path, name, {"f": b"1"}))
    bad = _make_zipped_bag(tmp_path, "bad", {"f.txt": b"original"}, corrupt="f.txt")
    s3_client.put_object(Bucket=bucket, Key="in/sub/bad.zip", Body=bad)
    s3_client.put_object(Bucket=bucket, Key="in/readme.txt", Body=b"not an archive")
    s3_client.put_object(Bucket=bucket, Key="elsewhere/other.zip", Body=b"outside the prefix")

    state, tasks = _run(
        example_dags["s3stream_verify_prefix"],
        run_conf={"bucket": bucket, "prefix": "in/", "suffix": ".zip", "mode": "auto"},
    )

    assert state == "failed"
    assert tasks == {
        "list_archives": "success",
        "verify[0]": "success",
        "verify[1]": "success",
        "verify[2]": "success",
        "summarize": "failed",
    }
    summary = json.loads(s3_client.get_object(Bucket=bucket, Key="in_verification-summary.json")["Body"].read())
    assert summary["archives"] == 3
    assert summary["invalid"] == [f"s3://{bucket}/in/sub/bad.zip"]
    assert sorted(report["valid"] for report in summary["reports"]) == [False, True, True]


def _orders_table(pg_conn: Any, rows: int) -> str:
    """A table of ``rows`` orders with gaps in the key (id = 3, 6, 9, ...); returns its qualified name."""
    schema = pg_conn.execute("SELECT current_schema()").fetchone()[0]
    pg_conn.execute("CREATE TABLE orders (id bigint PRIMARY KEY, amount numeric(10, 2), note text)")
    pg_conn.execute("INSERT INTO orders SELECT g * 3, g / 100.0, 'n' || g FROM generate_series(1, %s) AS g", (rows,))
    return f"{schema}.orders"


def _parquet_ids(s3_client: Any, bucket: str, key: str) -> list[int]:
    import pyarrow.parquet as pq

    body = s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()
    return [int(v) for v in pq.read_table(io.BytesIO(body)).column("id").to_pylist()]


def test_partitioned_export_covers_every_row_once_and_a_rerun_replaces_stale_parts(
    example_dags: dict[str, Any], s3_client: Any, bucket: str, pg_conn: Any
) -> None:
    table = _orders_table(pg_conn, 10_000)
    conf = {"table": table, "key_column": "id", "partitions": 4, "bucket": bucket, "prefix": "exp"}

    state, tasks = _run(example_dags["s3stream_export_partitioned"], run_conf=conf)

    assert state == "success", tasks
    assert sorted(k for k in tasks if k.startswith("export_range")) == [f"export_range[{i}]" for i in range(4)]
    base = f"exp/{table}/"
    keys = sorted(obj["Key"] for obj in s3_client.list_objects_v2(Bucket=bucket, Prefix=base)["Contents"])
    assert keys == [base + "_manifest.json"] + [f"{base}range-{i:05d}.parquet" for i in range(4)]
    manifest = json.loads(s3_client.get_object(Bucket=bucket, Key=base + "_manifest.json")["Body"].read())
    assert manifest["rows"] == 10_000
    assert sorted(f["key"] for f in manifest["files"]) == keys[1:]
    ids = [_parquet_ids(s3_client, bucket, key) for key in keys[1:]]
    assert sorted(i for part in ids for i in part) == list(range(3, 30_001, 3))  # every row exactly once
    assert all(part and max(part) < min(following) for part, following in itertools.pairwise(ids))

    state, _ = _run(example_dags["s3stream_export_partitioned"], run_conf={**conf, "partitions": 2})

    assert state == "success"
    keys = sorted(obj["Key"] for obj in s3_client.list_objects_v2(Bucket=bucket, Prefix=base)["Contents"])
    assert keys == [base + "_manifest.json", f"{base}range-00000.parquet", f"{base}range-00001.parquet"]
    manifest = json.loads(s3_client.get_object(Bucket=bucket, Key=base + "_manifest.json")["Body"].read())
    assert manifest["rows"] == 10_000


def _prefix_snapshot(s3_client: Any, bucket: str, base: str) -> tuple[dict[str, str], bytes]:
    listed = s3_client.list_objects_v2(Bucket=bucket, Prefix=base).get("Contents", [])
    manifest = s3_client.get_object(Bucket=bucket, Key=base + "_manifest.json")["Body"].read()
    return {o["Key"]: o["ETag"].strip('"') for o in listed}, manifest


def test_partitioned_export_failed_partition_keeps_the_previous_export_then_all_publish_at_once(
    example_dags: dict[str, Any], s3_client: Any, bucket: str, pg_conn: Any
) -> None:
    table = _orders_table(pg_conn, 10_000)
    view = table + "_v"  # the DAG exports a view, so a re-run can be made to fail in one partition only
    pg_conn.execute(f"CREATE VIEW {view} AS SELECT id, amount, note, 1 AS ok FROM {table}")
    conf = {"table": view, "key_column": "id", "partitions": 4, "bucket": bucket, "prefix": "exp"}
    base = f"exp/{view}/"
    dag = example_dags["s3stream_export_partitioned"]
    state, tasks = _run(dag, run_conf=conf)
    assert state == "success", tasks
    before = _prefix_snapshot(s3_client, bucket, base)

    # new data everywhere, and a division by zero on rows of partition 2 (ids 15003 ... 22500) only
    pg_conn.execute(f"UPDATE {table} SET note = note || '-v2'")
    pg_conn.execute(
        f"CREATE OR REPLACE VIEW {view} AS SELECT id, amount, note, "
        f"1 / (CASE WHEN id BETWEEN 20001 AND 20100 THEN 0 ELSE 1 END) AS ok FROM {table}"
    )
    state, tasks = _run(dag, run_conf=conf)

    assert state == "failed"
    assert tasks["export_range[2]"] == "failed" and tasks["commit"] == "upstream_failed", tasks
    assert [tasks[f"export_range[{i}]"] for i in (0, 1, 3)] == ["success"] * 3
    assert tasks["abort_staged"] == "success"
    assert _prefix_snapshot(s3_client, bucket, base) == before  # same keys, same ETags, same manifest
    assert s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []

    pg_conn.execute(f"CREATE OR REPLACE VIEW {view} AS SELECT id, amount, note, 1 AS ok FROM {table}")
    state, tasks = _run(dag, run_conf={**conf, "partitions": 3})

    assert state == "success", tasks
    etags, raw = _prefix_snapshot(s3_client, bucket, base)
    manifest = json.loads(raw)
    assert manifest["version"] == 1 and manifest["rows"] == 10_000 and manifest["format"] == "parquet"
    assert {f["key"]: f["etag"] for f in manifest["files"]} == {
        k: v for k, v in etags.items() if k != base + "_manifest.json"
    }
    assert sorted(etags) == [base + "_manifest.json"] + [f"{base}range-{i:05d}.parquet" for i in range(3)]
    assert s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_airflow_dags_test_cli_runs_the_fanout_dag_with_conf(
    airflow_db: str, s3_client: Any, bucket: str, tmp_path: Path
) -> None:
    """``airflow dags test <dag_id> -c <conf>``, the command the DAG docs give, in a fresh process."""
    import subprocess
    import sys

    from tests.e2e.conftest import DAGS_EXAMPLES

    s3_client.put_object(Bucket=bucket, Key="cli/a.zip", Body=_make_zipped_bag(tmp_path, "a", {"f": b"1"}))
    conf = {"bucket": bucket, "prefix": "cli/", "suffix": ".zip", "mode": "bagit"}
    proc = subprocess.run(
        [sys.executable, "-m", "airflow", "dags", "test", "s3stream_verify_prefix", "-c", json.dumps(conf)],
        env={**os.environ, "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_EXAMPLES)},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )

    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads(s3_client.get_object(Bucket=bucket, Key="cli_verification-summary.json")["Body"].read())
    assert (summary["archives"], summary["invalid"]) == (1, [])
    assert summary["reports"][0]["mode"] == "bagit"


def test_upload_dag_uploads_in_parts_and_records_the_xcom_result_in_a_sidecar(
    example_dags: dict[str, Any], s3_client: Any, bucket: str, tmp_path: Path
) -> None:
    source = tmp_path / "big.bin"
    data = os.urandom(20 * 1024 * 1024 + 12345)  # two 16 MiB parts, the second one short
    source.write_bytes(data)

    state, tasks = _run(
        example_dags["s3stream_upload"],
        run_conf={"source": str(source), "bucket": bucket, "key": "up/big.bin"},
    )

    assert (state, tasks) == ("success", {"upload": "success", "record_upload": "success"})
    assert s3_client.get_object(Bucket=bucket, Key="up/big.bin")["Body"].read() == data
    sidecar = json.loads(s3_client.get_object(Bucket=bucket, Key="up/big.bin.upload.json")["Body"].read())
    assert sidecar["size"] == len(data)
    assert sidecar["parts"] == 2
    assert sidecar["resumed_parts"] == 0
    assert sidecar["checksum_algorithm"] == "MD5"  # auto on a store that checks no CRC32C (moto)
    assert sidecar["checksum"]
    assert s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_upload_dag_with_a_missing_source_fails_and_writes_nothing(
    example_dags: dict[str, Any], s3_client: Any, bucket: str, tmp_path: Path
) -> None:
    state, tasks = _run(
        example_dags["s3stream_upload"],
        run_conf={"source": str(tmp_path / "nope.bin"), "bucket": bucket, "key": "up/nope.bin"},
    )

    assert state == "failed"
    assert tasks == {"upload": "failed", "record_upload": "upstream_failed"}
    assert s3_client.list_objects_v2(Bucket=bucket).get("KeyCount") == 0
    assert s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_daily_export_dag_exports_exactly_its_interval_and_a_rerun_overwrites_the_same_keys(
    airflow_db: str, s3_client: Any, bucket: str, pg_conn: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The daily DAG reads its bucket and table from the environment when parsed: parse it here."""
    import datetime as dt

    import pyarrow.parquet as pq
    from airflow.dag_processing.dagbag import DagBag

    from tests.e2e.conftest import DAGS_EXAMPLES

    schema = pg_conn.execute("SELECT current_schema()").fetchone()[0]
    pg_conn.execute(
        """CREATE TABLE demo_orders AS
        SELECT g::int8 AS id, 'c' || g AS customer, (g * 1.25)::numeric(12, 2) AS amount, 'paid' AS status,
               timestamptz '2024-01-01 00:00:00+00' + g * interval '1 hour' AS created_at, 'note ' || g AS note
        FROM generate_series(0, 71) AS g"""  # 24 rows on each of 2024-01-01, -02, -03
    )
    monkeypatch.setenv("S3STREAM_BUCKET", bucket)
    monkeypatch.setenv("S3STREAM_ORDERS_TABLE", f"{schema}.demo_orders")
    bag = DagBag(dag_folder=str(DAGS_EXAMPLES / "postgres_to_s3_daily.py"))
    dag = bag.dags["s3stream_postgres_to_s3_daily"]
    # Parsed with this test's bucket, the DAG's asset has another URI than when the session parsed
    # the examples with the default bucket; a deployment has one bucket, so retire the earlier one.
    _forget_asset("s3stream_orders_csv")

    state, tasks = _run(dag, logical_date=dt.datetime(2024, 1, 2, tzinfo=dt.timezone.utc))

    assert (state, tasks) == (
        "success",
        {"export_csv": "success", "export_parquet": "success", "warn_if_empty": "success"},
    )
    first = {o["Key"]: o["LastModified"] for o in s3_client.list_objects_v2(Bucket=bucket)["Contents"]}
    days = {key.split("/")[2] for key in first}
    assert len(days) == 1
    parquet_key = next(k for k in first if k.endswith(".parquet"))
    body = s3_client.get_object(Bucket=bucket, Key=parquet_key)["Body"].read()
    ids = pq.read_table(io.BytesIO(body)).column("id").to_pylist()
    # Exactly one whole day of rows, the run's data interval, stored under that interval's day.
    # (A manual run for 2024-01-02 may get the interval ending then, [01-01, 01-02): the keys must
    # follow data_interval_start, not {{ ds }}.)
    first_id = {"2024-01-01": 0, "2024-01-02": 24}[days.pop()]
    assert ids == list(range(first_id, first_id + 24))

    state, _ = _run(dag, logical_date=dt.datetime(2024, 1, 2, tzinfo=dt.timezone.utc))

    assert state == "success"
    second = {o["Key"] for o in s3_client.list_objects_v2(Bucket=bucket)["Contents"]}
    assert second == set(first)
    events = _asset_events("s3stream_orders_csv")
    assert len(events) == 2  # one per successful run, each naming the interval it published
    csv_prefix = next(k for k in first if k.endswith(".csv.gz")).rsplit("/", 1)[0]
    assert events[-1] == {
        "bucket": bucket,
        "key": csv_prefix,
        "manifest_key": csv_prefix + "/_manifest.json",
        "rows": 24,
        "bytes": sum(
            o["Size"] for o in s3_client.list_objects_v2(Bucket=bucket, Prefix=csv_prefix + "/part-")["Contents"]
        ),
    }


def _forget_asset(asset_name: str) -> None:
    """Drop the active registration of ``asset_name`` (and its events) from the session's metadata DB."""
    from airflow.models.asset import AssetActive, AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import delete, select

    with create_session() as session:
        ids = select(AssetModel.id).where(AssetModel.name == asset_name)
        session.execute(delete(AssetEvent).where(AssetEvent.asset_id.in_(ids)))
        session.execute(delete(AssetActive).where(AssetActive.name == asset_name))


def _asset_events(asset_name: str) -> list[dict[str, Any]]:
    """The ``extra`` of every event of the asset named ``asset_name``, oldest first."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.scalars(
            select(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(AssetModel.name == asset_name)
            .order_by(AssetEvent.id)
        ).all()
        return [dict(e.extra) for e in rows]


def test_package_dag_seeds_the_sample_packages_it_verifies_it_and_writes_the_report(
    example_dags: dict[str, Any], s3_client: Any, bucket: str
) -> None:
    state, tasks = _run(example_dags["s3stream_package_bag"], run_conf={"bucket": bucket})

    assert (state, tasks) == ("success", {"seed_sample": "success", "package": "success", "verify": "success"})
    report = json.loads(s3_client.get_object(Bucket=bucket, Key="bags/sample-bag.zip.verification.json")["Body"].read())
    assert report["valid"] is True and report["mode"] == "bagit" and report["payload_files"] == 5
    body = s3_client.get_object(Bucket=bucket, Key="bags/sample-bag.zip")["Body"].read()
    with zipfile.ZipFile(io.BytesIO(body)) as zf:
        info = zf.read("sample-bag/bag-info.txt").decode()
    assert "Source-Organization: Example Archive" in info and "Payload-Oxum: " in info
