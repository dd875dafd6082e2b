"""OpenLineage datasets: naming per the spec, SQL table extraction, and the optional import."""

from __future__ import annotations

import sys
import urllib.parse

import pytest

from airflow_s3stream.operators.lineage import (
    DatasetName,
    export_lineage,
    operator_lineage,
    postgres_tables,
    s3_dataset,
    source_dataset,
    upload_lineage,
)


def test_s3_dataset_is_bucket_namespace_and_key_name() -> None:
    assert s3_dataset("archive", "/bags/b1.zip") == DatasetName("s3://archive", "bags/b1.zip")


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("/data/big.bin", DatasetName("file", "/data/big.bin")),
        ("file:///data/big.bin", DatasetName("file", "/data/big.bin")),
        ("s3://other-bucket/in/x.tar", DatasetName("s3://other-bucket", "in/x.tar")),
        ("https://example.org/files/x.iso", DatasetName("https://example.org", "files/x.iso")),
        (
            "sftp://user:secret@files.example.org:2222/in/x.iso?X-Amz-Signature=abc",
            DatasetName("sftp://files.example.org:2222", "in/x.iso"),
        ),
    ],
)
def test_upload_source_dataset_follows_the_naming_spec(source: str, expected: DatasetName) -> None:
    assert source_dataset(source) == expected


def test_postgres_tables_are_read_from_sql_with_psycopg_placeholders() -> None:
    sql = (
        "SELECT o.id, c.name FROM orders o JOIN sales.customers c ON c.id = o.customer_id "
        "WHERE o.created_at >= %(start)s AND o.created_at < %s"
    )
    assert postgres_tables(sql, host="db.internal", port=None, database="shop") == [
        DatasetName("postgres://db.internal:5432", "shop.public.orders"),
        DatasetName("postgres://db.internal:5432", "shop.sales.customers"),
    ]


def test_unparseable_sql_gives_no_inputs_instead_of_failing() -> None:
    assert postgres_tables("this is not sql ((", host="h", port=5433, database="d") == []


def test_operator_lineage_carries_inputs_outputs_and_the_query() -> None:
    lineage = operator_lineage([DatasetName("postgres://h:5432", "d.public.t")], [s3_dataset("b", "k/")], sql="Q")
    assert [(d.namespace, d.name) for d in lineage.inputs] == [("postgres://h:5432", "d.public.t")]
    assert [(d.namespace, d.name) for d in lineage.outputs] == [("s3://b", "k/")]
    assert lineage.job_facets["sql"].query == "Q"


def test_without_openlineage_installed_lineage_is_none_and_sql_parsing_is_skipped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "airflow.providers.openlineage.extractors", None)
    monkeypatch.setitem(sys.modules, "openlineage_sql", None)
    assert operator_lineage([], [s3_dataset("b", "k")]) is None
    assert postgres_tables("SELECT 1 FROM t", host="h", port=1, database="d") == []


def test_export_lineage_names_the_connections_postgres_server_and_the_s3_prefix(pg_uri: str) -> None:
    lineage = export_lineage("SELECT * FROM public.orders", "postgres_default", "bkt", "exports/2024-01-01/")
    parsed = urllib.parse.urlsplit(pg_uri)
    (source,) = lineage.inputs
    assert source.namespace.startswith("postgres://")
    assert source.namespace.endswith(f":{parsed.port or 5432}")
    assert source.name == f"{parsed.path.lstrip('/') or 'postgres'}.public.orders"
    assert [(d.namespace, d.name) for d in lineage.outputs] == [("s3://bkt", "exports/2024-01-01/")]


def test_upload_lineage_links_the_source_to_the_destination_object() -> None:
    lineage = upload_lineage("/data/scan.tif", "dest", "in/scan.tif")
    assert [(d.namespace, d.name) for d in lineage.inputs] == [("file", "/data/scan.tif")]
    assert [(d.namespace, d.name) for d in lineage.outputs] == [("s3://dest", "in/scan.tif")]


def test_verify_operator_reports_the_archive_and_its_report_object() -> None:
    from airflow_s3stream.operators import S3ZipVerifyOperator

    op = S3ZipVerifyOperator(task_id="v", s3_bucket="arch", s3_key="b.zip", report_key="b.zip.json")
    lineage = op.get_openlineage_facets_on_complete(task_instance=None)
    assert [(d.namespace, d.name) for d in lineage.inputs] == [("s3://arch", "b.zip")]
    assert [(d.namespace, d.name) for d in lineage.outputs] == [("s3://arch", "b.zip.json")]
    assert (
        S3ZipVerifyOperator(task_id="w", s3_bucket="arch", s3_key="b.zip")
        .get_openlineage_facets_on_complete(task_instance=None)
        .outputs
        == []
    )


def test_upload_operator_reports_its_source_and_destination() -> None:
    from airflow_s3stream.operators import S3MultipartUploadOperator

    op = S3MultipartUploadOperator(task_id="u", source="s3://raw/in.bin", s3_bucket="dest", s3_key="out.bin")
    lineage = op.get_openlineage_facets_on_complete(task_instance=None)
    assert [(d.namespace, d.name) for d in lineage.inputs] == [("s3://raw", "in.bin")]
    assert [(d.namespace, d.name) for d in lineage.outputs] == [("s3://dest", "out.bin")]


def test_export_operator_reports_the_tables_its_sql_reads_and_its_s3_key() -> None:
    from airflow_s3stream.operators import PostgresToS3StreamOperator

    op = PostgresToS3StreamOperator(
        task_id="e", sql="SELECT * FROM sales.orders WHERE day = %(day)s", s3_bucket="b", s3_key="exp/orders"
    )
    lineage = op.get_openlineage_facets_on_complete(task_instance=None)
    assert [d.name.split(".", 1)[1] for d in lineage.inputs] == ["sales.orders"]
    assert [(d.namespace, d.name) for d in lineage.outputs] == [("s3://b", "exp/orders")]
    assert lineage.job_facets["sql"].query.startswith("SELECT * FROM sales.orders")
