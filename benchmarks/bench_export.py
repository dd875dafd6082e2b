"""Postgres -> S3 export benchmark: one table, one run, every method in its own subprocess.

    .venv/bin/python -m benchmarks.bench_export [--rows 3000000] [--small-rows 300000]
                                                [--recipe-rows 300000] [--pandas-rows 300000]
                                                [--stores moto,rgw]

Loads ``--rows`` rows (about 125 bytes of CSV each: 3M rows ~ 375 MB) into an unlogged table,
then, on each S3 store in turn (moto, a mock, and Ceph RGW, a real S3 implementation; a fresh
endpoint process and bucket each), measures, each in a fresh child process (peak RSS = that
child's own ``VmHWM``; ``ru_maxrss`` would include the parent's, inherited across fork):

* ``COPY ... TO STDOUT`` into nothing: the source limit;
* the classic recipe: SQLAlchemy ``fetchmany`` + ``csv.writer`` + smart_open (sequential);
* pandas ``read_sql`` + ``to_csv`` + PutObject, what ``SqlToS3Operator`` does (at a size that fits);
* COPY chained into smart_open's writer, sequentially (read, then upload, taking turns);
* ``PostgresToS3StreamOperator.execute({})`` per format, and CSV again at ``--small-rows``;
* CSV and Parquet again with the knobs the operator had before ``memory_budget`` (16 MiB parts,
  8 in flight, 128k-row row groups), to compare throughput and memory at the 128 MiB default;
* a split CSV export (``--split-mib`` MiB files) two ways, alternating over ``--split-rounds``
  rounds: each file completed as it closes (before the staged commit) and every file staged then
  published by one commit (today); ``commit ms`` is the commit window (first Complete to manifest);
* the job commit (``S3StreamCommitOperator``'s work) of 1, 10 and 100 small staged files;
* an idle interpreter with the operator's imports (the memory baseline);
* the peers (:mod:`benchmarks.peers`, from the ``bench`` extra) on the whole table (``--rows``
  rows): DuckDB with 2 threads, ``COPY (SELECT * FROM pg.public.<table>) TO 's3://...'`` as
  Parquet and as CSV, Parquet again with ``memory_limit='128MB'``, and dlt's ``sql_table``
  (pyarrow backend) to a ``filesystem`` destination, Parquet. Their seconds are the export call
  alone (imports, extension loading and ``ATTACH`` come before the clock); ``out MB`` is the sum of
  the objects they wrote. Without the extra their cells say what to install, and the script
  exits with status 1 once it has printed everything else.

A type-fidelity table follows: a small table of the exact-types columns (bigint, two texts,
numeric(12,2), timestamptz, jsonb, boolean) exported as Parquet by the operator, DuckDB and dlt,
each file's Arrow schema read back and compared with the exact types (jsonb: Arrow's JSON type).

MB/s is CSV-equivalent MB (the CSV size of the same rows) per second, so formats compare on the
same data; ``out MB`` is what was stored. Each store is started for its run
(:func:`benchmarks.stores.run_on_stores`; one ``env`` column instead when ``S3STREAM_S3_ENDPOINT``
is set), and its endpoint and key pair reach every child. One table shows the stores side by
side; ratios are computed within one store's run (the machine is noisy). A row that fails on a
store shows its error there.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `python benchmarks/bench_export.py`, as `make bench` runs it

from benchmarks import peers  # noqa: E402
from benchmarks.orders import orders_table_sql  # noqa: E402
from benchmarks.stores import Column, add_store_argument, print_side_by_side, ratio_notes, run_on_stores, service_env  # noqa: E402
from tests.support.devservices import S3Service  # noqa: E402

MiB = 1024 * 1024
# the defaults before memory_budget: 16 MiB parts, 8 in flight, 128k-row Parquet row groups
BEFORE_BUDGET = {"part_size": 16 * MiB, "max_concurrency": 8, "parquet_row_group_rows": 128 * 1024}
SPLIT_MIB = int(os.environ.get("BENCH_SPLIT_MIB", "32"))  # set by --split-mib for the children
BUCKET = "bench-export"
TABLE = "bench_export"
TYPES_TABLE = "bench_export_types"  # the exact-types columns of the type-fidelity table
FIDELITY = "__fidelity__"  # the key of a store's fidelity cells among its rows


def _client(s3: S3Service) -> Any:
    """A client with botocore's defaults (16 pooled connections), for the peers and the cores."""
    return s3.client(retries={"mode": "legacy"}, max_pool_connections=16)


