"""Session-wide real services for the test suite.

Postgres and S3 are found or started once per session by :mod:`tests.support.devservices`
(``S3STREAM_POSTGRES_URI`` / local 127.0.0.1:5432 / embedded; ``S3STREAM_S3_ENDPOINT`` / the
store of ``--store``: ``moto``, the default, or ``rgw``, a throwaway Ceph RADOS Gateway). The store
matrix is the same tests run once per store (``make test-stores``); where stores differ, a test
asserts each store's behaviour by ``s3.origin``. Each test gets its own bucket and its own schema,
so tests never see each other's data.
Airflow connections ``aws_default`` and ``postgres_default`` point at the same services through
``AIRFLOW_CONN_*`` variables, exactly as a deployment would configure them.
"""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

# Airflow reads its home at import time: give the whole session a throwaway one. An xdist worker
# inherits the controller's environment: it makes a home of its own (its own SQLite metadata DB)
# unless AIRFLOW_HOME was set before the run.
_OWN_HOME = "S3STREAM_TEST_AIRFLOW_HOME"  # the home this file made, so a worker knows it may replace it
if "AIRFLOW_HOME" not in os.environ or os.environ["AIRFLOW_HOME"] == os.environ.get(_OWN_HOME):
    os.environ["AIRFLOW_HOME"] = os.environ[_OWN_HOME] = tempfile.mkdtemp(prefix="s3stream-airflow-home-")
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "False")

from tests.support import devservices  # noqa: E402 - after AIRFLOW_HOME is set
from tests.support.s3proxy import S3Proxy  # noqa: E402

# Every exception a test catches with pytest.raises is checked for loops in its chain.
pytest_plugins = ["tests.support.error_chains"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--store",
        default=None,
        choices=devservices.STORES,
        help="the S3 implementation the tests run against (default: S3STREAM_STORE, else moto)",
    )


def pytest_report_header(config: pytest.Config) -> str:
    return f"S3 store: {devservices.selected_store(config.getoption('--store'))}"


# --- one store per run under xdist ------------------------------------------------------------
# moto starts in a fraction of a second: each xdist worker runs its own, in-process, as a run
# without xdist does. Ceph RGW takes a cluster's start and two daemons' CPU: the controller starts
# one for the whole run before the workers start, and hands it to them in SHARED_S3 (they inherit
# the environment); their tests keep apart by their own buckets.
SHARED_S3 = "S3STREAM_TEST_SHARED_S3"  # the run's one S3 endpoint, as S3Service.to_json() describes it
_shared_store = pytest.StashKey[devservices.S3Service]()


def _runs_workers(config: pytest.Config) -> bool:
    """This process is an xdist controller that will start workers."""
    return bool(getattr(config.option, "numprocesses", None)) and not hasattr(config, "workerinput")


def pytest_configure(config: pytest.Config) -> None:
    store = devservices.selected_store(config.getoption("--store"))
    if _runs_workers(config) and store == "rgw" and not os.environ.get("S3STREAM_S3_ENDPOINT"):
        service = config.stash[_shared_store] = devservices.start_s3(store)
        os.environ[SHARED_S3] = service.to_json()


def pytest_unconfigure(config: pytest.Config) -> None:
    if _shared_store in config.stash:
        os.environ.pop(SHARED_S3, None)
        config.stash[_shared_store].stop()


# --- what runs apart under xdist (--dist loadgroup) --------------------------------------------
# Tests of one xdist_group run on one worker, one after another. ISOLATED measures memory, time or
# a whole cluster's load, so none of them runs beside another of them. A module whose module-scoped
# fixture starts an Airflow deployment stays on one worker, so it starts once. The demo's tests
# share the demo's own database.
ISOLATED = "isolated"
XDIST_GROUPS: dict[str, str] = {
    "tests/e2e/test_cluster.py": ISOLATED,
    "tests/integration/test_export_memory.py": ISOLATED,
    "tests/integration/test_load_process.py": ISOLATED,
    "tests/integration/test_memory_budget.py": ISOLATED,
    "tests/integration/test_zip_verify_large.py": ISOLATED,
    "tests/integration/test_zip_verify_memory.py": ISOLATED,
    "tests/integration/test_multipart_upload.py::"
    "test_peak_rss_of_a_1gb_streamed_upload_stays_within_the_bound": ISOLATED,
    "tests/unit/test_readahead.py::test_adaptive_read_ahead_beats_one_stream_through_latency": ISOLATED,
    "tests/e2e/test_demo.py": "demo-database",
    "tests/e2e/test_playground.py": "demo-database",
    "tests/e2e/test_example_dags.py": "tests/e2e/test_example_dags.py",
    "tests/e2e/test_load_on_asset.py": "tests/e2e/test_load_on_asset.py",
    "tests/e2e/test_real_airflow.py": "tests/e2e/test_real_airflow.py",
    "tests/e2e/test_ui_view.py": "tests/e2e/test_ui_view.py",
}


