"""Pure parts of the load: options, manifest parsing, format detection, COPY error positions, Arrow text."""

from __future__ import annotations

import datetime as dt
import decimal
import json

import pyarrow as pa
import pytest

from airflow_s3stream.errors import ConfigurationError, SourceError
from airflow_s3stream.load.arrow_text import batch_to_csv
from airflow_s3stream.load.formats import compression_from_magic, compression_from_suffix, format_from_suffix
from airflow_s3stream.load.options import LoadOptions
from airflow_s3stream.load.target import split_table_name
from airflow_s3stream.operators import S3ToPostgresStreamOperator
from airflow_s3stream.pg_errors import copy_position
from airflow_s3stream.publish.manifest import parse_manifest


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "merge"}, "mode 'merge' is not one of append, replace, replace_interval, upsert"),
        ({"mode": "upsert"}, "mode 'upsert' needs conflict_columns"),
        ({"mode": "replace_interval"}, "mode 'replace_interval' needs interval_filter"),
        ({"file_format": "xml"}, "file_format 'xml' is not one of auto, csv, jsonl, parquet"),
        ({"compression": "bz2"}, "compression 'bz2' is not one of"),
        ({"interval_filter": "x > 1"}, "interval_filter is only used by mode 'replace_interval'"),
        ({"replace_via": "swap"}, "replace_via is only used by mode 'replace'"),
        ({"delimiter": ";;"}, "delimiter ';;' must be one character"),
        ({"columns": ["a", "a"]}, "columns names a column twice"),
        ({"mode": "upsert", "conflict_columns": ["id"], "columns": ["x"]}, "conflict_columns ['id'] are not among"),
    ],
)
def test_bad_arguments_fail_at_dag_parse_time_naming_the_parameter(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match="^load: " + message.replace("(", r"\(").replace("[", r"\[")):
        S3ToPostgresStreamOperator(task_id="load", s3_bucket="b", s3_key="k.csv", table="t", **kwargs)  # type: ignore[arg-type]


def test_source_is_required_and_exclusive_with_asset_events() -> None:
    with pytest.raises(ConfigurationError, match="s3_bucket and s3_key are required"):
        S3ToPostgresStreamOperator(task_id="load", table="t")
    with pytest.raises(ConfigurationError, match="source_from_asset_event takes the source from the event"):
        S3ToPostgresStreamOperator(task_id="load", table="t", s3_bucket="b", s3_key="k", source_from_asset_event=True)
    with pytest.raises(ConfigurationError, match=r"table 'a\.b\.c' must be 'table' or 'schema\.table'"):
        S3ToPostgresStreamOperator(task_id="load", table="a.b.c", s3_bucket="b", s3_key="k")


def test_templated_fields_are_declared() -> None:
    fields = set(S3ToPostgresStreamOperator.template_fields)
    assert {"s3_bucket", "s3_key", "table", "parameters", "interval_filter", "zip_member"} <= fields


def test_split_table_name() -> None:
    assert split_table_name("staging.orders") == ("staging", "orders")
    assert split_table_name("orders") == ("orders",)
    assert split_table_name(("my.schema", "t")) == ("my.schema", "t")


def test_options_defaults_are_the_exports() -> None:
    options = LoadOptions().validate()
    assert (options.delimiter, options.header, options.null_string, options.quote) == (",", True, "", '"')


