"""``make demo`` finds the example DAGs wherever the checkout is."""

from __future__ import annotations

from tests.support import demo


def test_demo_runs_the_dag_from_the_checkouts_example_dags() -> None:
    assert (demo.REPO / "dags_examples" / "postgres_to_s3_daily.py").is_file()
    assert (demo.REPO / "Makefile").is_file()
