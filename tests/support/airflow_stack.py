"""A real Airflow 3 deployment for end-to-end tests: api-server, scheduler and dag-processor.

Each component runs as its own ``airflow`` process, all in one new process group, with a
throwaway ``AIRFLOW_HOME``, a SQLite metadata DB, the LocalExecutor and the simple auth manager
(every user an admin, so a JWT comes from ``GET /auth/token``). The REST API v2 is then driven
exactly as the UI drives it. ``stop()`` ends the whole group by its id, never by name.

``components`` and ``config`` change that shape (``make cluster``: Postgres, CeleryExecutor, a
triggerer), and :meth:`AirflowStack.spawn` adds more processes to the group (Celery workers).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import httpx

from tests.support.devservices import free_port

__all__ = ["AirflowStack", "migrated_sqlite_db", "wait_for"]

T = TypeVar("T")

COMPONENTS = ("api-server", "scheduler", "dag-processor")
STARTUP_TIMEOUT_S = 240.0  # three Python processes importing Airflow on 2 busy cores
TERMINAL_RUN_STATES = {"success", "failed"}
SQLITE_LOCK_PATIENCE_S = 120.0  # how long a write refused by SQLite's lock is retried


def wait_for(what: str, probe: Callable[[], T | None], timeout_s: float, interval_s: float = 1.0) -> T:
    """Poll ``probe`` until it returns something other than None; fail naming ``what``."""
    deadline = time.monotonic() + timeout_s
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            result = probe()
        except (httpx.HTTPError, OSError) as exc:  # server not up yet
            last_error = exc
            result = None
        if result is not None:
            return result
        time.sleep(interval_s)
    raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what} (last error: {last_error!r})")


def migrated_sqlite_db(directory: Path) -> Path:
    """``directory/airflow.db``: a SQLite metadata DB that ``airflow db migrate`` brought to this
    Airflow's schema, made on the first call and reused after (a file lock serialises the callers,
    so xdist workers sharing ``directory`` migrate once between them).

    A template: copy it into a deployment's home, never open it in place.
    """
    directory.mkdir(parents=True, exist_ok=True)
    db, done = directory / "airflow.db", directory / "migrated"
    with open(directory / "migrate.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            env = {
                **os.environ,
                "AIRFLOW_HOME": str(directory / "home"),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{db}",
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            }
            env.pop("AIRFLOW__CORE__SQL_ALCHEMY_CONN", None)
            proc = subprocess.run(
                [sys.executable, "-m", "airflow", "db", "migrate"],
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            if proc.returncode != 0:
                raise RuntimeError(f"airflow db migrate exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
            done.touch()
    return db


class AirflowStack:
    """api-server + scheduler + dag-processor over ``dags_folder``, reachable on a loopback port."""

    def __init__(
        self,
        home: Path,
        dags_folder: Path,
        extra_env: Mapping[str, str],
        *,
        components: tuple[str, ...] = COMPONENTS,
        config: Mapping[str, str] | None = None,
        metadata_template: Path | None = None,
    ) -> None:
        """``extra_env`` is added to every process; ``config`` overrides the defaults below.

        ``metadata_template`` (:func:`migrated_sqlite_db`) is copied in as the SQLite metadata DB
        instead of migrating one.
        """
        self.home = home
        self.metadata_template = metadata_template
        self.components = components
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            **extra_env,
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__CORE__AUTH_MANAGER": (
                "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
            ),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__BASE_URL": self.base_url,
            "AIRFLOW__API__WORKERS": "1",
            # The scheduler signs task tokens that the api-server checks: one shared secret.
            "AIRFLOW__API_AUTH__JWT_SECRET": "s3stream-e2e-not-a-secret",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            **(config or {}),
        }
        self.env.pop("AIRFLOW__CORE__SQL_ALCHEMY_CONN", None)
        self._processes: dict[str, subprocess.Popen[bytes]] = {}
        self._pgid: int | None = None
        self._token: str | None = None

    # --- processes -----------------------------------------------------------------------

    def airflow_cli(self, *args: str, timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
        """Run one ``airflow`` CLI command against this deployment; raise with its output on failure."""
        proc = subprocess.run(
            [sys.executable, "-m", "airflow", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"airflow {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        return proc

    def start(self) -> None:
        """Migrate the DB, start every component in one process group, wait for the API."""
        self.home.mkdir(parents=True, exist_ok=True)
        if self.metadata_template is not None:
            shutil.copyfile(self.metadata_template, self.home / "airflow.db")
        else:
            self.airflow_cli("db", "migrate")
        for name in self.components:
            self.spawn(name, [sys.executable, "-m", "airflow", name])
        wait_for("the api-server to answer", self._api_ready, STARTUP_TIMEOUT_S)

    def spawn(self, name: str, argv: list[str], env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start ``argv`` in the deployment's process group, logging to ``<home>/<name>.log``.

        ``env`` is added to the deployment's environment. The process is watched like a component:
        if it exits while the deployment runs, the next API wait fails naming it.
        """
        log = (self.home / f"{name}.log").open("wb")
        proc = subprocess.Popen(
            argv,
            env={**self.env, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            # The first process leads a new group; the others join it, so one killpg ends all.
            process_group=self._pgid or 0,
        )
        log.close()
        if self._pgid is None:
            self._pgid = proc.pid
        self._processes[name] = proc
        return proc

    def _api_ready(self) -> bool | None:
        self.check_alive()
        response = httpx.get(f"{self.base_url}/api/v2/monitor/health", timeout=5)
        return True if response.status_code == 200 else None

    def check_alive(self) -> None:
        """Raise, with its log tail, if any process of the deployment has exited."""
        for name, proc in self._processes.items():
            if proc.poll() is not None:
                raise RuntimeError(f"airflow {name} exited with {proc.returncode}:\n{self.log_tail(name)}")

    def log_tail(self, name: str, lines: int = 60) -> str:
        path = self.home / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM the process group, then SIGKILL whatever is left after a grace period."""
        if self._pgid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._pgid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        for proc in self._processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        with contextlib.suppress(ProcessLookupError):  # task runners share the group too
            os.killpg(self._pgid, signal.SIGKILL)
        for proc in self._processes.values():
            proc.wait(timeout=10)
        # A task runner may lead a group of its own (Airflow's supervisor can put it there): end
        # what is left of this deployment by pid, found by its AIRFLOW_HOME.
        for pid in self.processes_using_home():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self._pgid = None

    def group_alive(self) -> bool:
        """Whether any process of the group still exists."""
        if self._pgid is None:
            return False
        try:
            os.killpg(self._pgid, 0)
        except ProcessLookupError:
            return False
        return True

    def processes_using_home(self) -> list[int]:
        """PIDs of live processes whose environment names this deployment's AIRFLOW_HOME.

        Catches a process that left the group (e.g. by ``setsid``), which ``group_alive`` misses.
        """
        marker = f"AIRFLOW_HOME={self.home}\0".encode()
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                environ = (entry / "environ").read_bytes()
            except OSError:  # gone, or not ours to read
                continue
            if marker in environ + b"\0":
                found.append(int(entry.name))
        return found

    @property
    def pgid(self) -> int | None:
        return self._pgid

    # --- REST API v2 ---------------------------------------------------------------------

    def token(self) -> str:
        """A JWT from the simple auth manager (all users are admins in this deployment)."""
        if self._token is None:
            response = httpx.get(f"{self.base_url}/auth/token", timeout=30)
            response.raise_for_status()
            self._token = str(response.json()["access_token"])
        return self._token

    def api(self, method: str, path: str, json: Any = None, params: Mapping[str, Any] | None = None) -> Any:
        """Call ``/api/v2{path}`` with the JWT; raise with the response body on an error status.

        SQLite has one writer: while the scheduler holds the lock a write may be refused ("Database
        is locked"); such a request is sent again for up to ``SQLITE_LOCK_PATIENCE_S``.
        """
        deadline = time.monotonic() + SQLITE_LOCK_PATIENCE_S
        while True:
            response = httpx.request(
                method,
                f"{self.base_url}/api/v2{path}",
                json=json,
                params=params,
                headers={"Authorization": f"Bearer {self.token()}"},
                timeout=60,
            )
            locked = response.status_code >= 500 and "locked" in response.text.lower()
            if not locked or time.monotonic() > deadline:
                break
            time.sleep(1)
        if response.status_code >= 400:
            raise RuntimeError(f"{method} {path} -> {response.status_code}: {response.text}")
        return response.json() if response.content else None

    def wait_for_dag(self, dag_id: str, timeout_s: float = 180) -> dict[str, Any]:
        """Wait until the dag-processor has parsed ``dag_id``; raise on an import error for it."""

        def probe() -> dict[str, Any] | None:
            self.check_alive()
            errors = self.api("GET", "/importErrors")["import_errors"]
            for error in errors:
                if dag_id in error.get("filename", "") or dag_id in error.get("stack_trace", ""):
                    raise RuntimeError(f"import error for {dag_id}: {error['stack_trace']}")
            try:
                return dict(self.api("GET", f"/dags/{dag_id}"))
            except RuntimeError as exc:
                if "-> 404" in str(exc):
                    return None
                raise

        return wait_for(f"DAG {dag_id} to be parsed", probe, timeout_s, interval_s=2)

    def unpause(self, dag_id: str) -> None:
        self.api("PATCH", f"/dags/{dag_id}", json={"is_paused": False})

    def wait_for_run(self, dag_id: str, run_id: str, timeout_s: float = 240) -> dict[str, Any]:
        """Wait until the run reaches success or failed; return the run."""

        def probe() -> dict[str, Any] | None:
            self.check_alive()
            run = dict(self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}"))
            return run if run["state"] in TERMINAL_RUN_STATES else None

        return wait_for(f"run {run_id} of {dag_id} to finish", probe, timeout_s, interval_s=2)

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1, map_index: int = -1) -> str:
        """The task's log text (best effort, for failure messages); ``map_index`` for a mapped task."""
        try:
            body = self.api(
                "GET",
                f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}",
                params={"full_content": True, "map_index": map_index},
            )
        except RuntimeError as exc:
            return str(exc)
        content = body.get("content", "")
        if isinstance(content, list):
            return "\n".join(str(item.get("event", item)) if isinstance(item, dict) else str(item) for item in content)
        return str(content)
