"""The user's SQL exactly as written: trailing comments and semicolons, a literal ``%``, parameters.

The query is embedded inside ``(...)`` by every statement the export sends (the ``LIMIT 0``
describe, ``COPY`` for CSV, ``row_to_json`` for JSON Lines, the Parquet projection), so each case
runs in every format against the real Postgres and S3 endpoint and reads the object back.
"""

from __future__ import annotations

import csv
import io
import json
import threading
import time
import uuid
from typing import Any

import pyarrow.parquet as pq
import pytest

from airflow_s3stream.operators import PostgresToS3StreamOperator

FORMATS = ["csv", "jsonl", "parquet"]


def export_rows(bucket: str, s3_client: Any, sql: str, file_format: str, **kwargs: Any) -> list[dict[str, Any]]:
    """Export ``sql`` through the operator and return the rows read back from S3 (values as text)."""
    op = PostgresToS3StreamOperator(
        task_id="export", sql=sql, s3_bucket=bucket, s3_key="q/out", file_format=file_format, **kwargs
    )
    result = op.execute({})
    body = s3_client.get_object(Bucket=bucket, Key=result["files"][0]["key"])["Body"].read()
    if file_format == "csv":
        return list(csv.DictReader(io.StringIO(body.decode())))
    if file_format == "jsonl":
        return [{k: str(v) for k, v in json.loads(line).items()} for line in body.decode().splitlines()]
    return [{k: str(v) for k, v in row.items()} for row in pq.read_table(io.BytesIO(body)).to_pylist()]


@pytest.mark.parametrize("file_format", FORMATS)
@pytest.mark.parametrize(
    "sql",
    [
        "SELECT g AS n, 'a' AS s FROM generate_series(1, 2) g\n-- two rows, ordered by n",
        "SELECT g AS n, 'a' AS s FROM generate_series(1, 2) g; -- done",
        "SELECT g AS n, 'a' AS s FROM generate_series(1, 2) g /* block */ ;\n\n",
    ],
    ids=["line-comment", "semicolon-then-comment", "block-comment"],
)
def test_a_trailing_comment_does_not_swallow_the_statement(
    bucket: str, s3_client: Any, sql: str, file_format: str
) -> None:
    rows = export_rows(bucket, s3_client, sql, file_format)
    assert rows == [{"n": "1", "s": "a"}, {"n": "2", "s": "a"}]


@pytest.mark.parametrize("file_format", FORMATS)
def test_a_semicolon_inside_the_last_literal_is_kept(bucket: str, s3_client: Any, file_format: str) -> None:
    rows = export_rows(bucket, s3_client, "SELECT ';' AS s, 'x -- y' AS t;", file_format)
    assert rows == [{"s": ";", "t": "x -- y"}]


PERCENT_ROWS = [{"x": "a%b", "50%": "1"}, {"x": "a%b", "50%": "2"}]


@pytest.mark.parametrize("file_format", FORMATS)
@pytest.mark.parametrize("parameters", [None, {}, [], ()], ids=["none", "empty-dict", "empty-list", "empty-tuple"])
def test_a_literal_percent_means_the_same_with_no_or_empty_parameters(
    bucket: str, s3_client: Any, file_format: str, parameters: Any
) -> None:
    sql = "SELECT 'a%b' AS x, g AS \"50%\" FROM generate_series(1, 2) g WHERE 'x%' LIKE 'x%'"
    assert export_rows(bucket, s3_client, sql, file_format, parameters=parameters) == PERCENT_ROWS


@pytest.mark.parametrize("file_format", FORMATS)
def test_with_parameters_a_literal_percent_is_doubled_as_psycopg_requires(
    bucket: str, s3_client: Any, file_format: str
) -> None:
    sql = "SELECT 'a%%b' AS x, g AS \"50%%\" FROM generate_series(1, %(n)s) g WHERE 'x%%' LIKE 'x%%'"
    assert export_rows(bucket, s3_client, sql, file_format, parameters={"n": 2}) == PERCENT_ROWS


def test_parameters_are_merged_into_the_statement_text_the_server_sees(
    bucket: str, s3_client: Any, pg_uri: str
) -> None:
    """What the docs promise: client-side binding, so values show in ``pg_stat_activity``."""
    import psycopg

    value = f"visible-{uuid.uuid4().hex}"
    sql = "SELECT %(value)s AS v, pg_sleep(%(seconds)s) IS NULL AS slept"
    seen: list[str] = []

    def export() -> None:
        export_rows(bucket, s3_client, sql, "csv", parameters={"value": value, "seconds": 1.5})

    worker = threading.Thread(target=export)
    worker.start()
    with psycopg.connect(pg_uri, autocommit=True) as observer:
        deadline = time.monotonic() + 30
        while not seen and worker.is_alive() and time.monotonic() < deadline:
            seen += [
                row[0]
                for row in observer.execute(
                    "SELECT query FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND query LIKE 'COPY%%'"
                    " AND query LIKE %s",
                    (f"%{value}%",),
                )
            ]
            time.sleep(0.05)
    worker.join(60)
    assert not worker.is_alive()
    assert len(seen) == 1 and f"'{value}'" in seen[0]  # quoted by psycopg, inside the COPY statement
    assert "%(value)s" not in seen[0]
