"""The peers of the export and load benchmarks: DuckDB (``postgres`` + ``httpfs``) and dlt.

They come from the ``bench`` extra (``pip install -e '.[bench]'``), never from the package's
runtime dependencies. DuckDB's extensions are the PyPI wheels ``duckdb-extension-postgres`` and
``duckdb-extension-httpfs``, installed from the wheel's file through
``duckdb_extensions.import_extension`` into a throwaway extension directory, with
``autoinstall_known_extensions`` and ``autoload_known_extensions`` off: nothing is downloaded at
run time. Each peer reaches the benchmark's store (moto or RGW) with path-style URLs over http,
the store's key pair and region.

The type-fidelity check moves a small table of the exact-types columns (bigint, two texts,
numeric(12,2), timestamptz, jsonb, boolean) through each tool and says, per column, whether the
type survived: for an export, the Arrow type of the Parquet file read back; for a load, the
Postgres column type and the values after the load.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

__all__ = [
    "FIDELITY_COLUMNS",
    "INSTALL_HINT",
    "PeerStore",
    "arrow_fidelity",
    "duckdb_connect",
    "duckdb_export",
    "duckdb_load",
    "dlt_export",
    "dlt_load",
    "load_fidelity",
    "missing_peers",
    "parquet_schema",
    "print_fidelity",
    "stored_bytes",
    "types_table_sql",
]

INSTALL_HINT = "not installed: pip install -e '.[bench]'"
PEER_MODULES = ("duckdb", "duckdb_extensions", "duckdb_extension_postgres", "duckdb_extension_httpfs", "dlt")
SHORT_TYPES = {"timestamp with time zone": "timestamptz", "character varying": "varchar"}  # as the table shows them
# the exact-types columns and the Postgres type each must keep: the benchmark table's types, plus jsonb and boolean
FIDELITY_COLUMNS = {
    "id": "bigint",
    "customer": "text",
    "status": "text",
    "amount": "numeric(12,2)",
    "created_at": "timestamp with time zone",
    "attrs": "jsonb",
    "paid": "boolean",
}


def _peer(module: str) -> Any:
    """A module of the ``bench`` extra, imported by name: the package's type check then needs no
    peer installed (``ModuleNotFoundError`` names the module, and :data:`INSTALL_HINT` says how)."""
    return importlib.import_module(module)


def missing_peers() -> list[str]:
    """The peer modules of the ``bench`` extra that are not importable here (empty: all are)."""
    return [name for name in PEER_MODULES if importlib.util.find_spec(name) is None]


@dataclass(frozen=True)
class PeerStore:
    """The S3 endpoint a peer writes to or reads from: endpoint URL, key pair and region."""

    endpoint_url: str
    access_key_id: str
    secret_access_key: str
    region: str

    @classmethod
    def of(cls, s3: Any) -> PeerStore:
        """The store of a :class:`tests.support.devservices.S3Service`."""
        return cls(s3.endpoint_url, s3.access_key_id, s3.secret_access_key, s3.region)

    @property
    def host(self) -> str:
        """``host:port`` of the endpoint, as DuckDB's ``ENDPOINT`` wants it."""
        return self.endpoint_url.split("://", 1)[-1].rstrip("/")

    @property
    def use_ssl(self) -> bool:
        return self.endpoint_url.startswith("https://")

    def dlt_credentials(self) -> Any:
        """dlt's ``AwsCredentials`` for this endpoint (path-style URLs)."""
        return _peer("dlt.common.configuration.specs").AwsCredentials(
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            region_name=self.region,
            endpoint_url=self.endpoint_url,
            s3_url_style="path",
        )


def stored_bytes(client: Any, bucket: str, prefix: str) -> int:
    """The sum of the sizes of the objects under ``prefix`` in ``bucket``."""
    total = 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        total += sum(int(obj["Size"]) for obj in page.get("Contents", []))
    return total


def parquet_schema(client: Any, bucket: str, prefix: str) -> Any:
    """The Arrow schema of the first Parquet object under ``prefix`` (``ValueError`` naming the prefix if none)."""
    import io

    import pyarrow.parquet as pq

    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            if obj["Key"].endswith(".parquet"):
                body = client.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
                return pq.read_schema(io.BytesIO(body))
    raise ValueError(f"no Parquet object under s3://{bucket}/{prefix}")


# -- DuckDB ---------------------------------------------------------------------------------


