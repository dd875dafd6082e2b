"""The docker stack, checked without a Docker engine: the compose file and Dockerfile as data."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

DOCKER = Path(__file__).resolve().parents[2] / "docker"
AIRFLOW_SERVICES = ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer")
WORKERS = ("airflow-worker-1", "airflow-worker-2")
MAX_WORKER_MEMORY = 768 * 1024 * 1024  # bytes; the small-worker claim the stack demonstrates
PINNED_TAG = re.compile(r"^[\w./-]+:(?!latest$)[\w.-]*\d[\w.-]*$")  # a tag with a version number, not "latest"


def _memory_bytes(value: str | int) -> int:
    if isinstance(value, int):
        return value
    match = re.fullmatch(r"(\d+)\s*([kmg]?)i?b?", value.strip().lower())
    assert match, f"unreadable memory size {value!r}"
    return int(match.group(1)) * {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[match.group(2)]


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
        "airflow-apiserver": "api-server",
        "airflow-scheduler": "scheduler",
        "airflow-dag-processor": "dag-processor",
        "airflow-triggerer": "triggerer",
        "airflow-worker-1": "celery worker",
        "airflow-worker-2": "celery worker",
    }


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


def test_workers_are_celery_and_memory_limited_to_a_small_pod(compose_services: dict[str, Any]) -> None:
    for name in WORKERS:
        worker = compose_services[name]
        assert worker["environment"]["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        assert _memory_bytes(worker["mem_limit"]) <= MAX_WORKER_MEMORY, name
        assert _memory_bytes(worker["deploy"]["resources"]["limits"]["memory"]) <= MAX_WORKER_MEMORY, name
    for name in AIRFLOW_SERVICES:
        assert "mem_limit" not in compose_services[name], f"{name} is not a worker and needs no cap"


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
