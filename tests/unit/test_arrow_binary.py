"""Which Parquet columns go to binary COPY: only those whose binary form is exactly the target's."""

from __future__ import annotations

import pyarrow as pa
import pytest

from airflow_s3stream.load.arrow_binary import binary_schema


def schema_for(source: pa.DataType, pg_type: str) -> pa.Schema | None:
    return binary_schema(pa.schema([("c", source)]), ["c"], [pg_type])


@pytest.mark.parametrize(
    ("source", "pg_type", "target"),
    [
        (pa.int32(), "int8", pa.int64()),
        (pa.int16(), "int4", pa.int32()),
        (pa.int64(), "int8", pa.int64()),
        (pa.float32(), "float4", pa.float32()),
        (pa.bool_(), "bool", pa.bool_()),
        (pa.large_string(), "text", pa.large_string()),
        (pa.string(), "varchar", pa.string()),
        (pa.binary(), "bytea", pa.binary()),
        (pa.date32(), "date", pa.date32()),
        (pa.timestamp("ms", tz="Europe/Paris"), "timestamptz", pa.timestamp("us", tz="UTC")),
        (pa.timestamp("s"), "timestamp", pa.timestamp("us")),
        (pa.decimal128(12, 2), "numeric", pa.decimal128(12, 2)),
    ],
)
def test_exact_columns_are_cast_to_their_binary_form(source: pa.DataType, pg_type: str, target: pa.DataType) -> None:
    schema = schema_for(source, pg_type)
    assert schema is not None and schema.field("c").type == target


@pytest.mark.parametrize(
    ("source", "pg_type"),
    [
        (pa.int64(), "int4"),  # narrowing could overflow: the CSV path reports the row
        (pa.uint32(), "int8"),
        (pa.float64(), "float4"),
        (pa.float32(), "float8"),  # binary would widen the exact float32, CSV its shortest decimal
        (pa.string(), "numeric"),  # an unconstrained numeric exported as text
        (pa.timestamp("ns", tz="UTC"), "timestamptz"),  # Postgres rounds nanoseconds
        (pa.timestamp("us"), "timestamptz"),  # naive into timestamptz: the session time zone decides
        (pa.timestamp("us", tz="UTC"), "timestamp"),
        (pa.string(), "jsonb"),
        (pa.binary(16), "uuid"),
        (pa.list_(pa.int64()), "_int8"),
    ],
)
def test_anything_not_exact_takes_the_csv_path(source: pa.DataType, pg_type: str) -> None:
    assert schema_for(source, pg_type) is None


def test_one_inexact_column_sends_the_whole_file_to_the_csv_path() -> None:
    source = pa.schema([("id", pa.int64()), ("doc", pa.string())])
    assert binary_schema(source, ["id", "doc"], ["int8", "jsonb"]) is None
    assert binary_schema(source, ["id", "doc"], ["int8", "text"]) is not None