def test_manifest_version_1_and_older_ones_are_read() -> None:
    v1 = {
        "version": 1,
        "format": "csv",
        "compression": "zstd",
        "csv": {"delimiter": ";", "header": True, "null_string": ""},
        "files": [
            {
                "key": "p/part-00000.csv.zst",
                "rows": 2,
                "bytes": 10,
                "etag": '"abc-1"',
                "checksum": {"algorithm": "CRC32C", "type": "COMPOSITE", "value": "AAAA-1", "etag": '"abc-1"'},
            }
        ],
        "rows": 2,
        "bytes": 10,
    }
    manifest = parse_manifest(json.dumps(v1).encode(), "b", "p/_manifest.json")
    assert manifest.version == 1 and manifest.compression == "zstd" and manifest.csv == v1["csv"]
    (f,) = manifest.files
    assert (f.key, f.rows, f.bytes, f.etag, f.checksum_algorithm, f.checksum_value) == (
        "p/part-00000.csv.zst",
        2,
        10,
        '"abc-1"',
        "CRC32C",
        "AAAA-1",
    )
    old = parse_manifest(b'{"format": "parquet", "files": [{"key": "x.parquet"}], "rows": 5}', "b", "_manifest.json")
    assert old.version is None and old.files[0].rows is None and old.rows == 5


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "not valid JSON"),
        (b"[]", "expected a JSON object"),
        (b'{"rows": 1}', "no 'files' list"),
        (b'{"version": 2, "files": []}', "version 2 is newer"),
        (b'{"files": [{"rows": 1}]}', r"files\[0\] has no key"),
        (b'{"files": [{"key": "a", "rows": -1}]}', "rows of a must be a non-negative integer"),
    ],
)
def test_bad_manifests_are_refused_naming_the_manifest(body: bytes, message: str) -> None:
    with pytest.raises(SourceError, match=r"manifest s3://b/m/_manifest\.json: " + message):
        parse_manifest(body, "b", "m/_manifest.json")


def test_format_and_compression_detection() -> None:
    assert format_from_suffix("a/part-00000.csv.gz") == "csv"
    assert format_from_suffix("x.JSONL.zst") == "jsonl" and format_from_suffix("y.ndjson") == "jsonl"
    assert format_from_suffix("z.parquet") == "parquet"
    with pytest.raises(ConfigurationError, match=r"a/b\.dat: cannot tell the file format"):
        format_from_suffix("a/b.dat")
    assert compression_from_suffix("a.csv.gz") == "gzip" and compression_from_suffix("a.csv.zst") == "zstd"
    assert compression_from_suffix("a.csv") is None
    assert compression_from_magic(b"\x1f\x8b\x08\x00") == "gzip"
    assert compression_from_magic(b"\x28\xb5\x2f\xfd") == "zstd"
    assert compression_from_magic(b"id,n") is None


def test_copy_position_is_read_from_the_copy_line_not_a_nested_context() -> None:
    context = 'JSON data, line 1: {"id": 2,\nCOPY s, line 2, column doc: "{"id": 2,"'
    position = copy_position(context)
    assert position is not None and (position.line, position.column) == (2, "doc")
    position = copy_position("COPY orders, line 101")
    assert position is not None and (position.line, position.column) == (101, None)
    assert copy_position(None) is None and copy_position("SQL statement") is None


def test_arrow_batches_become_postgres_csv_exactly() -> None:
    interval = pa.struct([("months", pa.int32()), ("days", pa.int32()), ("microseconds", pa.int64())])
    batch = pa.RecordBatch.from_arrays(
        [
            pa.array(["", None, 'q"u,o\nte']),
            pa.array([b"\x00\xff", b"", None], pa.binary()),
            pa.array([[1, None], [], None], pa.list_(pa.int32())),
            pa.array([["a,b", 'c"d', None, ""], None, []], pa.list_(pa.string())),
            pa.array(
                [{"months": 14, "days": -3, "microseconds": 5}, None, {"months": 0, "days": 0, "microseconds": -1}],
                interval,
            ),
            pa.ExtensionArray.from_storage(pa.uuid(), pa.array([bytes(range(16)), None, None], pa.binary(16))),
            pa.array([decimal.Decimal("1.10"), None, decimal.Decimal("-0.01")], pa.decimal128(5, 2)),
            pa.array([dt.datetime(2024, 6, 1, 10, 0, 0, 500000), None, None], pa.timestamp("us", tz="UTC")),
            pa.array([float("nan"), float("-inf"), None]),
        ],
        names=["s", "b", "ia", "ta", "iv", "u", "n", "ts", "f"],
    )
    lines = bytes(batch_to_csv(batch)).decode().split("\n")
    assert lines[0] == (
        '"","\\x00ff","{""1"",NULL}","{""a,b"",""c\\""d"",NULL,""""}",'
        '"14 mons -3 days 5 microseconds","000102030405060708090a0b0c0d0e0f",1.10,2024-06-01 10:00:00.500000Z,nan'
    )
    assert lines[1] == ',"\\x","{}",,,,,,-inf'  # NULL is the empty unquoted field; "" the empty string
    assert lines[2] == '"q""u,o'
