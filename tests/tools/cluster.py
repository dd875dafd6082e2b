"""``make cluster``: the docker stack's processes, run natively, with memory-capped Celery workers.

Starts, on free loopback ports:

* Postgres and S3 as the tests find or start them (:mod:`tests.support.devservices`), with a
  metadata database of the cluster's own, created now and dropped at the end;
* api-server, scheduler, dag-processor and triggerer with the ``CeleryExecutor``
  (:class:`tests.support.airflow_stack.AirflowStack`, all in one process group);
* a broker: Redis when ``S3STREAM_REDIS_URL`` is set or 127.0.0.1:6379 answers (with a key prefix
  of this cluster's own), else kombu's SQLAlchemy transport on the cluster's Postgres database;
* ``WORKER_COUNT`` Celery workers with distinct hostnames (Celery's ``--celery-hostname`` and
  Airflow's ``[core] hostname_callable``, so ``TaskInstance.hostname`` tells them apart), each
  in a memory cgroup of its own capped at ``S3STREAM_WORKER_MEMORY`` bytes (default 768 MiB,
  suffixes K/M/G accepted). Where no cgroup can be made it says so and runs them uncapped.

What it runs is :mod:`tests.tools.stack_spec`, the description the compose file is checked
against. ``python -m tests.tools.cluster`` prints the UI URL, the workers and their caps, and
runs until Ctrl-C; then every process is stopped by its process group and the cgroups removed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.airflow_stack import AirflowStack, wait_for
from tests.support.devservices import DevServices, airflow_connection_env, free_port, start_postgres, start_s3
from tests.tools import stack_spec

__all__ = [
    "Broker",
    "Cluster",
    "MemoryCgroup",
    "TaskPeak",
    "Worker",
    "choose_broker",
    "main",
    "parse_memory",
    "worker_hostname",
]

REPO = Path(__file__).resolve().parents[2]  # tests/tools/cluster.py -> the checkout
DAGS_EXAMPLES = REPO / "dags_examples"
CGROUP_V1_MEMORY = Path("/sys/fs/cgroup/memory")
CGROUP_V2_ROOT = Path("/sys/fs/cgroup")
DEFAULT_REDIS = ("127.0.0.1", 6379)
HOSTNAME_ENV = "S3STREAM_WORKER_HOSTNAME"
WORKER_READY_TIMEOUT_S = 240.0  # Celery workers import Airflow on 2 busy cores
SAMPLE_INTERVAL_S = 0.2  # how often task processes' peak RSS is read
TASK_PROCESS_TITLE = "airflow worker -- "  # the task runner's process title, followed by the TI id


def worker_hostname() -> str:
    """Airflow's ``[core] hostname_callable`` for the cluster's workers: the name it gave them."""
    return os.environ.get(HOSTNAME_ENV) or socket.getfqdn()


def parse_memory(text: str) -> int:
    """``"805306368"``, ``"768M"``, ``"768MiB"``, ``"1G"`` -> bytes (binary units)."""
    match = re.fullmatch(r"(\d+)\s*([kmg]?)(i?b)?", text.strip().lower())
    if not match:
        raise ValueError(f"S3STREAM_WORKER_MEMORY: unreadable size {text!r} (bytes, or a number with K/M/G)")
    return int(match.group(1)) * {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[match.group(2)]


# --- memory cgroups ---------------------------------------------------------------------------


@dataclass
class MemoryCgroup:
    """A memory cgroup of this cluster (v1 ``memory`` controller, or v2), made by :meth:`create`."""

    path: Path
    version: int
    limit_bytes: int

    @classmethod
    def create(cls, name: str, limit_bytes: int) -> MemoryCgroup:
        """Make cgroup ``name`` capped at ``limit_bytes``; raise OSError saying why it cannot be."""
        if (CGROUP_V1_MEMORY / "memory.limit_in_bytes").exists():
            path, version, limit_file = CGROUP_V1_MEMORY / name, 1, "memory.limit_in_bytes"
        elif "memory" in _read(CGROUP_V2_ROOT / "cgroup.subtree_control").split():
            path, version, limit_file = CGROUP_V2_ROOT / name, 2, "memory.max"
        else:
            raise OSError("no memory cgroup controller is mounted writable (v1 memory, or v2 with memory enabled)")
        path.mkdir()
        group = cls(path, version, limit_bytes)
        try:
            (path / limit_file).write_text(str(limit_bytes))
            if version == 1 and (path / "memory.memsw.limit_in_bytes").exists():
                (path / "memory.memsw.limit_in_bytes").write_text(str(limit_bytes))  # no escape into swap
            elif version == 2:
                (path / "memory.swap.max").write_text("0")
        except OSError:
            group.remove()
            raise
        return group

    def wrap(self, argv: list[str]) -> list[str]:
        """``argv`` run so that it joins this cgroup before it allocates anything (exec, same pid)."""
        return ["/bin/sh", "-c", f'echo $$ > {self.path / "cgroup.procs"} && exec "$@"', "sh", *argv]

    def usage_bytes(self) -> int:
        """What the cgroup is charged now (RSS and page cache)."""
        return int(_read(self.path / ("memory.usage_in_bytes" if self.version == 1 else "memory.current")) or 0)

    def pids(self) -> list[int]:
        return [int(line) for line in _read(self.path / "cgroup.procs").split()]

    def peak_bytes(self) -> int:
        """The cgroup's own high-water mark of charged memory (RSS and page cache)."""
        name = "memory.max_usage_in_bytes" if self.version == 1 else "memory.peak"
        return int(_read(self.path / name) or 0)

    def reset_peak(self) -> None:
        """Start a new high-water mark (v1; on v2 the peak counts from the cgroup's creation)."""
        if self.version == 1:
            (self.path / "memory.max_usage_in_bytes").write_text("0")

    def oom_kills(self) -> int:
        """How many processes the kernel's OOM killer ended in this cgroup."""
        text = _read(self.path / ("memory.oom_control" if self.version == 1 else "memory.events"))
        found = re.search(r"^oom_kill (\d+)$", text, flags=re.MULTILINE)
        return int(found.group(1)) if found else 0

    def remove(self) -> None:
        """SIGKILL whatever is still inside (only this cluster's processes are), then remove it."""
        deadline = time.monotonic() + 15
        while self.path.exists():
            for pid in self.pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            try:
                self.path.rmdir()
            except OSError:  # EBUSY until the last process is reaped
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


