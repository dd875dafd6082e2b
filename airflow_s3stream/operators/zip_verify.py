"""``S3ZipVerifyOperator``: verify a ZIP (or a zipped BagIt bag) in S3 without downloading it.

Thin by design: arguments are validated here (at DAG parse time), the client comes from
:class:`~airflow_s3stream.hooks.s3.S3StreamHook`, and the work is
:func:`airflow_s3stream.archive.verify.verify_archive`.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any, ClassVar

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from airflow_s3stream.archive.verify import MODES, VerifyConfig, verify_archive
from airflow_s3stream.archive.zip import ZipLimits
from airflow_s3stream.budget import DEFAULT_MEMORY_BUDGET
from airflow_s3stream.errors import ConfigurationError
from airflow_s3stream.hooks.s3_connection import S3Connection
from airflow_s3stream.operators.failures import named_failures, standing_alone
from airflow_s3stream.operators.links import S3ObjectLink
from airflow_s3stream.resources import TaskResources
from airflow_s3stream.s3.objects import put_object
from airflow_s3stream.s3.reader import DEFAULT_BLOCK_SIZE, ReaderConfig, S3ObjectSource

__all__ = ["S3ZipVerifyOperator"]

JSON = "application/json"  # Content-Type of the report object


class S3ZipVerifyOperator(BaseOperator):
    """Check every member of a ZIP in S3 (CRC-32, sizes, structure) and, for a zipped BagIt bag,
    every manifest digest, Payload-Oxum and completeness, in one pass of ranged reads.

    :param s3_bucket: bucket of the archive (templated).
    :param s3_key: key of the archive (templated).
    :param aws_conn_id: Airflow ``aws`` connection.
    :param mode: ``zip``, ``bagit`` or ``auto`` (``bagit`` when a ``bagit.txt`` is found).
    :param report_key: when set, the JSON report is also written to this key in ``s3_bucket``
        (templated), e.g. ``"{{ params.key }}.verification.json"``.
    :param block_size: bytes per read block / parallel GET (default 8 MiB).
    :param prefetch_blocks: parallel block GETs kept in flight ahead of the reader: ``None``
        (default) chooses adaptively, starting with one streamed GET and doubling up to
        ``max_streams`` while throughput grows; ``0`` = always one streamed GET; ``N`` = N GETs.
    :param max_streams: ceiling of the adaptive choice (memory: up to (N + 2) x ``block_size``);
        ``None`` = as many as half of ``memory_budget`` holds (6 at the defaults).
    :param memory_budget: bytes the task's buffers may take (default 128 MiB; :mod:`airflow_s3stream.resources`):
        half for the read-ahead, a sixteenth for inflated bytes waiting for the digest threads.
    :param max_ratio: zip-bomb guard: largest expansion ratio, per member and for the whole archive
        (default 200:1; deflate reaches ~1,032:1, lzma ~7,000:1, bzip2 ~1,180,000:1).
    :param max_total_uncompressed: zip-bomb guard: bytes all members may expand to.
    :param fail_on_invalid: fail the task (without retries) when the archive is invalid; the
        report still goes to XCom and to ``report_key``.
    :param max_attempts: tries per S3 request before the task fails retryably; ``None`` = the
        connection's ``config_kwargs.retries``, else 6.

    Returns the report as a dict (``valid``, ``mode``, ``members_checked``, ``payload_files``,
    ``payload_bytes``, ``algorithms``, ``errors``, ``warnings``, ``requests``, ``bytes_read``,
    ``seconds``...).

    Fails without retry (``AirflowFailException``) when the object is missing, unreadable, not a
    ZIP or was replaced mid-read, or S3 refuses for good; raises ``TransientError`` (Airflow
    retries) when S3 keeps failing. Messages name ``s3://s3_bucket/s3_key``.
    """

    template_fields: Sequence[str] = ("s3_bucket", "s3_key", "report_key", "mode")
    template_fields_renderers: ClassVar[dict[str, str]] = {"s3_key": "py", "report_key": "py"}
    ui_color = "#d9c8f0"
    operator_extra_links = (S3ObjectLink(),)

    def __init__(
        self,
        *,
        s3_bucket: str,
        s3_key: str,
        aws_conn_id: str | None = "aws_default",
        mode: str = "auto",
        report_key: str | None = None,
        block_size: int = DEFAULT_BLOCK_SIZE,
        prefetch_blocks: int | None = None,
        max_streams: int | None = None,
        memory_budget: int = DEFAULT_MEMORY_BUDGET,
        max_ratio: float = ZipLimits.max_ratio,
        max_total_uncompressed: int = ZipLimits.max_total_uncompressed,
        fail_on_invalid: bool = True,
        max_attempts: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not s3_bucket or not s3_key:
            raise ConfigurationError(f"{self.task_id}: s3_bucket and s3_key are required")
        # A templated mode (e.g. "{{ params.mode }}" from a trigger form) is checked once rendered.
        if mode not in MODES and "{{" not in mode:
            raise ConfigurationError(f"{self.task_id}: mode must be one of {', '.join(MODES)}, got {mode!r}")
        try:
            self.task_resources = TaskResources.for_verify(
                memory_budget,
                block_size=block_size,
                prefetch_blocks=prefetch_blocks,
                max_streams=max_streams,
                max_attempts=max_attempts,
            )
            self.hash_queue_bytes = self.task_resources.digest_queue_bytes
            window = self.task_resources.reader
            self.reader_config = ReaderConfig(
                block_size=window.block_size,
                prefetch_blocks=window.prefetch_blocks,
                max_streams=window.max_streams,
                retry=self.task_resources.retry,
            )
            self.limits = ZipLimits(max_ratio=max_ratio, max_total_uncompressed=max_total_uncompressed)
        except ValueError as exc:
            raise standing_alone(ConfigurationError(f"{self.task_id}: {exc}"), exc) from None
        self.s3_bucket, self.s3_key, self.aws_conn_id = s3_bucket, s3_key, aws_conn_id
        self.mode, self.report_key, self.fail_on_invalid = mode, report_key, fail_on_invalid
        self.max_attempts = max_attempts

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage (when installed): the archive in, the report object out when written."""
        from airflow_s3stream.operators.lineage import verify_lineage

        return verify_lineage(self.s3_bucket, self.s3_key, self.report_key)

    def execute(self, context: Any) -> dict[str, Any]:
        if self.mode not in MODES:  # checked again once templates are rendered
            raise AirflowFailException(f"{self.task_id}: mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        with named_failures(f"s3://{self.s3_bucket}/{self.s3_key}", reading=True):
            s3 = S3Connection.open(self.aws_conn_id, self.task_resources)
            client = s3.client
            reader = dataclasses.replace(self.reader_config, retry=s3.retry)
            config = VerifyConfig(
                mode=self.mode, reader=reader, limits=self.limits, hash_queue_bytes=self.hash_queue_bytes
            )
            report = verify_archive(S3ObjectSource(client, self.s3_bucket, self.s3_key), config)
            result = report.to_dict()
            result["aws_conn_id"] = self.aws_conn_id  # the provider view reads S3 through it
            self.log.info("%s", report.summary())
            if self.report_key:
                body = json.dumps(result, indent=2).encode()
                put_object(client, self.s3_bucket, self.report_key, body, reader.retry, ContentType=JSON)
        if not report.valid and self.fail_on_invalid:
            ti = context.get("ti") if hasattr(context, "get") else None
            if ti is not None:
                ti.xcom_push(key="return_value", value=result)
            raise AirflowFailException(report.summary())
        return result