def _query(rows: int) -> str:
    return f"SELECT * FROM {TABLE} WHERE id <= {rows} ORDER BY id"


# -- what each child process runs ------------------------------------------------------------


def run_case(case: str, rows: int, s3: S3Service, pg_uri: str) -> dict[str, Any]:
    """Run one measurement in this (child) process; return seconds and bytes stored."""
    import psycopg

    sql = _query(rows)
    key = f"{case}/{rows}"
    if case == "idle":  # what a CSV export's process imports, and a client: the idle task runtime
        from airflow_s3stream.operators import PostgresToS3StreamOperator

        _client(s3)
        return {"seconds": 0.0, "bytes": 0}
    if case.startswith("operator_"):  # imported before the clock starts, like every other method's library
        from airflow_s3stream.operators import PostgresToS3StreamOperator
    if case.startswith(("duckdb_", "dlt_")) or case == "fidelity":
        return run_peer_case(case, s3, pg_uri)
    started = time.monotonic()
    stored = 0
    if case == "copy_to_nothing":
        with (
            psycopg.connect(pg_uri) as conn,
            conn.cursor() as cur,
            cur.copy(f"COPY ({sql}) TO STDOUT (FORMAT csv, HEADER true)") as copy,
        ):
            for chunk in copy:
                stored += len(chunk)
    elif case == "copy_smart_open":
        from smart_open import open as smart_open

        params = {"client": _client(s3)}
        with (
            psycopg.connect(pg_uri) as conn,
            conn.cursor() as cur,
            smart_open(f"s3://{BUCKET}/{key}.csv", "wb", transport_params=params) as out,
            cur.copy(f"COPY ({sql}) TO STDOUT (FORMAT csv, HEADER true)") as copy,
        ):
            pending: list[Any] = []
            size = 0
            for chunk in copy:  # the same 256 KiB writes the operator makes, but read and upload take turns
                pending.append(chunk)
                size += len(chunk)
                if size >= 256 * 1024:
                    out.write(b"".join(pending))
                    stored, pending, size = stored + size, [], 0
            out.write(b"".join(pending))
            stored += size
    elif case == "fetchmany_recipe":
        import csv
        import io

        import sqlalchemy
        from smart_open import open as smart_open

        engine = sqlalchemy.create_engine(pg_uri.replace("postgresql://", "postgresql+psycopg://", 1))
        params = {"client": _client(s3)}
        with engine.connect() as sa_conn, smart_open(f"s3://{BUCKET}/{key}.csv", "wb", transport_params=params) as raw:
            result = sa_conn.execution_options(stream_results=True).execute(sqlalchemy.text(sql))
            text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
            writer = csv.writer(text)
            writer.writerow(result.keys())
            while batch := result.fetchmany(10_000):
                writer.writerows(batch)
            text.flush()
            stored = raw.tell() if hasattr(raw, "tell") else 0
            text.detach()
    elif case == "pandas_read_sql":
        import pandas as pd
        import sqlalchemy

        engine = sqlalchemy.create_engine(pg_uri.replace("postgresql://", "postgresql+psycopg://", 1))
        frame = pd.read_sql(sql, engine)
        data = frame.to_csv(index=False).encode()
        _client(s3).put_object(Bucket=BUCKET, Key=f"{key}.csv", Body=data)
        stored = len(data)
    elif case in ("split_completed", "split_staged"):
        from airflow_s3stream.export import ExportOptions, export_query, multipart_opener

        client = _client(s3)
        options = ExportOptions(max_bytes_per_file=SPLIT_MIB * MiB, write_manifest=True)
        opener = None  # the default: every part staged, then one commit
        if case == "split_completed":
            opener = multipart_opener(client, BUCKET, options.content_type)  # completed as each part closes
        with psycopg.connect(pg_uri) as conn:
            exported = export_query(conn, client, sql=sql, bucket=BUCKET, key=key, options=options, open_object=opener)
        stored = exported.bytes
        return {"seconds": time.monotonic() - started, "bytes": stored, "commit_ms": exported.commit_ms}
    elif case.startswith("job_commit_"):
        from airflow_s3stream.export import ExportOptions, export_query
        from airflow_s3stream.export.job import commit_job
        from airflow_s3stream.s3.multipart import MultipartConfig

        client = _client(s3)
        files = int(case.removeprefix("job_commit_"))
        with psycopg.connect(pg_uri) as conn:
            staged = [
                export_query(
                    conn,
                    client,
                    sql=f"SELECT * FROM {TABLE} WHERE id > %(lo)s AND id <= %(hi)s",
                    parameters={"lo": i * rows, "hi": (i + 1) * rows},
                    bucket=BUCKET,
                    key=f"{key}/range-{i:05d}",
                    options=ExportOptions(),
                    stage_only=True,
                ).to_dict()
                for i in range(files)
            ]
        started = time.monotonic()
        done = commit_job(client, bucket=BUCKET, prefix=key, results=staged, config=MultipartConfig())
        return {"seconds": time.monotonic() - started, "bytes": done.bytes, "commit_ms": done.commit_ms}
    elif case.startswith("operator_"):
        name, _, knobs = case.removeprefix("operator_").partition("@")
        file_format, _, compression = name.partition("_")
        op = PostgresToS3StreamOperator(
            task_id="bench",
            sql=sql,
            s3_bucket=BUCKET,
            s3_key=key,
            file_format=file_format,
            compression=compression or None,
            **(BEFORE_BUDGET if knobs == "before_budget" else {}),  # type: ignore[arg-type]
        )
        summary = op.execute({})
        stored = summary["bytes"]
    else:
        raise SystemExit(f"unknown case {case}")
    return {"seconds": time.monotonic() - started, "bytes": stored}


