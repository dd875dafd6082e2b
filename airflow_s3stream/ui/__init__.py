"""The Airflow UI plugin: pages for our operators' results, a preview of exported files and a list
of recent runs, served by the api-server under Airflow's own authentication.

:mod:`.views` renders (pure), :mod:`.preview` reads the first rows of an exported file,
:mod:`.results` queries the metadata DB, :mod:`.app` is the FastAPI app and :mod:`.plugin`
registers it with Airflow.
"""

from __future__ import annotations

__all__: list[str] = []