# --- broker -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Broker:
    """The Celery broker: ``kind`` is ``redis`` or ``sqlalchemy``; ``env`` configures Airflow for it."""

    kind: str
    url: str
    env: Mapping[str, str]

    def describe(self) -> str:
        return f"{self.kind} ({self.url})"


def _redis_answers(host: str, port: int, timeout_s: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def choose_broker(metadata_url: str, key_prefix: str) -> Broker:
    """Redis when ``S3STREAM_REDIS_URL`` is set or 127.0.0.1:6379 answers, else the Postgres DB.

    With Redis every key gets ``key_prefix``, so clusters sharing one Redis never take each
    other's tasks. The SQLAlchemy transport keeps its queue tables in the cluster's own database
    and takes no transport options (kombu hands them to ``create_engine``).
    """
    url = os.environ.get("S3STREAM_REDIS_URL")
    if url is None and _redis_answers(*DEFAULT_REDIS):
        url = "redis://{}:{}/0".format(*DEFAULT_REDIS)
    if url:
        env = {
            "AIRFLOW__CELERY__BROKER_URL": url,
            "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__GLOBAL_KEYPREFIX": key_prefix,
            # Redis redelivers an unacknowledged task after this; Airflow's default is 24 h, said loudly.
            "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": "21600",
        }
        return Broker("redis", url, env)
    url = "sqla+" + metadata_url
    return Broker("sqlalchemy", url, {"AIRFLOW__CELERY__BROKER_URL": url})


def _sqlalchemy_url(libpq_uri: str, database: str) -> str:
    """A ``postgresql+psycopg://`` URL for ``database`` on the server of ``libpq_uri``.

    A Unix socket directory (the embedded server's percent-encoded host) moves to ``?host=``,
    where SQLAlchemy and libpq both read it.
    """
    parts = urllib.parse.urlsplit(libpq_uri)
    user = urllib.parse.unquote(parts.username or "postgres")
    password = f":{urllib.parse.quote(urllib.parse.unquote(parts.password), safe='')}" if parts.password else ""
    host = urllib.parse.unquote(parts.hostname or "127.0.0.1")
    port = parts.port or 5432
    if host.startswith("/"):
        return f"postgresql+psycopg://{user}{password}@/{database}?host={host}&port={port}"
    return f"postgresql+psycopg://{user}{password}@{host}:{port}/{database}"


def _libpq_uri(libpq_uri: str, database: str) -> str:
    parts = urllib.parse.urlsplit(libpq_uri)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, ""))