def xdist_group_of(nodeid: str) -> str | None:
    """The xdist group :data:`XDIST_GROUPS` gives ``nodeid``: by its test (parameters aside), else its module."""
    test = nodeid.split("[", 1)[0]
    return XDIST_GROUPS.get(test) or XDIST_GROUPS.get(test.split("::", 1)[0])


@pytest.hookimpl(tryfirst=True)  # before xdist reads the marks to group the tests
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        group = xdist_group_of(item.nodeid)
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadgroup`` that also groups by :data:`XDIST_GROUPS` on the controller, from the node ids.

    xdist 3.8 carries a test's xdist_group mark to the controller as an ``@group`` suffix it writes
    into the node id, which pytest 9.2 no longer reads back (pytest-dev/pytest-xdist#1386): the
    marks alone group nothing there.
    """
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling  # type: ignore[import-untyped]

    class TableGroupScheduling(LoadGroupScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            scope = str(super()._split_scope(nodeid))
            return scope if scope != nodeid else xdist_group_of(nodeid) or nodeid

    return TableGroupScheduling(config, log)


@pytest.fixture(scope="session")
def services(request: pytest.FixtureRequest) -> Iterator[devservices.DevServices]:
    shared = os.environ.get(SHARED_S3)
    store = devservices.selected_store(request.config.getoption("--store"))
    s3 = devservices.S3Service.from_json(shared) if shared else devservices.start_s3(store)
    svc = devservices.DevServices(postgres=devservices.start_postgres(), s3=s3)
    yield svc
    svc.stop()


@pytest.fixture(scope="session")
def s3(services: devservices.DevServices) -> devservices.S3Service:
    return services.s3


@pytest.fixture(scope="session")
def s3_client(s3: devservices.S3Service) -> Any:
    return s3.client()


@pytest.fixture(scope="session")
def pg_uri(services: devservices.DevServices) -> str:
    return services.postgres.uri


@pytest.fixture(scope="session", autouse=True)
def airflow_connections(services: devservices.DevServices) -> Iterator[dict[str, str]]:
    """Point ``aws_default`` and ``postgres_default`` at the session's services."""
    env = devservices.airflow_connection_env(services)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield env
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _empty_bucket(client: Any, bucket: str) -> None:
    for upload in client.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
        client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
    for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket):  # versioned buckets too
        for obj in page.get("Versions", []) + page.get("DeleteMarkers", []):
            client.delete_object(Bucket=bucket, Key=obj["Key"], VersionId=obj["VersionId"])


@pytest.fixture
def bucket(s3_client: Any) -> Iterator[str]:
    """A fresh, empty bucket for this test only; emptied and removed afterwards."""
    name = f"test-{uuid.uuid4().hex[:20]}"
    s3_client.create_bucket(Bucket=name)
    yield name
    _empty_bucket(s3_client, name)
    s3_client.delete_bucket(Bucket=name)


@pytest.fixture
def pg_conn(pg_uri: str) -> Iterator[Any]:
    """An autocommit psycopg connection whose search_path is a schema private to this test."""
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_uri, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
        conn.execute(f"SET search_path TO {schema}, public")
        yield conn
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def s3_proxy(s3: devservices.S3Service) -> Iterator[S3Proxy]:
    """A recording, fault-injecting proxy in front of the session's S3 endpoint."""
    with S3Proxy(s3.endpoint_url) as proxy:
        yield proxy


@pytest.fixture
def proxy_aws_conn(s3_proxy: S3Proxy, s3: devservices.S3Service, monkeypatch: pytest.MonkeyPatch) -> Callable[..., str]:
    """Factory: an Airflow ``aws`` connection that reaches S3 through ``s3_proxy``.

    ``proxy_aws_conn("aws_proxy", retries={"total_max_attempts": 1})`` sets
    ``AIRFLOW_CONN_AWS_PROXY`` for this test (keyword arguments become the extra's
    ``config_kwargs``) and returns the connection id.
    """

    def make(conn_id: str = "aws_proxy", **config_kwargs: Any) -> str:
        extra: dict[str, Any] = {"endpoint_url": s3_proxy.endpoint_url, "region_name": s3.region}
        if config_kwargs:
            extra["config_kwargs"] = config_kwargs
        conn = {"conn_type": "aws", "login": s3.access_key_id, "password": s3.secret_access_key, "extra": extra}
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
        return conn_id

    return make