def run_peer_case(case: str, s3: S3Service, pg_uri: str) -> dict[str, Any]:
    """A peer's export of the whole table (seconds of the export call, bytes it stored), or
    ``fidelity``: every tool's exact-types cells."""
    store = peers.PeerStore.of(s3)
    client = _client(s3)
    if case == "fidelity":
        return {"fidelity": _fidelity(store, client, pg_uri)}
    prefix = f"{case}/"
    if case.startswith("duckdb_"):
        name, _, limit = case.removeprefix("duckdb_").partition("@")
        con = peers.duckdb_connect(store, pg_uri, threads=2, memory_limit=limit or None)
        seconds = peers.duckdb_export(con, TABLE, f"s3://{BUCKET}/{prefix}data.{name}", name)
    elif case == "dlt_parquet":
        seconds = peers.dlt_export(store, pg_uri, TABLE, f"s3://{BUCKET}/{case}")
    else:
        raise SystemExit(f"unknown case {case}")
    return {"seconds": seconds, "bytes": peers.stored_bytes(client, BUCKET, prefix)}


def _fidelity(store: peers.PeerStore, client: Any, pg_uri: str) -> dict[str, dict[str, str]]:
    """The exact-types table exported as Parquet by each tool, its Arrow schema read back: ``{tool: cells}``."""
    import psycopg

    from airflow_s3stream.export import ExportOptions, export_query

    def operator(prefix: str) -> None:
        with psycopg.connect(pg_uri) as conn:
            export_query(
                conn,
                client,
                sql=f"SELECT * FROM {TYPES_TABLE} ORDER BY id",
                bucket=BUCKET,
                key=f"{prefix}data.parquet",
                options=ExportOptions(file_format="parquet"),
            )

    def duckdb(prefix: str) -> None:
        con = peers.duckdb_connect(store, pg_uri)
        peers.duckdb_export(con, TYPES_TABLE, f"s3://{BUCKET}/{prefix}data.parquet", "parquet")

    def dlt(prefix: str) -> None:
        peers.dlt_export(store, pg_uri, TYPES_TABLE, f"s3://{BUCKET}/{prefix.rstrip('/')}")

    tools = {"operator (parquet)": operator, "DuckDB": duckdb, "dlt (pyarrow)": dlt}
    cells: dict[str, dict[str, str]] = {}
    for i, (tool, export) in enumerate(tools.items()):
        if tool != "operator (parquet)" and peers.missing_peers():
            cells[tool] = {"error": peers.INSTALL_HINT}
            continue
        prefix = f"fidelity/{i}/"
        try:
            export(prefix)
            cells[tool] = peers.arrow_fidelity(peers.parquet_schema(client, BUCKET, prefix))
        except Exception as exc:  # one tool's failure is its row, not the table's
            cells[tool] = {"error": f"error: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"}
    return cells


