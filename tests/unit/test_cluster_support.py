"""``make cluster``'s pure parts: the broker rule, sizes, database URLs, joining a cgroup."""

from __future__ import annotations

import pytest

from tests.tools import cluster
from tests.tools.cluster import MemoryCgroup, choose_broker, parse_memory

METADATA = "postgresql+psycopg://postgres@127.0.0.1:5432/s3stream_cluster_x"


def test_broker_is_the_redis_named_by_s3stream_redis_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("S3STREAM_REDIS_URL", "redis://redis.example:6380/2")
    broker = choose_broker(METADATA, key_prefix="c1:")
    assert (broker.kind, broker.url) == ("redis", "redis://redis.example:6380/2")
    assert broker.env["AIRFLOW__CELERY__BROKER_URL"] == broker.url
    assert broker.env["AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__GLOBAL_KEYPREFIX"] == "c1:"  # clusters never mix


def test_broker_is_local_redis_when_it_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("S3STREAM_REDIS_URL", raising=False)
    monkeypatch.setattr(cluster, "_redis_answers", lambda host, port: (host, port) == ("127.0.0.1", 6379))
    assert choose_broker(METADATA, key_prefix="c1:").url == "redis://127.0.0.1:6379/0"


def test_broker_falls_back_to_the_sqlalchemy_transport_on_the_cluster_database(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("S3STREAM_REDIS_URL", raising=False)
    monkeypatch.setattr(cluster, "_redis_answers", lambda host, port: False)
    broker = choose_broker(METADATA, key_prefix="c1:")
    assert (broker.kind, broker.url) == ("sqlalchemy", "sqla+" + METADATA)
    assert dict(broker.env) == {"AIRFLOW__CELERY__BROKER_URL": "sqla+" + METADATA}


def test_metadata_url_moves_a_unix_socket_directory_to_the_query() -> None:
    embedded = "postgresql://postgres@%2Ftmp%2Fpg-sock:5499/postgres"
    assert cluster._sqlalchemy_url(embedded, "db1") == "postgresql+psycopg://postgres@/db1?host=/tmp/pg-sock&port=5499"
    tcp = "postgresql://app:p%40ss@127.0.0.1:5432/postgres"
    assert cluster._sqlalchemy_url(tcp, "db1") == "postgresql+psycopg://app:p%40ss@127.0.0.1:5432/db1"


def test_worker_memory_sizes_are_binary_units() -> None:
    assert parse_memory("768M") == parse_memory("768MiB") == parse_memory("805306368") == 768 * 1024**2
    assert parse_memory("1g") == 1024**3
    with pytest.raises(ValueError, match="S3STREAM_WORKER_MEMORY"):
        parse_memory("768 megs")


def test_a_wrapped_worker_joins_its_cgroup_before_it_execs(tmp_path: object) -> None:
    group = MemoryCgroup(path=cluster.Path("/sys/fs/cgroup/memory/x"), version=1, limit_bytes=1)
    argv = group.wrap(["python", "-m", "airflow", "celery", "worker"])
    assert argv[:3] == ["/bin/sh", "-c", 'echo $$ > /sys/fs/cgroup/memory/x/cgroup.procs && exec "$@"']
    assert argv[3:] == ["sh", "python", "-m", "airflow", "celery", "worker"]


def test_workers_report_the_hostname_they_were_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(cluster.HOSTNAME_ENV, "s3stream-worker-2")
    assert cluster.worker_hostname() == "s3stream-worker-2"
