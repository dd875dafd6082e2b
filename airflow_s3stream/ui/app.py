"""The FastAPI app the api-server mounts under ``/s3stream`` (``plugin.URL_PREFIX``), behind Airflow's auth.

Routes (HTML pages, shown by the UI in an iframe: a tab of each task instance and a nav entry):

* ``GET /ti?dag_id&run_id&task_id&map_index``: a task's result as a page; needs read access to
  the DAG's task instances and XComs (``requires_access_dag``), else 403 and nothing of the DAG.
* ``GET /preview?...&key``: the first rows of one file the task's result (or its manifest)
  lists, never any other key, read through the task's S3 connection within the preview budget.
* ``GET /runs?dag_id&state``: recent task instances of our operators in the DAGs the user may read.

The user is the api-server's (the UI's ``_token`` cookie, or a bearer token); the DB session is
the api-server's. S3 is reached through the task's own Airflow connection: the ``aws_conn_id`` every
operator's result records (a result from before it did: the operators' default ``aws_default``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.common.db.common import SessionDep
from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_dag
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from airflow_s3stream.errors import S3StreamError
from airflow_s3stream.ui import views
from airflow_s3stream.ui.preview import BudgetExceededError, PreviewBudget, preview_object
from airflow_s3stream.ui.results import TaskResult, recent_runs, task_result

__all__ = ["DEFAULT_AWS_CONN_ID", "create_app", "manifest_of", "parse_map_index", "previewable_keys"]

DEFAULT_AWS_CONN_ID = "aws_default"  # the operators' default aws_conn_id

_CAN_READ_RESULTS = [
    Depends(requires_access_dag("GET", DagAccessEntity.TASK_INSTANCE)),
    Depends(requires_access_dag("GET", DagAccessEntity.XCOM)),
]


def _s3(result: Mapping[str, Any]) -> tuple[Any, Any]:
    """The boto3 client and retry policy of the task's connection."""
    from airflow_s3stream.hooks.s3 import S3StreamHook

    hook = S3StreamHook(aws_conn_id=str(result.get("aws_conn_id") or DEFAULT_AWS_CONN_ID))
    return hook.get_s3_client(), hook.retry_policy(2)


def manifest_of(result: Any) -> tuple[dict[str, Any] | None, str | None]:
    """The manifest document an export's or commit's result names, or why it could not be read."""
    from airflow_s3stream.publish.manifest import parse_manifest
    from airflow_s3stream.s3.objects import get_object_bytes

    if not isinstance(result, Mapping) or not result.get("manifest_key") or not result.get("bucket"):
        return None, None
    bucket, key = str(result["bucket"]), str(result["manifest_key"])
    try:
        client, retry = _s3(result)
        body = get_object_bytes(client, bucket, key, retry, what=f"manifest s3://{bucket}/{key}")
        if body is None:
            return None, f"manifest s3://{bucket}/{key}: no such object (replaced or deleted since the run?)"
        return parse_manifest(body, bucket, key).document, None
    except (S3StreamError, ValueError) as exc:
        return None, str(exc)
    except Exception as exc:  # a connection that no longer works: say so on the page, not a 500
        return None, f"manifest s3://{bucket}/{key}: {type(exc).__name__}: {exc}"


def previewable_keys(result: Any, manifest: Mapping[str, Any] | None) -> list[str]:
    """The data files a task's result (or its manifest) lists: the only keys a preview may read."""
    keys: list[str] = []
    for source in (result, manifest):
        if isinstance(source, Mapping):
            for entry in source.get("files") or []:
                if isinstance(entry, Mapping) and entry.get("key") and str(entry["key"]) not in keys:
                    keys.append(str(entry["key"]))
    return keys


def parse_map_index(value: str) -> int:
    """The ``map_index`` query parameter as an int: the UI leaves ``{MAP_INDEX}`` unfilled for a task
    that is not mapped, which means -1 (as does an empty value).

    :raises HTTPException: 422 for anything else that is not an integer.
    """
    if value in ("", "{MAP_INDEX}"):
        return -1
    try:
        return int(value)
    except ValueError:
        raise HTTPException(422, f"map_index must be an integer, got {value!r}") from None


def _html(body: str, status_code: int = 200) -> HTMLResponse:
    return HTMLResponse(body, status_code=status_code, headers={"Cache-Control": "no-store"})


def _load(session: Any, ref: views.TaskRef) -> TaskResult:
    found = task_result(session, ref)
    if found is None:
        raise HTTPException(
            404, f"no task instance {ref.task_id} (map index {ref.map_index}) in run {ref.run_id} of {ref.dag_id}"
        )
    return found