# --- workers and their task processes ---------------------------------------------------------


@dataclass
class TaskPeak:
    """One task process on one worker, as sampled.

    ``peak_bytes`` is its highest resident set (``VmHWM``: it counts the pages it still shares
    with the worker it was forked from); ``worker_peak_bytes`` the highest charge of the worker's
    cgroup seen while it ran (0 when the worker is uncapped).
    """

    pid: int
    ti_id: str
    worker: str
    peak_bytes: int = 0
    worker_peak_bytes: int = 0


@dataclass
class Worker:
    """A Celery worker of the cluster: ``hostname`` is what its task instances report."""

    name: str
    hostname: str
    cgroup: MemoryCgroup | None
    pid: int = 0
    sampled_peak_bytes: int = 0  # sum of its processes' PSS, sampled: the figure when uncapped
    oom_kills_before: int = 0  # the cgroup's OOM-kill count at the last reset

    def peak_bytes(self) -> int:
        """The cgroup's own counter when capped, else the sampled sum of PSS."""
        return self.cgroup.peak_bytes() if self.cgroup else self.sampled_peak_bytes

    def oom_kills(self) -> int:
        """Processes of this worker ended by the OOM killer since the last :meth:`Cluster.reset_peaks`."""
        return self.cgroup.oom_kills() - self.oom_kills_before if self.cgroup else 0

    def cap_text(self) -> str:
        return (
            f"{self.cgroup.limit_bytes / stack_spec.MiB:.0f} MiB (cgroup v{self.cgroup.version})"
            if self.cgroup
            else "uncapped"
        )


def _process_tree(pid: int) -> list[int]:
    import psutil

    try:
        root = psutil.Process(pid)
        return [pid, *(child.pid for child in root.children(recursive=True))]
    except psutil.NoSuchProcess:
        return []


def _kib(pid: int, file: str, field_name: str) -> int:
    """A ``<field>: N kB`` line of ``/proc/<pid>/<file>``, in bytes (0 if the process is gone)."""
    found = re.search(rf"^{field_name}:\s+(\d+) kB$", _read(Path(f"/proc/{pid}/{file}")), flags=re.MULTILINE)
    return int(found.group(1)) * 1024 if found else 0


class _TaskSampler(threading.Thread):
    """Reads, every ``SAMPLE_INTERVAL_S``, each worker's processes: task peaks and the PSS sum.

    PSS (proportional set size) shares the pages that forked processes have in common among
    them, so the sum is what the worker takes; a sum of RSS would count those pages many times.
    """

    def __init__(self, workers: Sequence[Worker]) -> None:
        super().__init__(name="s3stream-cluster-sampler", daemon=True)
        self.workers = workers
        self.peaks: dict[int, TaskPeak] = {}  # by the task process's pid, which Airflow records per try
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(SAMPLE_INTERVAL_S):
            for worker in self.workers:
                charged = worker.cgroup.usage_bytes() if worker.cgroup else 0
                pss = 0
                for pid in _process_tree(worker.pid):
                    pss += _kib(pid, "smaps_rollup", "Pss")
                    title = _read(Path(f"/proc/{pid}/cmdline")).replace("\0", " ").strip()
                    if title.startswith(TASK_PROCESS_TITLE):
                        ti_id = title[len(TASK_PROCESS_TITLE) :].split()[0]
                        seen = self.peaks.setdefault(pid, TaskPeak(pid, ti_id, worker.name))
                        seen.peak_bytes = max(seen.peak_bytes, _kib(pid, "status", "VmHWM"))
                        seen.worker_peak_bytes = max(seen.worker_peak_bytes, charged)
                worker.sampled_peak_bytes = max(worker.sampled_peak_bytes, pss)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)


# --- the cluster ------------------------------------------------------------------------------


