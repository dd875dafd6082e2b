"""``make demo`` from a fresh copy of the checkout: every operator, and nothing outside its own database;
two copies (two checkouts) at once on one Postgres server keep to their own databases.

The copy holds exactly the files git knows (tracked and new, not ignored), as a fresh clone
would. ``VENV`` points make at a stand-in venv whose ``python`` is this interpreter and whose
install stamp is fresh, so make goes straight to the demo without installing anything.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.tools import demo

pytestmark = pytest.mark.e2e

OPERATOR_LINES = (
    "[PostgresToS3StreamOperator]",
    "[S3ToPostgresStreamOperator]",
    "[S3ToBagItZipOperator]",
    "[S3ZipVerifyOperator]",
    "[S3MultipartUploadOperator]",
)
SENTINEL = "public.demo_orders"


def _fresh_copy(dest: Path) -> Path:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=demo.REPO,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, listed):
        source = demo.REPO / os.fsdecode(name)
        if source.is_file():
            target = dest / os.fsdecode(name)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return dest


def _stand_in_venv(venv: Path) -> Path:
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin" / "python"
    python.write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    python.chmod(0o755)
    time.sleep(0.01)
    (venv / ".installed-stamp").touch()  # newer than the copy's pyproject.toml
    return venv


@pytest.fixture
def sentinel(pg_uri: str) -> Iterator[list[Any]]:
    """A ``public.demo_orders`` in the server's default database that the demo must not touch."""
    with psycopg.connect(pg_uri, autocommit=True) as conn:
        exists = conn.execute("SELECT to_regclass(%s)", (SENTINEL,)).fetchone()
        created = exists is None or exists[0] is None
        if created:
            conn.execute(f"CREATE TABLE {SENTINEL} (id int8, note text)")
            conn.execute(f"INSERT INTO {SENTINEL} VALUES (1, 'mine: the demo must leave me alone'), (2, 'me too')")
        rows = conn.execute(f"SELECT * FROM {SENTINEL} ORDER BY 1, 2").fetchall()
    yield rows
    if created:
        with psycopg.connect(pg_uri, autocommit=True) as conn:
            conn.execute(f"DROP TABLE {SENTINEL}")


@pytest.fixture
def demo_databases(pg_uri: str) -> Iterator[list[str]]:
    """Names of the demo databases a test's checkouts create; dropped afterwards (each copy is new)."""
    names: list[str] = []
    yield names
    with psycopg.connect(pg_uri, autocommit=True) as conn:
        for name in names:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _demo_env(pg_uri: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "S3STREAM_S3"))}
    env["S3STREAM_POSTGRES_URI"] = pg_uri  # the server holding the sentinel
    env.pop("PYTHONPATH", None)
    return env


def _count(database_uri: str, table: str) -> int:
    with psycopg.connect(database_uri) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.timeout(420)
def test_make_demo_from_a_fresh_copy_shows_every_operator_and_keeps_to_its_own_database(
    tmp_path: Path, pg_uri: str, sentinel: list[Any], demo_databases: list[str]
) -> None:
    checkout = _fresh_copy(tmp_path / "checkout")
    venv = _stand_in_venv(tmp_path / "venv")
    database = demo.demo_database_name(checkout)
    demo_databases.append(database)
    proc = subprocess.run(
        ["make", "demo", f"VENV={venv}", "DEMO_ARGS=--rows 30000"],
        cwd=checkout,
        env=_demo_env(pg_uri),
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]
    for label in OPERATOR_LINES:
        assert sum(line.startswith(label) for line in output.splitlines()) == 1, (label, output)
    assert "INVALID" in output and database in output
    assert "through the example verify DAG: s3stream_verify_archive" in output  # the DAG users trigger
    assert "Why 2023-12-31" in output
    assert "apt-get install" not in output.replace("e.g. apt-get install zip", "")

    with psycopg.connect(pg_uri) as conn:
        assert conn.execute(f"SELECT * FROM {SENTINEL} ORDER BY 1, 2").fetchall() == sentinel
    assert _count(demo.demo_database_uri(pg_uri, database), demo.LOAD_TABLE) == 10_000  # in its own database
    # It leaves no temporary Airflow directory behind, and says so.
    home = re.search(r"temporary AIRFLOW_HOME (\S+) was removed", output)
    assert home is not None, output[-3000:]
    assert not Path(home.group(1)).exists()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_two_checkouts_run_make_demo_at_once_on_one_postgres_and_neither_sees_the_others_rows(
    tmp_path: Path, pg_uri: str, sentinel: list[Any], demo_databases: list[str]
) -> None:
    # Different row counts, so each checkout's tables show whose rows they hold. With one shared
    # database, one run dropped and reloaded demo_orders (and demo_orders_loaded) under the other.
    rows = {"first": 3_000, "second": 6_000}
    venv = _stand_in_venv(tmp_path / "venv")
    checkouts = {name: _fresh_copy(tmp_path / name) for name in rows}
    databases = {name: demo.demo_database_name(checkout) for name, checkout in checkouts.items()}
    demo_databases.extend(databases.values())
    assert databases["first"] != databases["second"]
    runs = {}
    for name, checkout in checkouts.items():
        out = (tmp_path / f"{name}.out").open("w+")
        runs[name] = (
            subprocess.Popen(
                ["make", "demo", f"VENV={venv}", f"DEMO_ARGS=--rows {rows[name]} --no-verify"],
                cwd=checkout,
                env=_demo_env(pg_uri),
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
            ),
            out,
        )
    outputs = {}
    for name, (proc, out) in runs.items():
        status = proc.wait(timeout=560)
        out.seek(0)
        outputs[name] = out.read()
        out.close()
        assert status == 0, (name, outputs[name][-6000:])
    for name, database in databases.items():
        assert f"this checkout's database {database}" in outputs[name]
        assert "[S3ToPostgresStreamOperator]" in outputs[name]
        uri = demo.demo_database_uri(pg_uri, database)
        assert _count(uri, demo.TABLE) == rows[name]
        assert _count(uri, demo.LOAD_TABLE) == rows[name] // 3  # the export of one day of three, loaded back
    with psycopg.connect(pg_uri) as conn:
        assert conn.execute(f"SELECT * FROM {SENTINEL} ORDER BY 1, 2").fetchall() == sentinel
