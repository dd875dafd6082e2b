"""S3ToPostgresStreamOperator round trips: export the torture table, load it back, compare with EXCEPT ALL.

The table with every type the export maps and the awkward values (quotes, delimiters, newlines,
CR, backslashes, unicode, empty string vs NULL, NaN and infinities, empty arrays and bytea) is
exported by ``PostgresToS3StreamOperator`` in every format and compression, loaded into an empty
table of the same shape by ``S3ToPostgresStreamOperator`` over real connections, and the two
tables are compared value by value with ``EXCEPT ALL`` both ways.
"""

from __future__ import annotations

from typing import Any

import pytest

from airflow_s3stream.operators import PostgresToS3StreamOperator, S3ToPostgresStreamOperator
from tests.integration.test_export_roundtrip import ROWS, TABLE_DDL

# json has no equality operator: compare it as jsonb (the value, not its spelling).
COMPARED = (
    "id, i2, i8, f4, f8, num, wide, free, t, vc, ch, flag, d, tm, ts, tstz, iv, u, j::jsonb, jb, arr, tarr, narr, raw"
)
# JSON Lines writes a json column holding the JSON value null and a SQL NULL alike: `null`.
COMPARED_JSONL = COMPARED.replace("j::jsonb", "NULLIF(j::jsonb, 'null'::jsonb)")


@pytest.fixture
def schema(pg_conn: Any) -> str:
    pg_conn.execute(TABLE_DDL)
    pg_conn.execute(ROWS)
    pg_conn.execute("CREATE TABLE loaded (LIKE every_type INCLUDING ALL)")
    return str(pg_conn.execute("SELECT current_schema()").fetchone()[0])


def differences(conn: Any, schema: str, projection: str) -> tuple[int, int]:
    """Rows of the source missing from the loaded table, and loaded rows not in the source."""
    q = "SELECT count(*) FROM (SELECT {p} FROM {s}.{a} EXCEPT ALL SELECT {p} FROM {s}.{b}) AS d"
    missing = conn.execute(q.format(p=projection, s=schema, a="every_type", b="loaded")).fetchone()[0]
    extra = conn.execute(q.format(p=projection, s=schema, a="loaded", b="every_type")).fetchone()[0]
    return int(missing), int(extra)


def export(bucket: str, schema: str, key: str, **kwargs: Any) -> dict[str, Any]:
    op = PostgresToS3StreamOperator(
        task_id="export", sql=f"SELECT * FROM {schema}.every_type ORDER BY id", s3_bucket=bucket, s3_key=key, **kwargs
    )
    return op.execute({})


def load(bucket: str, key: str, table: str, **kwargs: Any) -> dict[str, Any]:
    return S3ToPostgresStreamOperator(task_id="load", s3_bucket=bucket, s3_key=key, table=table, **kwargs).execute({})


@pytest.mark.parametrize("file_format", ["csv", "jsonl", "parquet"])
@pytest.mark.parametrize("compression", [None, "gzip", "zstd"])
def test_export_loads_back_value_for_value(
    pg_conn: Any, schema: str, bucket: str, file_format: str, compression: str | None
) -> None:
    exported = export(bucket, schema, "rt/every_type", file_format=file_format, compression=compression)
    key = exported["files"][0]["key"]
    result = load(bucket, key, f"{schema}.loaded")  # format and compression detected from the key
    assert result["rows"] == 3 and result["files"] == [{"key": key, "rows": 3, "bytes": exported["bytes"]}]
    assert result["mode"] == "append" and result["deleted_rows"] == 0 and result["table"] == f"{schema}.loaded"
    projection = COMPARED_JSONL if file_format == "jsonl" else COMPARED
    assert differences(pg_conn, schema, projection) == (0, 0)
    # the awkward values themselves, so a comparison that matched nothing cannot pass
    t1, t2, t3, raw2 = pg_conn.execute(
        "SELECT (SELECT t FROM loaded WHERE id = 1), (SELECT t FROM loaded WHERE id = 2), "
        "(SELECT t FROM loaded WHERE id = 3), (SELECT raw FROM loaded WHERE id = 2)"
    ).fetchone()
    assert "\n" in t1 and "\r" in t1 and '"' in t1 and t1.endswith("backslash \\ done")
    assert t2 == "" and t3 is None and raw2 == b""


@pytest.mark.parametrize("file_format", ["csv", "parquet"])
def test_split_export_loads_through_its_manifest(pg_conn: Any, schema: str, bucket: str, file_format: str) -> None:
    exported = export(
        bucket, schema, "split/every_type", file_format=file_format, max_rows_per_file=1, write_manifest=True
    )
    assert len(exported["files"]) == 3
    result = load(bucket, exported["manifest_key"], f"{schema}.loaded")
    assert [f["key"] for f in result["files"]] == [f["key"] for f in exported["files"]]
    assert result["rows"] == 3
    assert differences(pg_conn, schema, COMPARED) == (0, 0)