# -- the parent: load, run each case in a child, print one table ----------------------------


def _child(case: str, rows: int, pg_uri: str, env: dict[str, str]) -> dict[str, Any]:
    """Run ``case`` in a fresh child process; its result, or ``{"error": ...}`` naming why it failed
    (``{"skipped": ...}`` for a peer whose extra is not installed)."""
    if case.startswith(("duckdb_", "dlt_")) and peers.missing_peers():
        return {"skipped": peers.INSTALL_HINT}
    cmd = [sys.executable, "-m", "benchmarks.bench_export", "--child", case, "--rows", str(rows), "--pg-uri", pg_uri]
    with tempfile.TemporaryFile("w+") as errors:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errors, env=env, text=True)
        assert proc.stdout is not None
        out = proc.stdout.read()
        status = proc.wait()
        if status != 0:
            errors.seek(0)
            text = errors.read()
            print(f"case {case} failed (status {status}):\n{text[-3000:]}", file=sys.stderr, flush=True)
            last = [ln for ln in text.splitlines() if ln.strip()][-1:] or [f"exit status {status}"]
            return {"error": last[0].strip()[:300]}
    line = [ln for ln in out.splitlines() if ln.startswith("{")][-1]
    result: dict[str, Any] = json.loads(line)
    result["peak_rss_mib"] = result.pop("peak_kib") / 1024  # the child's own VmHWM
    return result


def _empty_bucket(client: Any) -> None:
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        for obj in page.get("Contents", []):
            client.delete_object(Bucket=BUCKET, Key=obj["Key"])


def _cases(args: argparse.Namespace) -> list[tuple[str, int, str]]:
    """(case, rows, label) of every row, in the order they run."""
    cases = [
        ("idle", 0, "idle interpreter (operator imports)"),
        ("copy_to_nothing", args.rows, "COPY TO STDOUT -> nothing (source limit)"),
        ("fetchmany_recipe", args.recipe_rows, "fetchmany + csv + smart_open (recipe)"),
        ("pandas_read_sql", args.pandas_rows, "pandas read_sql + upload (SqlToS3Operator)"),
        ("copy_smart_open", args.rows, "COPY -> smart_open, sequential"),
        ("operator_csv", args.rows, "operator csv"),
        ("operator_csv", args.small_rows, "operator csv (small, memory check)"),
        ("operator_csv_zstd", args.rows, "operator csv + zstd"),
        ("operator_jsonl", args.rows, "operator jsonl"),
        ("operator_parquet", args.rows, "operator parquet (snappy)"),
        ("operator_csv@before_budget", args.rows, "operator csv, defaults before the budget"),
        ("operator_parquet@before_budget", args.rows, "operator parquet, defaults before the budget"),
    ]
    for round_ in range(1, args.split_rounds + 1):
        order = [("split_completed", "completed as written"), ("split_staged", "staged + commit")]
        for case, how in order if round_ % 2 else order[::-1]:
            cases.append((case, args.rows, f"csv {args.split_mib} MiB parts, {how} #{round_}"))
    cases += [(f"job_commit_{n}", args.commit_rows, f"job commit of {n} staged file(s)") for n in (1, 10, 100)]
    cases += [  # the peers, on the whole table (it holds --rows rows)
        ("duckdb_parquet", args.rows, "DuckDB parquet, 2 threads"),
        ("duckdb_csv", args.rows, "DuckDB csv, 2 threads"),
        ("duckdb_parquet@128MB", args.rows, "DuckDB parquet, memory_limit='128MB'"),
        ("dlt_parquet", args.rows, "dlt sql_table (pyarrow) -> filesystem parquet"),
    ]
    return cases


