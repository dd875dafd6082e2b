"""``make demo`` from a fresh copy of the checkout: every operator, and nothing outside its own database.

The copy holds exactly the files git knows (tracked and new, not ignored), as a fresh clone
would. ``VENV`` points make at a stand-in venv whose ``python`` is this interpreter and whose
install stamp is fresh, so make goes straight to the demo without installing anything.
"""

from __future__ import annotations

import os
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


@pytest.mark.timeout(420)
def test_make_demo_from_a_fresh_copy_shows_every_operator_and_keeps_to_its_own_database(
    tmp_path: Path, pg_uri: str, sentinel: list[Any]
) -> None:
    checkout = _fresh_copy(tmp_path / "checkout")
    venv = _stand_in_venv(tmp_path / "venv")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "S3STREAM_S3"))}
    env["S3STREAM_POSTGRES_URI"] = pg_uri  # the server holding the sentinel
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(
        ["make", "demo", f"VENV={venv}", "DEMO_ARGS=--rows 30000"],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]
    for label in OPERATOR_LINES:
        assert sum(line.startswith(label) for line in output.splitlines()) == 1, (label, output)
    assert "INVALID" in output and "s3stream_demo" in output
    assert "through the example verify DAG: s3stream_verify_archive" in output  # the DAG users trigger
    assert "Why 2023-12-31" in output
    assert "apt-get install" not in output.replace("e.g. apt-get install zip", "")

    with psycopg.connect(pg_uri) as conn:
        assert conn.execute(f"SELECT * FROM {SENTINEL} ORDER BY 1, 2").fetchall() == sentinel
    with psycopg.connect(demo.demo_database_uri(pg_uri)) as conn:  # the demo's data is in its database
        loaded = conn.execute("SELECT count(*) FROM public.demo_orders_loaded").fetchone()
    assert loaded is not None and loaded[0] == 10_000
