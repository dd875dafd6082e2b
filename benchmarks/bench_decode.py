"""Per type: Postgres' text COPY parsed by Arrow (today's Parquet export) against binary COPY
decoded natively into Arrow (the ADBC PostgreSQL driver, C++), and whether the binary path is exact.

    .venv/bin/python benchmarks/bench_decode.py [--rows 2000000] [--types int8,text,...]

For each type a one-column unlogged table of ``--rows`` rows is read to the end both ways, each
twice (the second, warm run is printed): wall seconds, this process's CPU, and the Postgres
backend's CPU (read from ``/proc``; the server must run on this host), so the table shows what
each path costs on a small machine where the database shares the cores. "exact" compares the
binary path's arrays, after the cast to the export's Arrow type (numeric to decimal128, jsonb to
``arrow.json``, uuid to ``arrow.uuid``), with the text path's, value for value.

ADBC is not a dependency of the package: install it with ``pip install -e '.[bench]'``.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `python benchmarks/bench_decode.py`, as `make bench` runs it

from tests.support.devservices import start_postgres  # noqa: E402

# type -> the expression generating its values from g (1..rows)
TYPES: dict[str, str] = {
    "int8": "g::int8",
    "float8": "g / 7.0::float8",
    "boolean": "g % 3 = 0",
    "text": "md5(g::text)",
    "numeric": "(g % 100000 * 1.37)::numeric(12, 2)",
    "date": "date '2000-01-01' + g % 9000",
    "timestamptz": "timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second'",
    "jsonb": "jsonb_build_object('id', g, 'tag', 'x' || g % 10)",
    "uuid": "md5(g::text)::uuid",
    "bytea": "decode(md5(g::text), 'hex')",
}


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _backend_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime + stime, clock ticks


def text_path(uri: str, table: str) -> tuple[Any, float]:
    """Today's export path: COPY (FORMAT csv) parsed by Arrow, converted to the exact types."""
    import psycopg
    import pyarrow as pa

    from airflow_s3stream.export.arrow_types import arrow_columns, arrow_schema
    from airflow_s3stream.export.columns import describe_query
    from airflow_s3stream.export.copy_stream import arrow_batches

    sql = f"SELECT v FROM {table}"
    with psycopg.connect(uri) as conn:
        pid = conn.info.backend_pid
        mapped = arrow_columns(describe_query(conn, sql, None))
        schema = arrow_schema(mapped)
        server = _backend_cpu(pid)
        batches = list(arrow_batches(conn, sql, None, mapped, schema))
        server = _backend_cpu(pid) - server
        return pa.Table.from_batches(batches, schema).column(0), server


def binary_path(uri: str, table: str) -> tuple[Any, float]:
    """Binary COPY decoded by ADBC's C++ driver, cast to the export's Arrow type."""
    import adbc_driver_postgresql.dbapi as adbc
    import pyarrow as pa

    with adbc.connect(uri) as conn, conn.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        pid = int(cur.fetchone()[0])  # type: ignore[index]
        server = _backend_cpu(pid)
        cur.execute(f"SELECT v FROM {table}")
        column = cur.fetch_arrow_table().column(0)
        server = _backend_cpu(pid) - server
    return _exact(pa.chunked_array(column.chunks, column.type)), server


def _exact(column: Any) -> Any:
    """The ADBC column in the export's Arrow type (see airflow_s3stream/export/arrow_types.py)."""
    import pyarrow as pa

    storage = column.type.storage_type if isinstance(column.type, pa.BaseExtensionType) else None
    if storage is not None and getattr(column.type, "type_name", "") == "numeric":
        chunks = [c.storage for c in column.chunks]
        return pa.chunked_array(chunks, storage).cast(pa.decimal128(12, 2))
    if storage is not None and getattr(column.type, "type_name", "") in ("jsonb", "json"):
        chunks = [c.storage for c in column.chunks]
        # jsonb's binary form is a version byte then the text
        return pa.chunked_array([pa.ExtensionArray.from_storage(pa.json_(), _strip_version(c)) for c in chunks])
    if storage is not None and getattr(column.type, "type_name", "") == "uuid":
        chunks = [c.storage.cast(pa.binary(16)) for c in column.chunks]
        return pa.chunked_array([pa.ExtensionArray.from_storage(pa.uuid(), c) for c in chunks])
    return column


def _strip_version(array: Any) -> Any:
    import pyarrow as pa
    import pyarrow.compute as pc

    values = array.cast(pa.binary()) if array.type != pa.binary() else array
    if len(values) and values[0].as_py()[:1] == b"\x01":
        values = pc.binary_slice(values, 1)
    return values.cast(pa.string())


def measure(path: Callable[[str, str], tuple[Any, float]], uri: str, table: str) -> tuple[tuple[float, ...], Any]:
    """(wall s, client CPU s, server CPU s) of a warm run of ``path``, and the column it read."""
    path(uri, table)  # the first run pays imports, library loading and a cold cache
    started, cpu = time.monotonic(), _cpu()
    column, server = path(uri, table)
    return (time.monotonic() - started, _cpu() - cpu, server), column


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--types", default=",".join(TYPES))
    args = parser.parse_args()
    try:
        import adbc_driver_postgresql  # noqa: F401
    except ImportError:
        print("ADBC is not installed: pip install -e '.[bench]'", file=sys.stderr)
        return 2
    import psycopg

    postgres = start_postgres()
    lines = []
    with psycopg.connect(postgres.uri, autocommit=True) as admin:
        for name in args.types.split(","):
            table = "bench_decode_" + "".join(ch if ch.isalnum() else "_" for ch in name)
            admin.execute(f"DROP TABLE IF EXISTS {table}")
            admin.execute(
                f"CREATE UNLOGGED TABLE {table} AS SELECT {TYPES[name]} AS v FROM generate_series(1, {args.rows}) g"
            )
            print(f"-- {name}", file=sys.stderr, flush=True)
            (text, text_column), (binary, binary_column) = (
                measure(text_path, postgres.uri, table),
                measure(binary_path, postgres.uri, table),
            )
            exact = text_column.type == binary_column.type and text_column.equals(binary_column)
            lines.append((name, text, binary, exact))
            admin.execute(f"DROP TABLE {table}")
    print(f"\nDecode {args.rows:,} rows of one column, warm: text COPY + Arrow's CSV parser (today) against "
          "binary COPY + ADBC's decoder; CPU seconds of this process (client) and of the Postgres backend "
          "(server)")  # fmt: skip
    head = f"{'type':15} | {'text s':>6} {'client':>6} {'server':>6} | {'binary s':>8} {'client':>6} {'server':>6}"
    print(head + f" | {'x faster':>8} {'x CPU':>6} | exact")
    print("-" * (len(head) + 25))
    for name, (tw, tc, ts), (bw, bc, bs), exact in lines:
        print(f"{name:15} | {tw:6.2f} {tc:6.2f} {ts:6.2f} | {bw:8.2f} {bc:6.2f} {bs:6.2f} | {tw / bw:8.2f} "
              f"{(tc + ts) / (bc + bs):6.2f} | {'yes' if exact else 'NO'}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