def create_app() -> FastAPI:
    """The plugin's FastAPI app (no OpenAPI docs of its own: the pages are for browsers)."""
    app = FastAPI(title="airflow-s3stream views", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(StarletteHTTPException)
    async def refused(request: Request, exc: StarletteHTTPException) -> HTMLResponse:
        # 401/403 say only that: nothing of the DAG is rendered.
        messages = {401: "Not signed in to Airflow.", 403: "You do not have access to this DAG's results."}
        return _html(
            views.render_error(exc.status_code, messages.get(exc.status_code, str(exc.detail))), exc.status_code
        )

    @app.get("/ti", response_class=HTMLResponse, dependencies=_CAN_READ_RESULTS)
    def task_instance_page(
        session: SessionDep,
        dag_id: Annotated[str, Query()],
        run_id: Annotated[str, Query()],
        task_id: Annotated[str, Query()],
        map_index: Annotated[str, Query()] = "-1",
    ) -> HTMLResponse:
        ref = views.TaskRef(dag_id, run_id, task_id, parse_map_index(map_index))
        found = _load(session, ref)
        if views.result_kind(found.operator, found.result) == "unknown" and found.operator not in views.OPERATOR_KINDS:
            body = (
                f"<p class='muted'>{views.e(task_id)} ({views.e(found.operator)}) is not an airflow-s3stream task.</p>"
            )
            return _html(views.page(f"{task_id}", body))
        manifest, error = (None, None)
        if views.result_kind(found.operator, found.result) in ("export", "commit") and not (
            isinstance(found.result, Mapping) and found.result.get("staged")
        ):
            manifest, error = manifest_of(found.result)
        title = f"{task_id}{'' if ref.map_index < 0 else f'[{ref.map_index}]'} · {found.state or 'no state'}"
        body = views.render_result(
            found.result, operator=found.operator, ref=ref, manifest=manifest, manifest_error=error
        )
        return _html(views.page(title, f"<p class='muted'>{views.e(dag_id)} / {views.e(run_id)}</p>{body}"))

    @app.get("/preview", response_class=HTMLResponse, dependencies=_CAN_READ_RESULTS)
    def preview_page(  # noqa: PLR0917 (FastAPI query parameters)
        session: SessionDep,
        dag_id: Annotated[str, Query()],
        run_id: Annotated[str, Query()],
        task_id: Annotated[str, Query()],
        key: Annotated[str, Query()],
        map_index: Annotated[str, Query()] = "-1",
    ) -> HTMLResponse:
        ref = views.TaskRef(dag_id, run_id, task_id, parse_map_index(map_index))
        found = _load(session, ref)
        manifest, _ = manifest_of(found.result)
        if key not in previewable_keys(found.result, manifest):
            raise HTTPException(404, f"{key} is not a file this task's result lists")
        result: Mapping[str, Any] = found.result
        bucket = str(result.get("bucket"))
        settings = manifest or {}
        try:
            client, retry = _s3(result)
            shown = preview_object(
                client,
                bucket,
                key,
                retry=retry,
                budget=PreviewBudget(),
                file_format=settings.get("format"),
                compression=settings.get("compression") if settings.get("format") != "parquet" else None,
                csv_settings=settings.get("csv"),
            )
        except (S3StreamError, BudgetExceededError, ValueError) as exc:
            return _html(views.page(f"preview of {key}", f"<div class='refused'>{views.e(exc)}</div>"), 422)
        body = views.render_preview(f"s3://{bucket}/{key}", shown.columns, shown.rows, shown.summary())
        back = f"<p><a href='ti?{views.e(ref.query())}'>back to {views.e(task_id)}</a></p>"
        return _html(views.page(f"preview of {key.rsplit('/', 1)[-1]}", back + body))

    @app.get("/runs", response_class=HTMLResponse)
    def runs_page(
        session: SessionDep,
        user: GetUserDep,
        dag_id: Annotated[str, Query()] = "",
        state: Annotated[str, Query()] = "",
    ) -> HTMLResponse:
        from airflow.api_fastapi.app import get_auth_manager

        permitted = get_auth_manager().get_authorized_dag_ids(user=user, method="GET")
        rows, dag_ids = recent_runs(session, permitted, dag_id=dag_id, state=state)
        body = views.render_runs(rows, dag_id=dag_id, state=state, dag_ids=dag_ids)
        return _html(views.page("airflow-s3stream: recent runs", body))

    return app
