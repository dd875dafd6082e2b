"""The export core without servers: options, key naming, compression, part splitting, type mapping.

Writers are driven with COPY-like row chunks and Arrow batches into in-memory objects through an
opener that records completed and aborted keys, exactly as the S3 multipart writer would.
"""

from __future__ import annotations

import contextlib
import decimal
import gzip
import io
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from airflow_s3stream.errors import ConfigurationError
from airflow_s3stream.export.arrow_types import arrow_columns, arrow_schema, convert_batch
from airflow_s3stream.export.columns import Column
from airflow_s3stream.export.compression import open_compressor
from airflow_s3stream.export.keys import manifest_key, part_key, single_key, stale_part_keys
from airflow_s3stream.export.options import ExportOptions
from airflow_s3stream.export.query import classify, strip_query
from airflow_s3stream.export.writers import PartSequence, write_parquet, write_text


class MemoryStore:
    """An opener: completed objects land in ``objects``; a block left by an exception is discarded."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.aborted: list[str] = []

    @contextlib.contextmanager
    def open(self, key: str) -> Iterator[io.BytesIO]:
        buf = io.BytesIO()
        try:
            yield buf
        except BaseException:
            self.aborted.append(key)
            raise
        self.objects[key] = buf.getvalue()


def rows(n: int, header: bool = True) -> list[bytes]:
    return ([b"id,label\n"] if header else []) + [f"{i},row {i}\n".encode() for i in range(n)]


def sequence(store: MemoryStore, split: bool = True) -> PartSequence:
    return PartSequence(store.open, (lambda i: part_key("p", i, ".csv")) if split else (lambda i: "one.csv"))


# -- options ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"file_format": "xml"}, "file_format 'xml'"),
        ({"compression": "lz4"}, "compression 'lz4'"),
        ({"compression_level": 3}, "compression_level is set but compression is None"),
        ({"compression": "gzip", "compression_level": 10}, r"compression_level 10 is outside 1\.\.9"),
        ({"delimiter": '"'}, "delimiter"),
        ({"max_bytes_per_file": -1}, "max_bytes_per_file"),
        ({"empty_result": "nothing"}, "empty_result"),
    ],
)
def test_invalid_options_name_the_parameter(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        ExportOptions(**kwargs).validate()


def test_suffix_and_content_type_follow_format_and_compression() -> None:
    assert ExportOptions().suffix == ".csv"
    assert ExportOptions(file_format="jsonl", compression="zstd").suffix == ".jsonl.zst"
    assert ExportOptions(file_format="parquet", compression="gzip").suffix == ".parquet"  # codec inside the file
    assert ExportOptions(compression="gzip").content_type == "application/gzip"
    assert ExportOptions(compression="zstd").level == 3 and ExportOptions().level is None


# -- keys ------------------------------------------------------------------------------------


def test_single_key_completes_a_missing_suffix_only() -> None:
    assert single_key("exports/day", ".csv.gz") == "exports/day.csv.gz"
    assert single_key("exports/day.csv", ".csv.gz") == "exports/day.csv.gz"
    assert single_key("exports/day.csv.gz", ".csv.gz") == "exports/day.csv.gz"
    assert single_key("exports/day.parquet", ".parquet") == "exports/day.parquet"


def test_part_and_manifest_keys() -> None:
    assert part_key("exports/2024-01-01/", 7, ".jsonl.zst") == "exports/2024-01-01/part-00007.jsonl.zst"
    assert manifest_key("exports/2024-01-01", split=True) == "exports/2024-01-01/_manifest.json"
    assert manifest_key("exports/2024-01-01/orders.csv", split=False) == "exports/2024-01-01/_manifest.json"
    assert manifest_key("orders.csv", split=False) == "_manifest.json"


def test_stale_parts_are_parts_under_the_prefix_not_written_by_this_run() -> None:
    existing = [
        "x/part-00000.csv.gz",
        "x/part-00001.csv.gz",
        "x/part-00002.csv.gz",
        "x/part-00003.csv",  # an earlier run without compression
        "x/_manifest.json",
        "x/notes.txt",
        "x/sub/part-00009.csv",
        "xy/part-00005.csv",
    ]
    written = ["x/part-00000.csv.gz", "x/part-00001.csv.gz"]
    assert stale_part_keys("x", existing, written) == ["x/part-00002.csv.gz", "x/part-00003.csv"]


# -- compression and text parts --------------------------------------------------------------


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_compressors_produce_one_standard_stream(compression: str) -> None:
    comp = open_compressor(compression, None)
    data = b"".join(comp.compress(chunk) for chunk in rows(5000)) + comp.flush()
    plain = (
        gzip.decompress(data)
        if compression == "gzip"
        else zstandard.ZstdDecompressor().decompressobj().decompress(data)
    )
    assert plain == b"".join(rows(5000))


def test_text_rows_split_by_row_count_repeat_the_header_in_every_part() -> None:
    store = MemoryStore()
    parts = sequence(store)
    total = write_text(rows(25), parts, ExportOptions(max_rows_per_file=10), has_header=True)
    assert total == 25
    assert [(f.key, f.rows) for f in parts.files] == [
        ("p/part-00000.csv", 10),
        ("p/part-00001.csv", 10),
        ("p/part-00002.csv", 5),
    ]
    for f in parts.files:
        body = store.objects[f.key]
        assert body.startswith(b"id,label\n") and body.count(b"\n") == f.rows + 1 and len(body) == f.bytes
    assert b"".join(store.objects[f.key].split(b"\n", 1)[1] for f in parts.files) == b"".join(rows(25)[1:])


def test_text_rows_split_by_bytes_after_compression() -> None:
    store = MemoryStore()
    parts = sequence(store)
    options = ExportOptions(max_bytes_per_file=200_000, compression="gzip")
    write_text(rows(200_000), parts, options, has_header=True)
    assert len(parts.files) > 1
    for f in parts.files[:-1]:
        assert f.bytes >= 200_000  # closed at the first row boundary past the limit
    plain = b"".join(gzip.decompress(store.objects[f.key]).split(b"\n", 1)[1] for f in parts.files)
    assert plain == b"".join(rows(200_000)[1:])


def test_empty_text_result_writes_header_only_or_nothing() -> None:
    store = MemoryStore()
    write_text(rows(0), sequence(store, split=False), ExportOptions(), has_header=True)
    assert store.objects == {"one.csv": b"id,label\n"}
    skipped = MemoryStore()
    write_text(rows(0), sequence(skipped, split=False), ExportOptions(empty_result="skip"), has_header=True)
    assert skipped.objects == {}


def test_failure_mid_stream_aborts_the_open_part_and_keeps_completed_ones_listed() -> None:
    store = MemoryStore()
    parts = sequence(store)

    def failing() -> Iterator[bytes]:
        yield from rows(15)
        raise RuntimeError("connection lost")

    with pytest.raises(RuntimeError, match="connection lost"):
        try:
            write_text(failing(), parts, ExportOptions(max_rows_per_file=10), has_header=True)
        except BaseException as exc:
            parts.abort(exc)
            raise
    assert [f.key for f in parts.files] == ["p/part-00000.csv"]  # the engine deletes these
    assert store.aborted == ["p/part-00001.csv"] and "p/part-00001.csv" not in store.objects


# -- Parquet parts and type mapping ----------------------------------------------------------


def test_parquet_parts_split_by_rows_each_with_its_footer() -> None:
    store = MemoryStore()
    parts = PartSequence(store.open, lambda i: part_key("p", i, ".parquet"))
    schema = pa.schema([("id", pa.int64())])
    batches = [pa.record_batch([pa.array(range(s, s + 7), pa.int64())], schema=schema) for s in range(0, 35, 7)]
    options = ExportOptions(file_format="parquet", max_rows_per_file=12, parquet_row_group_rows=5)
    assert write_parquet(batches, schema, parts, options) == 35
    assert [f.rows for f in parts.files] == [12, 12, 11]
    ids = []
    for f in parts.files:
        pf = pq.ParquetFile(io.BytesIO(store.objects[f.key]))
        assert (
            pf.metadata.num_rows == f.rows
            and max(pf.metadata.row_group(i).num_rows for i in range(pf.num_row_groups)) <= 5
        )
        ids += pf.read().column("id").to_pylist()
    assert ids == list(range(35))


def test_empty_parquet_result_keeps_the_schema() -> None:
    store = MemoryStore()
    schema = pa.schema([("id", pa.int64()), ("name", pa.string())])
    write_parquet([], schema, PartSequence(store.open, lambda i: "e.parquet"), ExportOptions(file_format="parquet"))
    table = pq.read_table(io.BytesIO(store.objects["e.parquet"]))
    assert table.num_rows == 0 and table.schema == schema


def column(name: str, oid: int, **kw: Any) -> Column:
    return Column(name=name, oid=oid, type_name=name, **kw)


def test_postgres_types_map_to_exact_arrow_types() -> None:
    mapped = arrow_columns(
        [
            column("n", 1700, precision=12, scale=4),
            column("wide", 1700, precision=50, scale=2),
            column("free", 1700),
            column("tz", 1184),
            column("iv", 1186),
            column("u", 2950),
            column("jb", 3802),
            column("raw", 17),
            column("ints", 1007, element_oid=23),
            column("nums", 1231, element_oid=1700),
            column("inet", 869),
        ]
    )
    types = {f.name: f.type for f in arrow_schema(mapped)}
    assert types["n"] == pa.decimal128(12, 4) and types["wide"] == pa.decimal256(50, 2)
    assert types["free"] == pa.string()  # unconstrained numeric never becomes float
    assert types["tz"] == pa.timestamp("us", tz="UTC")
    assert types["iv"] == pa.struct([("months", pa.int32()), ("days", pa.int32()), ("microseconds", pa.int64())])
    assert types["u"] == pa.uuid() and types["jb"] == pa.json_() and types["raw"] == pa.binary()
    assert types["ints"] == pa.list_(pa.int32()) and types["nums"] == pa.list_(pa.string())
    assert types["inet"] == pa.string()


def test_duplicate_column_names_are_rejected_for_parquet() -> None:
    with pytest.raises(ConfigurationError, match="column 'id' appears twice"):
        arrow_columns([column("id", 23), column("id", 23)])


def test_convert_batch_builds_intervals_uuids_bytes_and_lists() -> None:
    mapped = arrow_columns(
        [column("iv", 1186), column("u", 2950), column("raw", 17), column("arr", 1007, element_oid=23)]
    )
    schema = arrow_schema(mapped)
    parsed = pa.record_batch(
        {
            "c0_m": pa.array([14, None], pa.int32()),
            "c0_d": pa.array([-3, None], pa.int32()),
            "c0_us": pa.array([5, None], pa.int64()),
            "c1": pa.array(["a0eebc999c0b4ef8bb6d6bb9bd380a11", None]),
            "c2": pa.array(["00ff5c", ""]),
            "c3": pa.array(["[1,null,3]", None]),
        }
    )
    got = convert_batch(mapped, parsed, schema).to_pylist()
    assert got[0]["iv"] == {"months": 14, "days": -3, "microseconds": 5} and got[1]["iv"] is None
    assert str(got[0]["u"]) == "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11" and got[1]["u"] is None
    assert got[0]["raw"] == b"\x00\xff\\" and got[1]["raw"] == b""
    assert got[0]["arr"] == [1, None, 3] and got[1]["arr"] is None


# -- SQL text and error classes --------------------------------------------------------------


def test_trailing_semicolons_are_stripped_for_embedding() -> None:
    assert strip_query("  SELECT 1 ;; \n") == "SELECT 1"


@pytest.mark.parametrize(
    ("sql", "embedded"),
    [
        ("SELECT 1 -- last line comment", "SELECT 1"),
        ("SELECT 1\n-- a comment line\n", "SELECT 1"),
        ("SELECT 1; -- done", "SELECT 1"),
        ("SELECT 1 /* block */", "SELECT 1"),
        ("SELECT 1; /* a /* nested */ block */ ;\n\t", "SELECT 1"),
        ("SELECT 1 -- one ; \n /* two */ ; -- three", "SELECT 1"),
        ("SELECT ';'", "SELECT ';'"),
        ("SELECT ';' ;", "SELECT ';'"),
        ("SELECT '--' AS a, '/*' AS b", "SELECT '--' AS a, '/*' AS b"),
        ("SELECT 'it''s; -- not a comment'", "SELECT 'it''s; -- not a comment'"),
        ("SELECT E'\\'; --' AS x", "SELECT E'\\'; --' AS x"),
        ('SELECT 1 AS "a;--b" ; -- c', 'SELECT 1 AS "a;--b"'),
        ("SELECT $$ ; -- $$ AS d; -- c", "SELECT $$ ; -- $$ AS d"),
        ("SELECT $tag$ $$ ; $tag$ AS d", "SELECT $tag$ $$ ; $tag$ AS d"),
        ("-- leading comment\nSELECT 1", "-- leading comment\nSELECT 1"),
        ("SELECT 1 AS a$b -- c", "SELECT 1 AS a$b"),
    ],
)
def test_trailing_comments_and_semicolons_never_reach_the_closing_bracket(sql: str, embedded: str) -> None:
    assert strip_query(sql) == embedded


def test_unterminated_literals_are_left_for_postgres_to_report() -> None:
    assert strip_query("SELECT 'open ;") == "SELECT 'open"
    assert strip_query("SELECT 1 /* open ;") == "SELECT 1 /* open"


def test_postgres_errors_are_classified_retryable_or_not() -> None:
    import psycopg

    from airflow_s3stream.errors import ExportConnectionError, QueryError

    assert isinstance(classify(psycopg.errors.UndefinedTable("relation x does not exist"), "SELECT"), QueryError)
    assert isinstance(classify(psycopg.errors.AdminShutdown("terminating"), "SELECT"), ExportConnectionError)
    assert isinstance(classify(psycopg.OperationalError("server closed"), "SELECT"), ExportConnectionError)


def test_postgres_errors_name_the_first_line_of_the_query_that_is_not_a_comment() -> None:
    import psycopg

    sql = "\n-- nightly orders export\n  SELECT id, total\n  FROM orders"
    error = classify(psycopg.errors.UndefinedTable('relation "orders" does not exist'), sql)
    assert str(error).startswith("query 'SELECT id, total': Postgres error")


# -- progress --------------------------------------------------------------------------------


def test_progress_is_reported_at_most_every_interval_and_once_at_the_end() -> None:
    from airflow_s3stream.progress import Progress, ProgressSnapshot

    seen: list[ProgressSnapshot] = []
    progress = Progress("export", interval=3600.0, report=seen.append, count_rows=True)
    for n in range(1000):
        progress.set(n, n * 10)
    assert seen == []  # nothing before the interval has passed
    progress.set(1000, 10_000)
    progress.finish()
    assert len(seen) == 1 and seen[0].done and (seen[0].rows, seen[0].bytes, seen[0].parts) == (1000, 10_000, None)
    assert seen[0].describe().startswith("export done: 1,000 rows, 0.0 MB")
    eager: list[ProgressSnapshot] = []
    always = Progress("export", interval=1e-9, report=eager.append, count_rows=True)
    always.set(5, 50)
    assert [(p.rows, p.done) for p in eager] == [(5, False)]


def test_dictionary_encoding_only_where_the_first_batch_repeats_values() -> None:
    from airflow_s3stream.export.parquet_layout import dictionary_columns

    n = 10_000
    batch = pa.record_batch(
        [
            pa.array(range(n), pa.int64()),
            pa.array([["new", "paid", "shipped"][i % 3] for i in range(n)]),
            pa.array([decimal.Decimal(i) / 100 for i in range(n)], pa.decimal128(12, 2)),
            pa.array([i % 2 == 0 for i in range(n)]),
            pa.ExtensionArray.from_storage(pa.json_(), pa.array(['{"a": 1}'] * n)),
            pa.array([float(i % 5) for i in range(n)]),
        ],
        names=["id", "status", "amount", "flag", "payload", "score"],
    )
    assert dictionary_columns(batch) == ["status", "payload"]
    assert dictionary_columns(batch.slice(0, 0)) == []

    store = MemoryStore()
    schema = batch.schema
    write_parquet(
        [batch], schema, PartSequence(store.open, lambda i: "d.parquet"), ExportOptions(file_format="parquet")
    )
    group = pq.ParquetFile(io.BytesIO(store.objects["d.parquet"])).metadata.row_group(0)
    dictionary = {group.column(i).path_in_schema: group.column(i).has_dictionary_page for i in range(group.num_columns)}
    assert dictionary == {"id": False, "status": True, "amount": False, "flag": False, "payload": True, "score": False}
    assert pq.read_table(io.BytesIO(store.objects["d.parquet"])).equals(pa.Table.from_batches([batch]))