def duckdb_connect(store: PeerStore, pg_uri: str, *, threads: int = 2, memory_limit: str | None = None) -> Any:
    """A DuckDB connection with the postgres and httpfs extensions loaded from their PyPI wheels
    (nothing downloaded), an S3 secret for ``store`` and the Postgres database attached as ``pg``."""
    duckdb, duckdb_extensions = _peer("duckdb"), _peer("duckdb_extensions")

    extension_directory = tempfile.mkdtemp(prefix="bench-duckdb-ext-")  # INSTALL copies the wheel's file here
    config: dict[str, Any] = {
        "threads": threads,
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
        "extension_directory": extension_directory,
    }
    if memory_limit:
        config["memory_limit"] = memory_limit
    con = duckdb.connect(":memory:", config=config)
    try:
        for name in ("postgres", "httpfs"):
            duckdb_extensions.import_extension(name, con=con)
            con.execute(f"LOAD {name}")
    finally:  # loaded (mapped): the 60 MB copies are not needed any more
        shutil.rmtree(extension_directory, ignore_errors=True)
    con.execute(
        "CREATE SECRET bench_store (TYPE s3, KEY_ID ?, SECRET ?, REGION ?, ENDPOINT ?, URL_STYLE 'path', USE_SSL ?)",
        [store.access_key_id, store.secret_access_key, store.region, store.host, store.use_ssl],
    )
    con.execute(f"ATTACH '{pg_uri}' AS pg (TYPE postgres)")
    return con


def duckdb_export(con: Any, table: str, url: str, file_format: str) -> float:
    """``COPY (SELECT * FROM pg.public.<table>) TO '<url>'`` as Parquet or CSV; the seconds of the COPY."""
    options = "FORMAT parquet" if file_format == "parquet" else "FORMAT csv, HEADER true"
    started = time.monotonic()
    con.execute(f"COPY (SELECT * FROM pg.public.{table}) TO '{url}' ({options})")
    return time.monotonic() - started


def duckdb_load(con: Any, table: str, url: str) -> float:
    """``INSERT INTO pg.public.<table> SELECT * FROM read_parquet('<url>')`` (one transaction); its seconds."""
    started = time.monotonic()
    con.execute(f"INSERT INTO pg.public.{table} SELECT * FROM read_parquet('{url}')")
    return time.monotonic() - started


# -- dlt ------------------------------------------------------------------------------------


def _dlt_environment() -> Path:
    """No telemetry, no Airflow Variables as a config source (dlt looks them up whenever Airflow is
    importable, and the benchmarks' Airflow has no metadata database), and a throwaway working
    directory for dlt's pipelines."""
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    os.environ.setdefault("PROVIDERS__ENABLE_AIRFLOW_SECRETS", "false")
    return Path(tempfile.mkdtemp(prefix="bench-dlt-"))


def dlt_export(store: PeerStore, pg_uri: str, table: str, bucket_url: str) -> float:
    """dlt's ``sql_table`` (pyarrow backend) to a ``filesystem`` destination at ``bucket_url``,
    Parquet; the seconds of ``pipeline.run``."""
    workdir = _dlt_environment()
    dlt, filesystem = _peer("dlt"), _peer("dlt.destinations").filesystem
    sql_table = _peer("dlt.sources.sql_database").sql_table

    destination = filesystem(bucket_url=bucket_url, credentials=store.dlt_credentials())
    pipeline = dlt.pipeline(
        pipeline_name="bench_export", destination=destination, dataset_name="dlt", pipelines_dir=str(workdir)
    )
    source = sql_table(credentials=_sqlalchemy_uri(pg_uri), table=table, backend="pyarrow")
    started = time.monotonic()
    try:
        pipeline.run(source, loader_file_format="parquet")
        return time.monotonic() - started
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def dlt_load(store: PeerStore, pg_uri: str, bucket_url: str, file_glob: str, dataset: str) -> float:
    """dlt's ``filesystem`` source and ``read_parquet`` (the objects ``file_glob`` names under
    ``bucket_url``) to Postgres, table ``<dataset>.rows``; the seconds of ``pipeline.run``."""
    workdir = _dlt_environment()
    dlt, postgres = _peer("dlt"), _peer("dlt.destinations").postgres
    filesystem, read_parquet = _peer("dlt.sources.filesystem").filesystem, _peer("dlt.sources.filesystem").read_parquet

    files = filesystem(bucket_url=bucket_url, credentials=store.dlt_credentials(), file_glob=file_glob)
    source = (files | read_parquet()).with_name("rows")
    pipeline = dlt.pipeline(
        pipeline_name="bench_load",
        destination=postgres(credentials=_with_password(pg_uri)),
        dataset_name=dataset,
        pipelines_dir=str(workdir),
    )
    started = time.monotonic()
    try:
        pipeline.run(source)
        return time.monotonic() - started
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _with_password(pg_uri: str) -> str:
    """``pg_uri`` with a placeholder password if it has none: dlt's Postgres credentials insist on
    one, and a server that trusts the user (the embedded one) never asks for it."""
    import urllib.parse

    parts = urllib.parse.urlsplit(pg_uri)
    if parts.password is not None or "@" not in parts.netloc:
        return pg_uri
    user, _, host = parts.netloc.rpartition("@")
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:unused@{host}"))


def _sqlalchemy_uri(pg_uri: str) -> str:
    """``pg_uri`` for SQLAlchemy with psycopg 3 (the driver the package uses)."""
    for scheme in ("postgresql://", "postgres://"):
        if pg_uri.startswith(scheme):
            return "postgresql+psycopg://" + pg_uri[len(scheme) :]
    return pg_uri


