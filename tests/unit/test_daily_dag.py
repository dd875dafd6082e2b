"""The daily example DAG: a warning for an empty interval, one export per day at a time, its interval explained."""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Iterator
from types import ModuleType

import pytest

from tests.tools import demo


def _daily_module() -> ModuleType:
    path = demo.REPO / "dags_examples" / "postgres_to_s3_daily.py"
    spec = importlib.util.spec_from_file_location("s3stream_daily_example", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Recorded(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def warnings_of_the_dag_module() -> Iterator[tuple[ModuleType, list[str]]]:
    daily = _daily_module()
    logger = logging.getLogger(daily.__name__)
    handler = _Recorded()
    logger.addHandler(handler)
    yield daily, handler.lines
    logger.removeHandler(handler)


def test_an_empty_interval_logs_a_warning_naming_the_interval_and_the_file(
    warnings_of_the_dag_module: tuple[ModuleType, list[str]],
) -> None:
    daily, lines = warnings_of_the_dag_module
    result = {"rows": 0, "bucket": "lake", "files": [{"key": "exports/orders/2023-12-31/csv/part-00000.csv.gz"}]}
    assert daily.warn_on_empty_interval(result, "2023-12-31T00:00:00+00:00", "2024-01-01T00:00:00+00:00") == 0
    assert lines == [
        "no rows in [2023-12-31T00:00:00+00:00, 2024-01-01T00:00:00+00:00): published a header-only file "
        "under s3://lake/exports/orders/2023-12-31/csv/part-00000.csv.gz"
    ]


def test_an_interval_with_rows_logs_nothing(warnings_of_the_dag_module: tuple[ModuleType, list[str]]) -> None:
    daily, lines = warnings_of_the_dag_module
    assert daily.warn_on_empty_interval({"rows": 5, "bucket": "lake", "files": []}, "a", "b") == 5
    assert lines == []


def test_two_runs_of_one_interval_never_export_at_once_and_the_docstring_says_which_day_a_run_exports() -> None:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(demo.REPO / "dags_examples" / "postgres_to_s3_daily.py"))
    dag = bag.dags["s3stream_postgres_to_s3_daily"]
    for task_id in ("export_csv", "export_parquet"):
        assert dag.get_task(task_id).max_active_tis_per_dag == 1, task_id
    assert "[D-1, D)" in (dag.doc_md or "") and "[D, D+1)" in (dag.doc_md or "")
