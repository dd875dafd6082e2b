"""``S3StreamCommitOperator`` and ``S3StreamAbortOperator``: one export from many mapped tasks.

The export tasks run with ``stage_only=True``: each stages its files (multipart uploads left
open) and returns their records through XCom. Then:

* ``S3StreamCommitOperator`` (after every export task succeeded) publishes all of them under one
  manifest, ``<s3_prefix>/_manifest.json``: the same staged commit a single task runs;
* ``S3StreamAbortOperator``, the job's teardown (``.as_teardown()``: it runs when everything
  before it is done, whatever their states, and does not decide the run's state), aborts every
  upload still staged. After a successful commit there is nothing left to abort.

The work is :mod:`airflow_s3stream.export.job`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator, TriggerRule

from airflow_s3stream.errors import ConfigurationError
from airflow_s3stream.export.job import abort_job, commit_job
from airflow_s3stream.hooks.s3_connection import S3Connection
from airflow_s3stream.operators.assets import annotate_outlets
from airflow_s3stream.operators.failures import named_failures, standing_alone
from airflow_s3stream.operators.links import S3ObjectLink
from airflow_s3stream.progress import plural
from airflow_s3stream.resources import TaskResources
from airflow_s3stream.s3.multipart import DEFAULT_MAX_CONCURRENCY, MultipartConfig

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

__all__ = ["S3StreamAbortOperator", "S3StreamCommitOperator"]


class _JobOperator(BaseOperator):
    """What both job operators take: the job's bucket and prefix, and the export tasks' results."""

    template_fields: Sequence[str] = ("s3_bucket", "s3_prefix", "staged")
    operator_extra_links = (S3ObjectLink(),)
    s3_link_is_prefix = True

    def __init__(
        self,
        *,
        s3_bucket: str,
        s3_prefix: str,
        staged: Any,
        aws_conn_id: str | None = "aws_default",
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        max_attempts: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not s3_bucket or not s3_prefix:
            raise ConfigurationError(f"{self.task_id}: s3_bucket and s3_prefix are required")
        if staged is None:
            raise ConfigurationError(
                f"{self.task_id}: staged is required: the export tasks' results, e.g. staged=exports.output"
            )
        try:
            self.upload_config = MultipartConfig(max_concurrency=max_concurrency)
            self.task_resources = TaskResources.for_commit(max_concurrency=max_concurrency, max_attempts=max_attempts)
        except ConfigurationError as exc:
            raise standing_alone(ConfigurationError(f"{self.task_id}: {exc}"), exc) from None
        self.s3_bucket, self.s3_prefix, self.staged = s3_bucket, s3_prefix, staged
        self.aws_conn_id, self.max_attempts = aws_conn_id, max_attempts

    @property
    def s3_key(self) -> str:
        """What the "S3 object" link opens: the job's prefix."""
        return self.s3_prefix

    def _client_and_config(self) -> tuple[S3Client, MultipartConfig]:
        s3 = S3Connection.open(self.aws_conn_id, self.task_resources)
        return s3.client, dataclasses.replace(self.upload_config, retry=s3.retry)

    def _results(self) -> list[Mapping[str, Any] | None]:
        staged = self.staged
        if isinstance(staged, Mapping):  # one unmapped export task
            return [staged]
        if isinstance(staged, Iterable) and not isinstance(staged, (str, bytes)):
            return list(staged)
        raise ConfigurationError(f"{self.task_id}: staged must be the export tasks' results, got {type(staged)}")


class S3StreamCommitOperator(_JobOperator):
    """Publish the files staged by ``stage_only`` export tasks as one export under ``s3_prefix``.

    :param s3_bucket: the bucket every task staged into (templated).
    :param s3_prefix: the job's prefix (templated): every staged key lies under it, the manifest is
        ``<s3_prefix>/_manifest.json`` and the commit state ``<s3_prefix>/_commit.json``.
    :param staged: the export tasks' results, e.g. ``exports.output`` of a mapped
        :class:`~airflow_s3stream.operators.PostgresToS3StreamOperator` (``stage_only=True``).
    :param aws_conn_id: Airflow ``aws`` connection.
    :param max_concurrency: Completes (and checks) running at once (default 8).
    :param max_attempts: tries per S3 request; ``None`` = the connection's, else 6.

    Steps: finish a commit an earlier try of this job recorded; check every staged upload is still
    open (else fail without publishing anything, and abort the rest); write the commit state;
    complete every upload; delete the files the replaced manifest listed that this export does not
    write; write the manifest LAST; drop the state; abort uploads left under the prefix by killed
    tries. Returns (XCom) ``{"bucket", "manifest_key", "files", "rows", "bytes", "deleted_stale",
    "commit_ms"}``; each Asset in ``outlets`` gets ``{"bucket", "key", "manifest_key", "rows", "bytes"}``.
    """

    ui_color = "#b5dcc0"

    def execute(self, context: Any) -> dict[str, Any]:
        where = f"s3://{self.s3_bucket}/{self.s3_prefix}"
        with named_failures(where):
            client, config = self._client_and_config()
            done = commit_job(
                client, bucket=self.s3_bucket, prefix=self.s3_prefix, results=self._results(), config=config
            )
        self.log.info(
            "published %s, %s, under s3://%s/%s in %.1f ms (deleted %d stale)",
            plural(len(done.files), "file"),
            plural(done.rows, "row"),
            done.bucket,
            done.manifest_key,
            done.commit_ms,
            len(done.deleted_stale),
        )
        annotate_outlets(
            context,
            self.outlets,
            {
                "bucket": done.bucket,
                "key": self.s3_prefix,
                "manifest_key": done.manifest_key,
                "rows": done.rows,
                "bytes": done.bytes,
            },
        )
        return {**done.to_dict(), "aws_conn_id": self.aws_conn_id}  # the provider view reads S3 through it


class S3StreamAbortOperator(_JobOperator):
    """Abort what ``stage_only`` export tasks staged under ``s3_prefix``: the job's cleanup.

    Use it as the job's teardown: ``S3StreamAbortOperator(...).as_teardown()`` downstream of the
    commit. It then runs once every task before it is done, whatever their states, and its own
    success does not hide a failed run. Without ``as_teardown()`` its trigger rule is ``all_done``.

    It finishes a commit that had started (recorded in ``<s3_prefix>/_commit.json``: such a commit
    only rolls forward), then aborts the uploads of ``staged`` (the tasks that succeeded) and every
    other upload open under the prefix (tasks killed while staging; needs ``s3:ListBucketMultipartUploads``,
    skipped with a warning without it). The previous export is left as it was.
    Params as :class:`S3StreamCommitOperator`. Returns ``{"aborted": [keys], "finished_commit"}``.
    """

    ui_color = "#f4c7c3"

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("trigger_rule", TriggerRule.ALL_DONE)
        super().__init__(**kwargs)

    def execute(self, context: Any) -> dict[str, Any]:
        where = f"s3://{self.s3_bucket}/{self.s3_prefix}"
        with named_failures(where):
            client, config = self._client_and_config()
            done = abort_job(
                client, bucket=self.s3_bucket, prefix=self.s3_prefix, results=self._results(), config=config
            )
        if done.aborted:
            self.log.warning(
                "aborted %s under %s; the previous export is as it was",
                plural(len(done.aborted), "staged upload"),
                where,
            )
        else:
            self.log.info("nothing staged under %s is left open", where)
        return {**done.to_dict(), "aws_conn_id": self.aws_conn_id}  # the provider view reads S3 through it
