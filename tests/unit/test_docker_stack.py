"""The docker stack, checked without a Docker engine: the compose file and Dockerfile as data.

The Airflow processes, their executor settings and the workers' concurrency and memory cap are
read from :mod:`tests.tools.stack_spec`, the description ``make cluster`` runs natively
(:mod:`tests.tools.cluster`): the compose file and the cluster are both checked against it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.devservices import DevServices, PostgresService, S3Service
from tests.tools import stack_spec
from tests.tools.cluster import Cluster, parse_memory

DOCKER = Path(__file__).resolve().parents[2] / "docker"
AIRFLOW_SERVICES = tuple(component.service for component in stack_spec.AIRFLOW_COMPONENTS)
WORKERS = stack_spec.WORKER_SERVICES
PINNED_TAG = re.compile(r"^[\w./-]+:(?!latest$)[\w.-]*\d[\w.-]*$")  # a tag with a version number, not "latest"


def _memory_bytes(value: str | int) -> int:
    return value if isinstance(value, int) else parse_memory(value)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load((DOCKER / "docker-compose.yaml").read_text())
    assert isinstance(loaded, dict)
    return loaded


@pytest.fixture(scope="module")
def compose_services(compose: dict[str, Any]) -> dict[str, Any]:
    return dict(compose["services"])


def test_stack_has_every_airflow_component_celery_workers_and_backing_services(
    compose_services: dict[str, Any],
) -> None:
    expected = {*AIRFLOW_SERVICES, *WORKERS, "airflow-init", "postgres", "redis", "s3", "s3-create-bucket"}
    assert expected <= set(compose_services)
    commands = {name: compose_services[name].get("command") for name in (*AIRFLOW_SERVICES, *WORKERS)}
    assert commands == {
        **{component.service: component.command for component in stack_spec.AIRFLOW_COMPONENTS},
        **dict.fromkeys(WORKERS, stack_spec.WORKER_COMMAND),
    }
    assert "api-server" in commands.values() and "triggerer" in commands.values()
    assert len(WORKERS) == stack_spec.WORKER_COUNT == 2
    extra_workers = {name for name in compose_services if "worker" in name} - set(WORKERS)
    assert not extra_workers, f"workers the shared description does not have: {extra_workers}"


def test_every_image_is_pinned_to_a_version(compose_services: dict[str, Any]) -> None:
    for name, service in compose_services.items():
        image = service.get("image")
        assert image, f"service {name} has no image"
        assert PINNED_TAG.match(image), f"service {name}: image {image!r} is not pinned to a version tag"


def test_s3_server_is_not_minio_and_a_bucket_is_created_after_it_is_healthy(compose_services: dict[str, Any]) -> None:
    assert "minio" not in compose_services["s3"]["image"].lower()
    creator = compose_services["s3-create-bucket"]
    assert creator["depends_on"]["s3"]["condition"] == "service_healthy"
    assert "create_bucket" in "\n".join(creator["command"])
    assert "healthcheck" in compose_services["s3"]


def test_dockerfile_starts_from_official_airflow_33_and_installs_this_package() -> None:
    dockerfile = (DOCKER / "Dockerfile").read_text()
    froms = re.findall(r"^FROM\s+(\S+)", dockerfile, flags=re.MULTILINE)
    assert len(froms) == 1
    assert re.fullmatch(r"apache/airflow:3\.3\.\d+(-python3\.\d+)?", froms[0])
    assert re.search(r"pip install .*\"apache-airflow==\$\{AIRFLOW_VERSION\}\" /opt/airflow-s3stream", dockerfile)
    assert "COPY --chown=airflow:0 airflow_s3stream" in dockerfile


def test_airflow_services_build_the_package_image(compose_services: dict[str, Any]) -> None:
    for name in (*AIRFLOW_SERVICES, *WORKERS, "airflow-init"):
        service = compose_services[name]
        assert service["build"]["dockerfile"] == "docker/Dockerfile", name
        assert (DOCKER / service["build"]["context"] / "pyproject.toml").exists(), name


def test_workers_are_celery_at_the_described_concurrency_and_memory_cap(compose_services: dict[str, Any]) -> None:
    assert stack_spec.WORKER_MEMORY_BYTES // stack_spec.MiB == 768  # the small-worker claim the stack demonstrates
    for name in WORKERS:
        worker = compose_services[name]
        assert worker["environment"]["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        # Set explicitly: Celery's default concurrency is the host's CPU count.
        assert worker["environment"]["AIRFLOW__CELERY__WORKER_CONCURRENCY"] == str(stack_spec.WORKER_CONCURRENCY)
        assert stack_spec.WORKER_ENV.items() <= worker["environment"].items(), name
        assert _memory_bytes(worker["mem_limit"]) == stack_spec.WORKER_MEMORY_BYTES, name
        assert _memory_bytes(worker["memswap_limit"]) == stack_spec.WORKER_MEMORY_BYTES, f"{name}: no swap"
        limits = worker["deploy"]["resources"]["limits"]
        assert _memory_bytes(limits["memory"]) == stack_spec.WORKER_MEMORY_BYTES, name
    for name in AIRFLOW_SERVICES:
        assert "mem_limit" not in compose_services[name], f"{name} is not a worker and needs no cap"
        assert "AIRFLOW__CELERY__WORKER_CONCURRENCY" not in compose_services[name]["environment"], name


def test_every_airflow_process_gets_the_described_settings(compose_services: dict[str, Any]) -> None:
    for name in (*AIRFLOW_SERVICES, *WORKERS, "airflow-init"):
        env = compose_services[name]["environment"]
        assert stack_spec.COMMON_AIRFLOW_ENV.items() <= env.items(), name


@pytest.fixture
def native_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cluster:
    """A ``make cluster`` deployment as configured, not started (no process, cgroup or database)."""
    monkeypatch.setenv("S3STREAM_REDIS_URL", "redis://127.0.0.1:1/0")  # no probe of the machine's Redis
    services = DevServices(
        postgres=PostgresService(uri="postgresql://postgres@127.0.0.1:5432/postgres", origin="env"),
        s3=S3Service("http://127.0.0.1:1", "key", "secret", "us-east-1", origin="env"),
    )
    return Cluster(services, tmp_path)


def test_make_cluster_runs_the_same_processes_settings_and_workers_as_the_stack(
    native_cluster: Cluster, compose_services: dict[str, Any]
) -> None:
    stack = native_cluster.stack
    assert stack.components == tuple(compose_services[name]["command"] for name in AIRFLOW_SERVICES)
    assert stack_spec.COMMON_AIRFLOW_ENV.items() <= stack.env.items()
    assert native_cluster.worker_count == len(WORKERS)
    assert native_cluster.worker_memory == _memory_bytes(compose_services[WORKERS[0]]["mem_limit"])
    argv, env = native_cluster.worker_launch("w1")
    assert " ".join(argv).endswith(f"-m airflow {compose_services[WORKERS[0]]['command']} --celery-hostname w1")
    compose_worker_env = compose_services[WORKERS[0]]["environment"]
    assert env["AIRFLOW__CELERY__WORKER_CONCURRENCY"] == compose_worker_env["AIRFLOW__CELERY__WORKER_CONCURRENCY"]
    assert native_cluster.broker.kind == "redis"  # as in compose, whenever a Redis answers


def test_connections_come_from_airflow_conn_variables_pointing_at_stack_services(
    compose_services: dict[str, Any],
) -> None:
    for name in (*AIRFLOW_SERVICES, *WORKERS):
        env = compose_services[name]["environment"]
        aws = json.loads(env["AIRFLOW_CONN_AWS_DEFAULT"])
        assert aws["conn_type"] == "aws"
        assert aws["extra"]["endpoint_url"] == "http://s3:8333", name
        assert env["AIRFLOW_CONN_POSTGRES_DEFAULT"].startswith("postgres://"), name
        assert "@postgres:5432/source" in env["AIRFLOW_CONN_POSTGRES_DEFAULT"], name
        # Every component must verify the same task tokens.
        assert (
            env["AIRFLOW__API_AUTH__JWT_SECRET"]
            == compose_services["airflow-apiserver"]["environment"]["AIRFLOW__API_AUTH__JWT_SECRET"]
        )
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"
        # The example DAGs read these at parse time; the table is the one postgres-init loads.
        assert env["S3STREAM_BUCKET"] == "s3stream"
        assert env["S3STREAM_ORDERS_TABLE"] == "public.demo_orders"


def test_s3_credentials_match_the_server_identity(compose_services: dict[str, Any]) -> None:
    identity = json.loads((DOCKER / "seaweedfs" / "s3.json").read_text())["identities"][0]["credentials"][0]
    aws = json.loads(compose_services["airflow-scheduler"]["environment"]["AIRFLOW_CONN_AWS_DEFAULT"])
    assert (aws["login"], aws["password"]) == (identity["accessKey"], identity["secretKey"])
    assert "./seaweedfs/s3.json:/etc/seaweedfs/s3.json:ro" in compose_services["s3"]["volumes"]


def test_dags_examples_are_mounted_into_every_airflow_component(compose_services: dict[str, Any]) -> None:
    for name in (*AIRFLOW_SERVICES, *WORKERS):
        assert "../dags_examples:/opt/airflow/dags" in compose_services[name]["volumes"], name
        assert compose_services[name]["environment"]["AIRFLOW__CORE__DAGS_FOLDER"] == "/opt/airflow/dags"
    assert (DOCKER.parent / "dags_examples").is_dir()


def test_source_database_is_created_with_a_sample_table(compose_services: dict[str, Any]) -> None:
    assert "./postgres-init:/docker-entrypoint-initdb.d:ro" in compose_services["postgres"]["volumes"]
    scripts = sorted((DOCKER / "postgres-init").iterdir())
    assert scripts, "no init script"
    text = "\n".join(path.read_text() for path in scripts)
    assert "CREATE DATABASE source" in text
    assert "CREATE TABLE public.demo_orders" in text
    for column in ("id", "customer", "amount", "status", "created_at", "note"):  # what the daily DAG selects
        assert re.search(rf"\bAS {column}\b", text), column
    for path in scripts:
        if path.suffix == ".sh":
            assert path.stat().st_mode & 0o111, f"{path.name} must be executable for the postgres entrypoint"


def test_airflow_components_wait_for_migration_and_backing_services(compose_services: dict[str, Any]) -> None:
    for name in (*AIRFLOW_SERVICES, *WORKERS):
        depends = compose_services[name]["depends_on"]
        assert depends["airflow-init"]["condition"] == "service_completed_successfully", name
        assert depends["postgres"]["condition"] == "service_healthy", name
        assert depends["redis"]["condition"] == "service_healthy", name
        assert depends["s3-create-bucket"]["condition"] == "service_completed_successfully", name
    assert "db migrate" in " ".join(compose_services["airflow-init"]["command"])