def _measure_store(args: argparse.Namespace, postgres: Any, s3: S3Service) -> dict[str, dict[str, Any]]:
    """Every case on the store ``s3`` (a fresh bucket), each in a child: ``{label: row}``."""
    from tests.support import devservices

    client = _client(s3)
    with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
        client.create_bucket(Bucket=BUCKET)
    rows: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-export-airflow-") as airflow_home:
        env = {
            **os.environ,
            **service_env(s3),
            **devservices.airflow_connection_env(devservices.DevServices(postgres=postgres, s3=s3)),
            "AIRFLOW_HOME": airflow_home,
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "PYTHONPATH": os.getcwd(),
            "BENCH_SPLIT_MIB": str(args.split_mib),
        }
        for case, n, label in _cases(args):
            print(f"running {label} at {n:,} rows ...", file=sys.stderr, flush=True)
            r = _child(case, n, postgres.uri, env)
            r.update(case=case, rows=n)
            rows[label] = r
            _empty_bucket(client)
        print("running the type-fidelity exports ...", file=sys.stderr, flush=True)
        fidelity = _child("fidelity", 0, postgres.uri, env)
        _empty_bucket(client)
    copy_nothing = next((r for r in rows.values() if r["case"] == "copy_to_nothing"), {})
    csv_bytes_per_row = copy_nothing["bytes"] / copy_nothing["rows"] if "bytes" in copy_nothing else None
    for r in rows.values():
        if r.get("error") or r.get("skipped") or csv_bytes_per_row is None:
            continue
        if r["case"].startswith("job_commit_"):
            r["mb_per_s"] = 0.0  # seconds is the commit call alone; throughput is not the point
        else:
            r["mb_per_s"] = r["rows"] * csv_bytes_per_row / 1e6 / r["seconds"] if r["seconds"] else 0.0
        r["out_mb"] = r["bytes"] / 1e6
    rows[FIDELITY] = fidelity.get("fidelity") or {"(the fidelity run)": {"error": str(fidelity.get("error"))}}
    return rows


def _ratios(args: argparse.Namespace, rows: dict[str, dict[str, Any]]) -> dict[str, tuple[str, str]]:
    """One store's ratios: ``{label: (value shown, target)}``; "n/a" where a row they need failed."""
    by = {(r["case"], r["rows"]): r for r in rows.values() if not r.get("error") and not r.get("skipped")}

    def mbs(case: str, n: int = args.rows) -> float:
        return float(by[(case, n)]["mb_per_s"])

    def rss(case: str, n: int = args.rows) -> float:
        return float(by[(case, n)]["peak_rss_mib"])

    def budget(fmt: str) -> str:
        now, before = f"operator_{fmt}", f"operator_{fmt}@before_budget"
        return f"{mbs(now) / mbs(before):.2f} ({rss(now):.0f} vs {rss(before):.0f} MiB)"

    def out(case: str) -> float:
        return float(by[(case, args.rows)]["out_mb"])

    def split() -> str:  # every round's row (``by`` keeps one per case)
        completed = [r["mb_per_s"] for r in rows.values() if r["case"] == "split_completed" and not r.get("error")]
        staged = [r["mb_per_s"] for r in rows.values() if r["case"] == "split_staged" and not r.get("error")]
        return f"{sum(staged) / sum(completed):.2f} ({len(staged)} rounds)"

    formulas: dict[str, tuple[Callable[[], str], str]] = {
        "operator csv / COPY-to-nothing": (lambda: f"{mbs('operator_csv') / mbs('copy_to_nothing'):.2f}", ">= 0.50"),
        "operator csv / sequential COPY->smart_open": (
            lambda: f"{mbs('operator_csv') / mbs('copy_smart_open'):.2f}",
            ">= 2.0",
        ),
        "operator parquet / fetchmany recipe": (
            lambda: f"{mbs('operator_parquet') / mbs('fetchmany_recipe', args.recipe_rows):.2f}",
            ">= 3.0",
        ),
        f"peak RSS csv {args.rows:,} / {args.small_rows:,} rows": (
            lambda: f"{rss('operator_csv') / rss('operator_csv', args.small_rows):.2f}",
            "<= 1.25",
        ),
        "csv: 128 MiB budget / before it, MB/s (peak RSS)": (lambda: budget("csv"), ">= 0.90"),
        "parquet: 128 MiB budget / before it, MB/s (peak RSS)": (lambda: budget("parquet"), ">= 0.90"),
        "split csv: staged+commit / completed as written": (split, ">= 0.95"),
        f"peak RSS csv {args.rows:,} rows - idle interpreter": (
            lambda: f"{rss('operator_csv') - rss('idle', 0):.0f} MiB",
            "< 150 MiB",
        ),
        "operator parquet / DuckDB parquet (2 threads), speed": (
            lambda: f"{mbs('operator_parquet') / mbs('duckdb_parquet'):.2f}",
            ">= 1.0",
        ),
        "operator csv / DuckDB csv (2 threads), speed": (
            lambda: f"{mbs('operator_csv') / mbs('duckdb_csv'):.2f}",
            ">= 1.1",
        ),
        "operator parquet / DuckDB parquet, bytes written": (
            lambda: f"{out('operator_parquet') / out('duckdb_parquet'):.2f}",
            "<= 1.05",
        ),
        "operator parquet / dlt parquet, speed": (
            lambda: f"{mbs('operator_parquet') / mbs('dlt_parquet'):.2f}",
            ">= 1.0",
        ),
    }
    shown: dict[str, tuple[str, str]] = {}
    for label, (formula, target) in formulas.items():
        try:
            shown[label] = (formula(), f"({target})")
        except (KeyError, ZeroDivisionError):
            shown[label] = ("n/a", f"({target})")
    return shown


