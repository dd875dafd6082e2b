"""The Parquet file the export writes, column by column, against pyarrow's defaults and DuckDB's.

    .venv/bin/python benchmarks/bench_parquet_layout.py [--rows 3000000]

Reads the benchmark's orders table (``benchmarks/orders.py``) once through the export's own path
(text COPY, Arrow's CSV parser, the exact types), then writes it to a local file three ways: the
package's ``write_parquet`` (dictionary encoding where the first batch repeats its values, the
budget's row groups), pyarrow's defaults with the same row groups (a dictionary tried on every
column: the package before), and DuckDB ``COPY ... TO (FORMAT parquet)`` from Postgres (2 threads,
when the ``bench`` extra is installed). Snappy everywhere. Printed: the file's MB, the seconds of
the write alone (DuckDB's include its read from Postgres), and the compressed MB of each column.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `python benchmarks/bench_parquet_layout.py`, as `make bench` runs it

from benchmarks.orders import orders_table_sql  # noqa: E402
from tests.support.devservices import start_postgres  # noqa: E402

TABLE = "bench_parquet_layout"


def column_sizes(path: Path) -> dict[str, float]:
    """Compressed MB per column, over every row group."""
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(path).metadata
    sizes: dict[str, float] = {}
    for g in range(meta.num_row_groups):
        for c in range(meta.num_columns):
            column = meta.row_group(g).column(c)
            sizes[column.path_in_schema] = sizes.get(column.path_in_schema, 0.0) + column.total_compressed_size / 1e6
    return sizes


@contextlib.contextmanager
def _local(path: Path) -> Iterator[Any]:
    with path.open("wb") as sink:
        yield sink


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=3_000_000)
    args = parser.parse_args()
    import psycopg
    import pyarrow as pa
    import pyarrow.parquet as pq

    from airflow_s3stream.export.arrow_types import arrow_columns, arrow_schema
    from airflow_s3stream.export.columns import describe_query
    from airflow_s3stream.export.copy_stream import arrow_batches
    from airflow_s3stream.export.options import ExportOptions
    from airflow_s3stream.export.writers import PartSequence, write_parquet

    postgres = start_postgres()
    with psycopg.connect(postgres.uri, autocommit=True) as admin:
        admin.execute(orders_table_sql(TABLE, args.rows))
    sql = f"SELECT * FROM {TABLE}"
    with psycopg.connect(postgres.uri) as conn:
        mapped = arrow_columns(describe_query(conn, sql, None))
        schema = arrow_schema(mapped)
        batches = list(arrow_batches(conn, sql, None, mapped, schema))
    work = Path(tempfile.mkdtemp(prefix="bench-parquet-layout-"))
    rows: list[tuple[str, Path, float]] = []
    try:
        options = ExportOptions(file_format="parquet")
        path = work / "package.parquet"
        started = time.monotonic()
        parts = PartSequence(lambda key: _local(path), lambda i: str(path))
        write_parquet(batches, schema, parts, options)
        rows.append(("this package (dictionary where it pays)", path, time.monotonic() - started))
        group_rows = pq.ParquetFile(path).metadata.row_group(0).num_rows
        path = work / "pyarrow.parquet"
        started = time.monotonic()
        pq.write_table(pa.Table.from_batches(batches, schema), path, compression="snappy", row_group_size=group_rows)
        rows.append(("pyarrow defaults (the package before)", path, time.monotonic() - started))
        try:
            import duckdb
            import duckdb_extensions
        except ImportError:
            print("DuckDB is not installed: pip install -e '.[bench]'", file=sys.stderr)
        else:
            con = duckdb.connect(config={"autoinstall_known_extensions": "false", "threads": "2"})
            duckdb_extensions.import_extension("postgres", con=con)
            con.execute(f"ATTACH '{postgres.uri}' AS pg (TYPE postgres, READ_ONLY)")
            path = work / "duckdb.parquet"
            started = time.monotonic()
            con.execute(f"COPY (SELECT * FROM pg.public.{TABLE}) TO '{path}' (FORMAT parquet)")
            rows.append(("DuckDB 2 threads (read + write)", path, time.monotonic() - started))
        columns = list(column_sizes(rows[0][1]))
        print(f"\nParquet of {args.rows:,} orders rows, snappy: file MB, write seconds, compressed MB per column")
        head = f"{'writer':42} | {'MB':>6} {'s':>5} | " + " ".join(f"{c[:10]:>10}" for c in columns)
        print(head + "\n" + "-" * len(head))
        for label, file, seconds in rows:
            per = column_sizes(file)
            cells = " ".join(f"{per.get(c, 0.0):10.1f}" for c in columns)
            print(f"{label:42} | {os.path.getsize(file) / 1e6:6.1f} {seconds:5.2f} | {cells}")
        if len(rows) == 3:
            print(f"\nbytes, this package / DuckDB: {os.path.getsize(rows[0][1]) / os.path.getsize(rows[2][1]):.3f} "
                  "(target <= 1.05)")  # fmt: skip
    finally:
        for _, file, _ in rows:
            file.unlink(missing_ok=True)
        work.rmdir()
        with psycopg.connect(postgres.uri, autocommit=True) as admin:
            admin.execute(f"DROP TABLE IF EXISTS {TABLE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
