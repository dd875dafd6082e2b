"""End-to-end fixtures: an Airflow metadata DB for ``dag.test()``, and the example DAGs parsed once.

``tests/conftest.py`` already points ``AIRFLOW_HOME`` at a throwaway directory at import time;
here its SQLite DB is a copy of one migrated once per test run (in a subprocess, as ``airflow db
migrate`` would run in a deployment; the AirflowStack deployments copy the same one) before any
DAG runs, and the DAGs folder is ``dags_examples/``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.airflow_stack import migrated_sqlite_db

DAGS_EXAMPLES = Path(__file__).resolve().parents[2] / "dags_examples"

# dag.test() serializes the DAG from the configured DAG bundle: make that bundle dags_examples/.
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(DAGS_EXAMPLES))


@pytest.fixture(scope="session")
def migrated_airflow_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite metadata DB to copy from: one per test run, shared by the xdist workers."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the run's directory, above each worker's own
    return migrated_sqlite_db(root / "airflow-metadata-template")


@pytest.fixture(scope="session")
def airflow_db(migrated_airflow_db: Path) -> str:
    """The session's SQLite metadata DB, migrated (a copy of the run's template); returns ``AIRFLOW_HOME``."""
    home = os.environ["AIRFLOW_HOME"]
    shutil.copyfile(migrated_airflow_db, Path(home) / "airflow.db")
    return home


@pytest.fixture(scope="session")
def example_dags(airflow_db: str) -> Iterator[dict[str, Any]]:
    """Every DAG in ``dags_examples/``, parsed the way the dag-processor parses them."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS_EXAMPLES))
    assert bag.import_errors == {}, f"example DAGs do not import: {bag.import_errors}"
    yield dict(bag.dags)
