"""Asset events: what an operator published, as the ``extra`` of its outlets' events.

Airflow 3 emits an asset event for each of a task's outlets when the task succeeds; downstream
DAGs scheduled on the asset read ``extra`` from ``triggering_asset_events``. The package's
operators fill it with where the data is and how much of it there is, e.g.
``{"bucket", "key", "manifest_key", "rows", "bytes"}``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["annotate_outlets"]


def annotate_outlets(context: Mapping[str, Any], outlets: Iterable[Any], extra: Mapping[str, Any]) -> None:
    """Set ``extra`` on the event of every asset among ``outlets`` (aliases and other outlets are skipped)."""
    from airflow.sdk import Asset

    events = context.get("outlet_events")
    if events is None:
        return
    for outlet in outlets:
        if isinstance(outlet, Asset):
            events[outlet].extra.update(dict(extra))
