"""``make demo`` finds the example DAGs wherever the checkout is, and keeps to its own database."""

from __future__ import annotations

import re
from pathlib import Path

from tests.tools import demo


def test_demo_runs_the_dag_from_the_checkouts_example_dags() -> None:
    assert (demo.REPO / "dags_examples" / "postgres_to_s3_daily.py").is_file()
    assert (demo.REPO / "tests" / "tools" / "demo_dags" / "demo_tour.py").is_file()
    assert (demo.REPO / "Makefile").is_file()


def test_demo_database_replaces_only_the_database_of_the_server_uri() -> None:
    uri = "postgresql://postgres@%2Ftmp%2Fpg:5433/postgres?sslmode=disable"
    assert demo.demo_database_uri(uri) == f"postgresql://postgres@%2Ftmp%2Fpg:5433/{demo.DEMO_DATABASE}?sslmode=disable"


def test_each_checkout_gets_its_own_demo_database_named_from_its_path(tmp_path: Path) -> None:
    first, second = tmp_path / "clone-a", tmp_path / "clone-b"
    assert demo.demo_database_name(first) != demo.demo_database_name(second)
    assert demo.demo_database_name(first) == demo.demo_database_name(tmp_path / "x" / ".." / "clone-a")
    assert demo.demo_database_name(demo.REPO) == demo.DEMO_DATABASE
    assert re.fullmatch(r"s3stream_demo_[0-9a-f]{10}", demo.DEMO_DATABASE)  # a plain identifier, < 63 bytes


def test_the_playground_of_a_checkout_has_a_database_apart_from_its_demo() -> None:
    assert demo.demo_database_name(tool="playground") != demo.DEMO_DATABASE
    assert demo.demo_database_name(tool="playground").startswith("s3stream_playground_")


def test_demo_advertises_no_option_it_does_not_have() -> None:
    assert "--keep-running" not in (demo.REPO / "tests" / "tools" / "demo.py").read_text()


def test_makefile_never_runs_the_system_package_manager() -> None:
    makefile = (demo.REPO / "Makefile").read_text()
    recipe_lines = [line for line in makefile.splitlines() if line.startswith("\t")]
    assert not [line for line in recipe_lines if "apt-get" in line and "echo" not in line]