@dataclass
class Cluster:
    """The deployment of :mod:`tests.tools.stack_spec` over ``services``, natively.

    ``extra_dag_folders`` become DAG bundles next to ``dags_examples/`` (the tests' comparison DAG).
    """

    services: DevServices
    home: Path
    worker_memory: int = stack_spec.WORKER_MEMORY_BYTES
    worker_count: int = stack_spec.WORKER_COUNT
    extra_dag_folders: Sequence[Path] = ()
    extra_env: Mapping[str, str] = field(default_factory=dict)
    cgroup_problem: str | None = None
    workers: list[Worker] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.cluster_id = uuid.uuid4().hex[:10]
        self.database = f"s3stream_cluster_{self.cluster_id}"
        self.metadata_url = _sqlalchemy_url(self.services.postgres.uri, self.database)
        self.broker = choose_broker(self.metadata_url, key_prefix=f"s3stream-cluster-{self.cluster_id}:")
        bundles = [
            {"name": "dags-folder", "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle", "kwargs": {}},
            *(
                {
                    "name": f"extra-{i}",
                    "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
                    "kwargs": {"path": str(folder)},
                }
                for i, folder in enumerate(self.extra_dag_folders)
            ),
        ]
        config = {
            **stack_spec.COMMON_AIRFLOW_ENV,
            **self.broker.env,
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.metadata_url,
            "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps(bundles),
            "AIRFLOW__CORE__PARALLELISM": str(self.worker_count * stack_spec.WORKER_CONCURRENCY),
            "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "1800",
        }
        pythonpath = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
        env = {**airflow_connection_env(self.services), "PYTHONPATH": pythonpath, **self.extra_env}
        self.stack = AirflowStack(
            self.home,
            DAGS_EXAMPLES,
            extra_env=env,
            components=tuple(c.command for c in stack_spec.AIRFLOW_COMPONENTS),
            config=config,
        )
        self._sampler: _TaskSampler | None = None

    @property
    def base_url(self) -> str:
        return self.stack.base_url

    def start(self) -> None:
        """Create the database, start the components, then the capped workers; wait until ready."""
        import psycopg

        with psycopg.connect(self.services.postgres.uri, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.database}"')
        self.stack.start()
        for n in range(1, self.worker_count + 1):
            self._start_worker(n)
        for worker in self.workers:
            wait_for(f"Celery worker {worker.hostname} to be ready", self._ready_probe(worker), WORKER_READY_TIMEOUT_S)
        self._sampler = _TaskSampler(self.workers)
        self._sampler.start()

    def _start_worker(self, n: int) -> None:
        name = f"worker-{n}"
        hostname = f"s3stream-{name}-{self.cluster_id}"
        cgroup = None
        if self.cgroup_problem is None:
            try:
                cgroup = MemoryCgroup.create(f"s3stream-cluster-{self.cluster_id}-{name}", self.worker_memory)
            except OSError as exc:
                self.cgroup_problem = f"no memory cgroup for the workers ({exc}); they run UNCAPPED"
        worker = Worker(name, hostname, cgroup)
        self.workers.append(worker)  # before the spawn, so that stop() removes its cgroup whatever happens
        argv, env = self.worker_launch(hostname)
        proc = self.stack.spawn(name, cgroup.wrap(argv) if cgroup else argv, env)
        worker.pid = proc.pid

    def worker_launch(self, hostname: str) -> tuple[list[str], dict[str, str]]:
        """The command line of the worker named ``hostname`` and what it adds to the environment."""
        argv = [sys.executable, "-m", "airflow", *stack_spec.WORKER_COMMAND.split(), "--celery-hostname", hostname]
        env = {
            **stack_spec.WORKER_ENV,
            HOSTNAME_ENV: hostname,
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": f"{__name__}.worker_hostname",
            # Each worker serves its task logs on a port of its own (8793 for all by default).
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        }
        return argv, env

    def _ready_probe(self, worker: Worker) -> Callable[[], bool | None]:
        def probe() -> bool | None:
            self.stack.check_alive()
            return True if f"celery@{worker.hostname} ready." in _read(self.home / f"{worker.name}.log") else None

        return probe

    def task_peaks(self) -> dict[int, TaskPeak]:
        """Every task process seen so far, by pid (a task try's ``pid`` in the REST API)."""
        return dict(self._sampler.peaks) if self._sampler else {}

    def reset_peaks(self) -> None:
        """Start new high-water marks and OOM-kill counts for the workers."""
        for worker in self.workers:
            worker.sampled_peak_bytes = 0
            if worker.cgroup:
                worker.cgroup.reset_peak()
                worker.oom_kills_before = worker.cgroup.oom_kills()

    def stop(self) -> None:
        """Stop every process (process group, then what is left in the cgroups), drop cgroups and DB."""
        import psycopg

        if self._sampler:
            self._sampler.stop()
        self.stack.stop()
        for worker in self.workers:
            if worker.cgroup:
                worker.cgroup.remove()
        with (
            contextlib.suppress(psycopg.Error),
            psycopg.connect(self.services.postgres.uri, autocommit=True) as conn,
        ):
            conn.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')

    def describe(self) -> str:
        lines = [
            f"Airflow UI:   {self.base_url}  (simple auth manager: every user is an admin)",
            f"metadata DB:  {self.metadata_url}",
            f"broker:       {self.broker.describe()}",
            f"S3 endpoint:  {self.services.s3.endpoint_url} ({self.services.s3.origin})",
            f"AIRFLOW_HOME: {self.home}  (component logs: <name>.log)",
        ]
        for worker in self.workers:
            lines.append(
                f"{worker.name}:     celery@{worker.hostname}, concurrency {stack_spec.WORKER_CONCURRENCY}, "
                f"memory cap {worker.cap_text()}"
            )
        if self.cgroup_problem:
            lines.append(f"WARNING: {self.cgroup_problem}")
        return "\n".join(lines)