COLUMNS = [
    Column("seconds", "seconds", lambda v: f"{v:.2f}", 7),
    Column("MB/s", "mb_per_s", lambda v: f"{v:.1f}", 6),
    Column("out MB", "out_mb", lambda v: f"{v:.1f}", 6),
    Column("peak RSS MiB", "peak_rss_mib", lambda v: f"{v:.0f}", 12),
    Column("commit ms", "commit_ms", lambda v: f"{v:.1f}", 9),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=3_000_000)
    parser.add_argument("--small-rows", type=int, default=300_000)
    parser.add_argument("--recipe-rows", type=int, default=300_000)
    parser.add_argument("--pandas-rows", type=int, default=300_000)
    parser.add_argument("--split-mib", type=int, default=SPLIT_MIB, help="file size of the split export")
    parser.add_argument("--split-rounds", type=int, default=2, help="alternating rounds of the two split cases")
    parser.add_argument("--commit-rows", type=int, default=1000, help="rows per staged file of the job commit")
    add_store_argument(parser)
    parser.add_argument("--child")
    parser.add_argument("--pg-uri")
    args = parser.parse_args()
    if args.child:
        from tests.support.devservices import start_s3
        from tests.support.memory import peak_rss_kib

        measured = run_case(args.child, args.rows, start_s3(), args.pg_uri)  # the store of S3STREAM_S3_*
        print(json.dumps({**measured, "peak_kib": peak_rss_kib()}), flush=True)
        return 0

    import psycopg

    from tests.support import devservices

    postgres = devservices.start_postgres()
    try:
        print(f"loading {args.rows:,} rows into {TABLE} ...", file=sys.stderr, flush=True)
        with psycopg.connect(postgres.uri, autocommit=True) as conn:
            conn.execute(orders_table_sql(TABLE, args.rows).encode())
            conn.execute(peers.types_table_sql(TYPES_TABLE).encode())
        results = run_on_stores(args, lambda _store, s3: _measure_store(args, postgres, s3))
    finally:
        postgres.stop()
    fidelity = {store: rows.pop(FIDELITY, {}) for store, rows in results.items()}
    ratios = {store: _ratios(args, rows) for store, rows in results.items()}
    values = {store: {label: value for label, (value, _) in shown.items()} for store, shown in ratios.items()}
    targets = {label: target for shown in ratios.values() for label, (_, target) in shown.items()}
    print_side_by_side(
        f"Export of {args.rows:,} orders rows to S3 (MB/s: CSV-equivalent MB per second; "
        f"peak RSS: each child's VmHWM), one run per store",
        results,
        COLUMNS,
        shared=[Column("rows", "rows", lambda v: f"{v:,}", 10)],
        notes=ratio_notes("ratios in this run (target):", values, targets),
    )
    peers.print_fidelity("Parquet export of the exact-types table", fidelity)
    missing = peers.missing_peers()
    if missing:
        print(f"\nthe peers are missing ({', '.join(missing)}): {peers.INSTALL_HINT}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
