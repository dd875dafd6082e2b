"""One description of the deployment that the docker stack and ``make cluster`` both run.

``docker/docker-compose.yaml`` and :mod:`tests.tools.cluster` must start the same Airflow
processes with the same executor settings and the same small workers. This module is the single
place those facts live: the cluster reads it to start its processes, and
``tests/unit/test_docker_stack.py`` checks the compose file against it. Change a fact here and
one of the two follows; the test fails until the other does.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "AIRFLOW_COMPONENTS",
    "COMMON_AIRFLOW_ENV",
    "MiB",
    "WORKER_CONCURRENCY",
    "WORKER_COUNT",
    "WORKER_COMMAND",
    "WORKER_ENV",
    "WORKER_MEMORY_BYTES",
    "WORKER_SERVICES",
    "Component",
]

MiB = 1024 * 1024

WORKER_COUNT = 2
WORKER_CONCURRENCY = 2  # task slots per worker; Celery's own default is the CPU count (16 on a big host)
WORKER_MEMORY_BYTES = 768 * MiB  # the memory cap of each worker: a small pod


@dataclass(frozen=True)
class Component:
    """An Airflow process: ``airflow <command>`` natively, compose service ``service`` in docker."""

    command: str
    service: str


AIRFLOW_COMPONENTS = (
    Component("api-server", "airflow-apiserver"),
    Component("scheduler", "airflow-scheduler"),
    Component("dag-processor", "airflow-dag-processor"),
    Component("triggerer", "airflow-triggerer"),
)
WORKER_COMMAND = "celery worker"
WORKER_SERVICES = tuple(f"airflow-worker-{n}" for n in range(1, WORKER_COUNT + 1))

# Settings every Airflow process gets, in compose and natively (values as compose writes them).
COMMON_AIRFLOW_ENV = {
    "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
    "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "true",
    "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "true",
    "AIRFLOW__CORE__LOAD_EXAMPLES": "false",
}
# Settings of the workers only.
WORKER_ENV = {
    "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(WORKER_CONCURRENCY),
}
