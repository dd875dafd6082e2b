"""The Airflow plugin: mounts :mod:`.app` in the api-server and adds its pages to the UI.

Registered through the ``airflow.plugins`` entry point (and listed in the provider info), so
installing the package is all it takes. The UI fills ``{DAG_ID}``, ``{RUN_ID}``, ``{TASK_ID}`` and
``{MAP_INDEX}`` in a ``task_instance`` view's ``href`` and shows the page in a tab of every task
instance; a task that is not one of ours says so.

Every Airflow process loads the plugins, task runners included, so this module imports no
api-server code: the FastAPI app is built on its first request (:class:`LazyApp`), in the api-server.
"""

from __future__ import annotations

import threading
from typing import Any

from airflow.plugins_manager import AirflowPlugin

__all__ = ["EXTERNAL_VIEWS", "URL_PREFIX", "LazyApp", "S3StreamUIPlugin"]

URL_PREFIX = "/s3stream"  # where the api-server mounts the app

TASK_VIEW_HREF = f"{URL_PREFIX}/ti?dag_id={{DAG_ID}}&run_id={{RUN_ID}}&task_id={{TASK_ID}}&map_index={{MAP_INDEX}}"

EXTERNAL_VIEWS: list[dict[str, Any]] = [
    {
        "name": "S3 Stream result",
        "href": TASK_VIEW_HREF,
        "destination": "task_instance",
        "url_route": "s3stream-result",
    },
    {
        "name": "S3 Stream runs",
        "href": f"{URL_PREFIX}/runs",
        "destination": "nav",
        "category": "browse",
        "url_route": "s3stream-runs",
    },
]


class LazyApp:
    """An ASGI app that builds :func:`airflow_s3stream.ui.app.create_app` on its first request."""

    def __init__(self) -> None:
        self._app: Any = None
        self._lock = threading.Lock()

    def app(self) -> Any:
        """The FastAPI app, built once."""
        with self._lock:
            if self._app is None:
                from airflow_s3stream.ui.app import create_app

                self._app = create_app()
            return self._app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app()(scope, receive, send)


class S3StreamUIPlugin(AirflowPlugin):
    """Pages for our operators' results, previews of exported files and a list of recent runs."""

    name = "s3stream"
    fastapi_apps = [{"app": LazyApp(), "url_prefix": URL_PREFIX, "name": "airflow-s3stream views"}]  # noqa: RUF012
    external_views = EXTERNAL_VIEWS
