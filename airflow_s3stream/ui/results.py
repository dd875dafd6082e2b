"""What the views read from Airflow's metadata DB: a task instance's result and the recent runs.

Only what the XComs already hold: the ``return_value`` our operators push (a verification that
fails still pushes its report first). Callers pass the api-server's session and the DAG ids the
user may read; nothing here decides access.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_s3stream.ui.views import OPERATOR_KINDS, RunRow, TaskRef, verdict_of

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

__all__ = ["RECENT_RUNS_LIMIT", "TaskResult", "recent_runs", "task_result"]

RECENT_RUNS_LIMIT = 100  # rows in the list of recent runs
RETURN_VALUE = "return_value"


@dataclass(frozen=True)
class TaskResult:
    """A task instance as the views need it: its operator, state and ``return_value`` XCom."""

    ref: TaskRef
    operator: str | None
    state: str | None
    result: Any


def _value(raw: Any) -> Any:
    """An XCom value as stored (JSON text, or JSON already decoded by the driver) as plain data."""
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    return raw


def task_result(session: Session, ref: TaskRef) -> TaskResult | None:
    """The task instance ``ref`` names with its result, or ``None`` when there is no such instance."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from sqlalchemy import select

    ti = session.execute(
        select(TaskInstance.operator, TaskInstance.state).where(
            TaskInstance.dag_id == ref.dag_id,
            TaskInstance.run_id == ref.run_id,
            TaskInstance.task_id == ref.task_id,
            TaskInstance.map_index == ref.map_index,
        )
    ).first()
    if ti is None:
        return None
    raw = session.scalar(
        select(XComModel.value).where(
            XComModel.dag_id == ref.dag_id,
            XComModel.run_id == ref.run_id,
            XComModel.task_id == ref.task_id,
            XComModel.map_index == ref.map_index,
            XComModel.key == RETURN_VALUE,
        )
    )
    return TaskResult(
        ref, ti.operator, None if ti.state is None else str(ti.state), None if raw is None else _value(raw)
    )


def recent_runs(
    session: Session,
    permitted_dag_ids: Collection[str],
    *,
    dag_id: str = "",
    state: str = "",
    limit: int = RECENT_RUNS_LIMIT,
) -> tuple[list[RunRow], list[str]]:
    """The latest task instances of our operators in ``permitted_dag_ids`` (newest first), with
    their verdicts; and the DAG ids that have any (for the filter). ``dag_id`` / ``state`` filter."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from sqlalchemy import and_, select

    if not permitted_dag_ids:
        return [], []
    ours = and_(TaskInstance.operator.in_(list(OPERATOR_KINDS)), TaskInstance.dag_id.in_(list(permitted_dag_ids)))
    query = (
        select(
            TaskInstance.dag_id,
            TaskInstance.run_id,
            TaskInstance.task_id,
            TaskInstance.map_index,
            TaskInstance.operator,
            TaskInstance.state,
            TaskInstance.start_date,
            XComModel.value,
        )
        .outerjoin(
            XComModel,
            and_(
                XComModel.dag_id == TaskInstance.dag_id,
                XComModel.run_id == TaskInstance.run_id,
                XComModel.task_id == TaskInstance.task_id,
                XComModel.map_index == TaskInstance.map_index,
                XComModel.key == RETURN_VALUE,
            ),
        )
        .where(ours)
    )
    if dag_id:
        query = query.where(TaskInstance.dag_id == dag_id)
    if state:
        query = query.where(TaskInstance.state == state)
    query = query.order_by(TaskInstance.start_date.desc().nulls_last(), TaskInstance.task_id).limit(limit)
    rows = []
    for r in session.execute(query):
        result = None if r.value is None else _value(r.value)
        rows.append(
            RunRow(
                ref=TaskRef(r.dag_id, r.run_id, r.task_id, r.map_index),
                operator=r.operator or "",
                state=None if r.state is None else str(r.state),
                start_date=None if r.start_date is None else r.start_date.strftime("%Y-%m-%d %H:%M:%S UTC"),
                verdict=verdict_of(r.operator, result),
            )
        )
    dag_ids = sorted(session.scalars(select(TaskInstance.dag_id).where(ours).distinct()))
    return rows, dag_ids