# -- type fidelity --------------------------------------------------------------------------


def types_table_sql(name: str, rows: int = 1000) -> str:
    """SQL that (re)creates ``name`` with the exact-types columns of :data:`FIDELITY_COLUMNS`, ``rows`` rows."""
    return f"""
DROP TABLE IF EXISTS {name};
CREATE TABLE {name} AS
SELECT g::int8 AS id,
       md5(g::text) AS customer,
       (ARRAY['new', 'paid', 'shipped', 'returned'])[1 + g % 4] AS status,
       (g % 100000 * 1.37)::numeric(12, 2) AS amount,
       timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second' AS created_at,
       jsonb_build_object('n', g, 'tags', jsonb_build_array('a', g % 3)) AS attrs,
       g % 3 = 0 AS paid
FROM generate_series(1, {int(rows)}) g;
"""


def _expected_arrow() -> dict[str, Callable[[Any], bool]]:
    import pyarrow as pa

    def text(t: Any) -> bool:
        return bool(t in (pa.string(), pa.large_string(), pa.string_view()))

    return {
        "id": lambda t: bool(t == pa.int64()),
        "customer": text,
        "status": text,
        "amount": lambda t: bool(t == pa.decimal128(12, 2)),
        "created_at": lambda t: pa.types.is_timestamp(t) and t.tz in ("UTC", "+00:00", "Etc/UTC"),
        "attrs": lambda t: isinstance(t, pa.JsonType),
        "paid": lambda t: bool(t == pa.bool_()),
    }


def arrow_fidelity(schema: Any) -> dict[str, str]:
    """Per exact-types column of a Parquet file's Arrow ``schema``: ``yes``, or ``no: <the type it got>``."""
    cells: dict[str, str] = {}
    for name, exact in _expected_arrow().items():
        if name not in schema.names:
            cells[name] = "no: missing"
            continue
        arrow_type = schema.field(name).type
        cells[name] = "yes" if exact(arrow_type) else f"no: {arrow_type}"
    return cells


def load_fidelity(conn: Any, source: str, target: str) -> dict[str, str]:
    """Per exact-types column of the loaded ``target`` (``schema.table``): ``yes`` when its Postgres
    type is the source's and every value equals the source row's (joined on ``id``), else what differs."""
    schema, _, table = target.rpartition(".")
    types = dict(
        conn.execute(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
            "WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped",
            [f"{schema or 'public'}.{table}"],
        ).fetchall()
    )
    src = {row[0]: row for row in conn.execute(f"SELECT {', '.join(FIDELITY_COLUMNS)} FROM {source}").fetchall()}
    present = [c for c in FIDELITY_COLUMNS if c in types]
    got = conn.execute(f"SELECT {', '.join(present)} FROM {target}").fetchall() if "id" in present else []
    cells: dict[str, str] = {}
    for name, expected_type in FIDELITY_COLUMNS.items():
        if name not in types:
            cells[name] = "no: missing"
            continue
        index, source_index = present.index(name), list(FIDELITY_COLUMNS).index(name)
        differ = sum(1 for row in got if not _same(src.get(row[0], (None,) * 7)[source_index], row[index]))
        problems: list[str] = []
        if types[name] != expected_type:
            problems.append(SHORT_TYPES.get(str(types[name]), str(types[name])))
        if differ or len(got) != len(src):
            problems.append(f"{differ + abs(len(src) - len(got))} differ")
        cells[name] = "yes" if not problems else "no: " + ", ".join(problems)
    return cells


def _same(expected: Any, got: Any) -> bool:
    if isinstance(expected, Decimal) and isinstance(got, Decimal | float | int):
        return Decimal(str(got)) == expected
    return bool(type(expected) is type(got) and expected == got)


def print_fidelity(title: str, results: dict[str, dict[str, dict[str, str]]]) -> None:
    """Print ``{store: {tool: {column: cell}}}`` as one table per store: a row per tool, a column per
    exact-types column (``yes`` or what it became). A tool that failed carries ``{"error": text}``."""
    columns: Sequence[str] = list(FIDELITY_COLUMNS)
    heads = {c: f"{c} {SHORT_TYPES.get(FIDELITY_COLUMNS[c], FIDELITY_COLUMNS[c])}" for c in columns}
    for store, tools in results.items():
        rows = [cells for cells in tools.values() if not cells.get("error")]
        widths = {c: max([len(heads[c]), *(len(cells.get(c, "")) for cells in rows)]) for c in columns}
        print(f"\n{title} ({store}): does each exact-types column survive the round trip?")
        print(f"{'':<20} " + " ".join(f"{heads[c]:<{widths[c]}}" for c in columns))
        for tool, cells in tools.items():
            if cells.get("error"):
                print(f"{tool:<20} {cells['error']}")
            else:
                print(f"{tool:<20} " + " ".join(f"{cells.get(c, ''):<{widths[c]}}" for c in columns))
