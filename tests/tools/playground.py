"""``make playground``: the Airflow UI on the example DAGs, with the demo's data, until Ctrl-C.

1. start (or find) Postgres and S3 as ``make demo`` does (:mod:`tests.support.devservices`), load
   the demo's data into this checkout's own database ``s3stream_playground_<hash>``
   (:func:`tests.tools.demo.demo_database_name`, locked while the playground runs) and the bucket
   ``s3stream``, and package
   the sample bag to ``s3stream/archives/sample-bag.zip`` (what the verify DAG checks by default);
2. start Airflow natively with :class:`tests.support.airflow_stack.AirflowStack`: api-server,
   scheduler, dag-processor and triggerer, the LocalExecutor, a SQLite metadata DB in a throwaway
   ``AIRFLOW_HOME``, the example DAGs of ``dags_examples/``;
3. print the UI URL (the simple auth manager, every user an admin: no password) and wait;
4. on Ctrl-C (SIGINT) or SIGTERM: stop every Airflow process (by process group and by
   ``AIRFLOW_HOME``), then the services, and exit 0.

    python -m tests.tools.playground [--rows 300000]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import tempfile
import threading
from pathlib import Path
from types import FrameType

from tests.support import devservices
from tests.tools import demo

__all__ = ["COMPONENTS", "main"]

COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
READY_LINE = "playground ready:"  # what the e2e test waits for, followed by the UI URL


def _package_sample_bag() -> dict[str, object]:
    """Build ``archives/sample-bag.zip`` from the sample files with the package operator itself."""
    from airflow_s3stream.operators import S3ToBagItZipOperator

    operator = S3ToBagItZipOperator(
        task_id="playground_sample_bag",
        source_bucket=demo.BUCKET,
        source_prefix=demo.SAMPLE_PREFIX,
        s3_bucket=demo.BUCKET,
        s3_key="archives/sample-bag.zip",
        checksums=["sha256"],
        bag_info={"Source-Organization": "make playground"},
    )
    # The operator's task-log lines (written straight to the console's descriptors) are noise
    # here: keep them aside and show them only if packaging fails.
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with tempfile.TemporaryFile() as aside:
        os.dup2(aside.fileno(), 1)
        os.dup2(aside.fileno(), 2)
        try:
            return dict(operator.execute({}))
        except BaseException:
            aside.seek(0)
            os.write(saved[1], aside.read()[-8000:])
            raise
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The Airflow UI on the example DAGs, until Ctrl-C.")
    parser.add_argument("--rows", type=int, default=300_000, help="rows in the sample orders table")
    args = parser.parse_args(argv)

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt  # SIGTERM ends the playground as Ctrl-C does, even mid-startup

    signal.signal(signal.SIGTERM, interrupt)
    # Python leaves SIGINT ignored when it starts ignored (a background job of a script): Ctrl-C
    # and a SIGINT from a supervising process must still stop everything.
    signal.signal(signal.SIGINT, signal.default_int_handler)

    from tests.support.airflow_stack import AirflowStack

    database = demo.demo_database_name(tool="playground")
    demo.say(f"[1/3] starting Postgres and S3, loading the demo data (database {database}, bucket {demo.BUCKET})")
    services = devservices.start_all()
    stack: AirflowStack | None = None
    lock = contextlib.ExitStack()
    try:
        lock.enter_context(
            demo.database_lock(
                demo.create_demo_database(services.postgres.uri, database),
                f"make playground pid {os.getpid()} on {os.uname().nodename}",
            )
        )
        demo_uri, _ = demo.load_demo_data(services, args.rows, database)
        demo_services = devservices.DevServices(
            postgres=devservices.PostgresService(uri=demo_uri, origin=services.postgres.origin), s3=services.s3
        )
        connections = devservices.airflow_connection_env(demo_services)
        os.environ.update(connections)  # for packaging the sample bag in this process
        bag = _package_sample_bag()
        demo.say(f"  s3://{demo.BUCKET}/{bag['key']} ({bag['zip_bytes']} bytes): the verify DAG's default archive")
        home = Path(tempfile.mkdtemp(prefix="s3stream-playground-"))
        stack = AirflowStack(
            home,
            demo.REPO / "dags_examples",
            {
                **connections,
                "AIRFLOW_CONN_POSTGRES_REPLICA": connections["AIRFLOW_CONN_POSTGRES_DEFAULT"],
                "S3STREAM_BUCKET": demo.BUCKET,
                "S3STREAM_ORDERS_TABLE": demo.TABLE,
                "S3STREAM_LOAD_TABLE": demo.LOAD_TABLE,
                "PYTHONPATH": os.pathsep.join(p for p in (str(demo.REPO), os.environ.get("PYTHONPATH", "")) if p),
            },
            components=COMPONENTS,
        )
        demo.say(f"[2/3] starting Airflow (api-server, scheduler, dag-processor, triggerer; AIRFLOW_HOME={home})")
        with demo.Ticker("waiting for the api-server"):
            stack.start()
        demo.say(f"[3/3] {READY_LINE} {stack.base_url}")
        demo.say(f"  UI: {stack.base_url}  (simple auth manager: every user is an admin, no password)")
        demo.say(f"  S3: {services.s3.endpoint_url} (key {services.s3.access_key_id!r}), bucket {demo.BUCKET}")
        demo.say(f"  Postgres: {demo_uri}")
        demo.say("  Try: DAGs > s3stream_verify_archive > Trigger (the defaults verify archives/sample-bag.zip)")
        demo.say(f"  Component logs: {home}/<component>.log. Ctrl-C stops everything.")
        (home / "playground.json").write_text(json.dumps({"url": stack.base_url, "s3": services.s3.endpoint_url}))
        while True:
            threading.Event().wait(2)
            stack.check_alive()
    except KeyboardInterrupt:
        demo.say("")
    except demo.DatabaseBusyError as exc:
        demo.say(f"cannot start: {exc}")
        return 3
    finally:
        demo.say("stopping Airflow and the services ...")
        if stack is not None:
            stack.stop()
        lock.close()
        services.stop()
        demo.say("stopped.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
