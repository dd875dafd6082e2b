"""The publish core: staged files published whole with their manifest, or not at all.

    from airflow_s3stream.publish import Publication, publish, abandon
    from airflow_s3stream.publish.manifest import MANIFEST_NAME, build_manifest, parse_manifest

:mod:`.manifest` is the one schema, writer and reader of ``_manifest.json``; :mod:`.state` the
commit plan and its persisted state; :mod:`.commit` the staged commit; :mod:`.publication` the
one call each caller makes.
"""

from __future__ import annotations

from airflow_s3stream.publish.commit import CommitOutcome
from airflow_s3stream.publish.publication import Abandoned, Publication, abandon, publish

__all__ = ["Abandoned", "CommitOutcome", "Publication", "abandon", "publish"]