@contextlib.contextmanager
def running_cluster(
    services: DevServices | None = None,
    *,
    worker_memory: int | None = None,
    worker_count: int = stack_spec.WORKER_COUNT,
    extra_dag_folders: Sequence[Path] = (),
    extra_env: Mapping[str, str] | None = None,
    keep_home: bool = False,
) -> Iterator[Cluster]:
    """A started cluster, stopped (processes, cgroups, database) however the block ends.

    Its ``AIRFLOW_HOME`` (config, component and task logs) is deleted afterwards unless ``keep_home``.
    """
    owned = services is None
    services = services or DevServices(postgres=start_postgres(), s3=start_s3())
    memory = worker_memory or parse_memory(
        os.environ.get("S3STREAM_WORKER_MEMORY", str(stack_spec.WORKER_MEMORY_BYTES))
    )
    home = Path(tempfile.mkdtemp(prefix="s3stream-cluster-"))
    cluster = Cluster(
        services,
        home,
        worker_memory=memory,
        worker_count=worker_count,
        extra_dag_folders=extra_dag_folders,
        extra_env=dict(extra_env or {}),
    )
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        if owned:
            services.stop()
        if not keep_home:
            shutil.rmtree(home, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the docker stack's processes natively, workers memory-capped.")
    parser.add_argument("--workers", type=int, default=stack_spec.WORKER_COUNT, help="Celery workers to start")
    args = parser.parse_args(argv)
    print("starting Postgres and S3, then Airflow (CeleryExecutor) and the workers: a minute or two ...", flush=True)
    services = DevServices(postgres=start_postgres(), s3=start_s3())
    bucket = os.environ.get("S3STREAM_BUCKET", "s3stream")
    client = services.s3.client()
    if bucket not in [b["Name"] for b in client.list_buckets().get("Buckets", [])]:
        client.create_bucket(Bucket=bucket)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C, even when started with SIGINT ignored
    env = {"S3STREAM_BUCKET": bucket}
    with running_cluster(services, worker_count=args.workers, extra_env=env, keep_home=True) as cluster:
        print(cluster.describe(), flush=True)
        print(f"bucket s3://{bucket} is ready; the example DAGs are in {DAGS_EXAMPLES}. Ctrl-C stops everything.")
        try:
            while not stop.wait(1):
                cluster.stack.check_alive()
        except KeyboardInterrupt:
            pass
        print("stopping every process of the cluster and removing its cgroups ...", flush=True)
    services.stop()
    print(f"stopped. Logs are kept in {cluster.home}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
