"""Two runs of the same checkout's demo (or playground) on one server: the second stops at once and
names the run that holds the checkout's database, instead of reloading its tables under it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest

from tests.tools import demo


@pytest.fixture
def demo_database(pg_uri: str) -> Iterator[str]:
    name = f"s3stream_demo_test_{uuid.uuid4().hex[:8]}"
    uri = demo.create_demo_database(pg_uri, name)
    yield uri
    with psycopg.connect(pg_uri, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_a_second_run_on_a_locked_demo_database_fails_naming_the_holder(demo_database: str) -> None:
    busy = pytest.raises(demo.DatabaseBusyError, match=r"in use by make demo pid 4242 on laptop since \d\d:\d\d")
    with demo.database_lock(demo_database, "make demo pid 4242 on laptop"), busy:  # noqa: SIM117
        with demo.database_lock(demo_database, "make playground pid 99 on laptop"):
            pytest.fail("the lock was taken twice")
    with demo.database_lock(demo_database, "make demo pid 4343 on laptop"):  # released: the next run goes
        pass


def test_creating_an_existing_demo_database_again_keeps_its_tables(demo_database: str, pg_uri: str) -> None:
    with psycopg.connect(demo_database, autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (id int)")
    name = demo_database.rsplit("/", 1)[1]
    assert demo.create_demo_database(pg_uri, name) == demo_database
    with psycopg.connect(demo_database) as conn:
        assert conn.execute("SELECT to_regclass('kept') IS NOT NULL").fetchone() == (True,)
