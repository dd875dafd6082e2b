"""End-to-end fixtures: an Airflow metadata DB for ``dag.test()``, and the example DAGs parsed once.

``tests/conftest.py`` already points ``AIRFLOW_HOME`` at a throwaway directory at import time;
here its SQLite DB is migrated once per session (in a subprocess, as ``airflow db migrate``
would run in a deployment) before any DAG runs, and the DAGs folder is ``dags_examples/``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

DAGS_EXAMPLES = Path(__file__).resolve().parents[2] / "dags_examples"

# dag.test() serializes the DAG from the configured DAG bundle: make that bundle dags_examples/.
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(DAGS_EXAMPLES))


@pytest.fixture(scope="session")
def airflow_db() -> str:
    """Migrate the session's SQLite metadata DB; returns ``AIRFLOW_HOME``."""
    home = os.environ["AIRFLOW_HOME"]
    proc = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, f"airflow db migrate failed:\n{proc.stdout}\n{proc.stderr}"
    return home


@pytest.fixture(scope="session")
def example_dags(airflow_db: str) -> Iterator[dict[str, Any]]:
    """Every DAG in ``dags_examples/``, parsed the way the dag-processor parses them."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS_EXAMPLES))
    assert bag.import_errors == {}, f"example DAGs do not import: {bag.import_errors}"
    yield dict(bag.dags)
