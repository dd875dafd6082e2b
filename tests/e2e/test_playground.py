"""``make playground``: it starts, the UI's API answers, the verify DAG runs with the form's defaults,
and Ctrl-C (SIGINT) leaves no process behind."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support.airflow_stack import wait_for
from tests.tools import demo
from tests.tools.playground import READY_LINE

pytestmark = pytest.mark.e2e

VERIFY_DAG = "s3stream_verify_archive"


def _descendants(root: int) -> set[int]:
    """Every live process below ``root`` (by parent pid)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: set[int] = set()
    frontier = {root}
    while frontier:
        frontier = {pid for pid, ppid in parents.items() if ppid in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _with_home(home: str) -> set[int]:
    marker = f"AIRFLOW_HOME={home}\0".encode()
    found: set[int] = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "environ").read_bytes() + b"\0":
                    found.add(int(entry.name))
            except OSError:
                continue
    return found


@pytest.mark.timeout(600)
def test_playground_serves_the_ui_runs_the_verify_dag_with_its_defaults_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    log = tmp_path / "playground.out"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env["PYTHONPATH"] = str(demo.REPO)
    # Started with SIGINT ignored, as a script's background job (CI) starts it: it must still stop
    # on SIGINT. An ignored signal is inherited across exec, and Python keeps it ignored.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    with log.open("wb") as out:
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "tests.tools.playground", "--rows", "20000"],
                cwd=demo.REPO,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # as a terminal's Ctrl-C would reach it: SIGINT to this process
            )
        finally:
            signal.signal(signal.SIGINT, previous)
    try:

        def ready() -> str | None:
            assert proc.poll() is None, log.read_text()
            found = re.search(rf"{READY_LINE} (\S+)", log.read_text())
            return found.group(1) if found else None

        base = wait_for("the playground to be ready", ready, timeout_s=420, interval_s=2)
        home = _airflow_home(log)
        assert home is not None
        assert httpx.get(f"{base}/api/v2/monitor/health", timeout=10).status_code == 200

        token = httpx.get(f"{base}/auth/token", timeout=30).json()["access_token"]
        client = httpx.Client(base_url=f"{base}/api/v2", headers={"Authorization": f"Bearer {token}"}, timeout=60)
        wait_for("the verify DAG to be parsed", lambda: client.get(f"/dags/{VERIFY_DAG}").is_success or None, 180, 2)
        assert client.patch(f"/dags/{VERIFY_DAG}", json={"is_paused": False}).is_success
        run = client.post(f"/dags/{VERIFY_DAG}/dagRuns", json={"logical_date": None, "conf": {}}).json()

        def finished() -> str | None:
            state = client.get(f"/dags/{VERIFY_DAG}/dagRuns/{run['dag_run_id']}").json()["state"]
            return state if state in ("success", "failed") else None

        assert wait_for("the verify run", finished, timeout_s=240, interval_s=2) == "success", log.read_text()[-3000:]
        links = client.get(f"/dags/{VERIFY_DAG}/dagRuns/{run['dag_run_id']}/taskInstances/verify/links").json()
        assert "sample-bag.zip" in links["extra_links"]["S3 object"]
        assert "?" not in links["extra_links"]["S3 object"]

        started = _descendants(proc.pid) | _with_home(home)
        assert started
        os.kill(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=120) == 0, log.read_text()[-3000:]
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in started) and time.monotonic() < deadline:
            time.sleep(0.5)
        left = sorted(pid for pid in started | _with_home(home) if _alive(pid))
        assert left == [], [Path(f"/proc/{pid}/cmdline").read_bytes()[:200] for pid in left]
        assert "stopped." in log.read_text()
    finally:
        _stop_after_a_failure(proc, log)


def _airflow_home(log: Path) -> str | None:
    """The playground's AIRFLOW_HOME, as its output names it (None before it says)."""
    found = re.search(r"AIRFLOW_HOME=(\S+?)\)", log.read_text()) if log.exists() else None
    return found.group(1) if found else None


def _stop_after_a_failure(proc: subprocess.Popen[bytes], log: Path) -> None:
    """Leave no process behind when an assertion failed: SIGTERM lets the playground stop its
    Airflow processes (their own process group); what is still alive after that is killed."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    home = _airflow_home(log)
    for pid in _with_home(home) if home else ():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
