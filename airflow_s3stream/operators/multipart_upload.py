"""``S3MultipartUploadOperator``: parallel, checksummed, resumable multipart upload of one source.

Thin by design: arguments are validated here (DAG parse time), clients come from
:class:`~airflow_s3stream.hooks.s3.S3StreamHook`, and the work is the upload core
(:mod:`airflow_s3stream.upload`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, ClassVar

from airflow.sdk import BaseOperator

from airflow_s3stream.budget import DEFAULT_MEMORY_BUDGET
from airflow_s3stream.errors import ConfigurationError
from airflow_s3stream.hooks.s3_connection import S3Connection
from airflow_s3stream.operators.failures import named_failures, standing_alone
from airflow_s3stream.operators.links import S3ObjectLink
from airflow_s3stream.progress import plural
from airflow_s3stream.resources import TaskResources
from airflow_s3stream.s3.multipart import MultipartConfig, abort_stale_uploads
from airflow_s3stream.upload import DEFAULT_STATE_PREFIX, ResumableUploader, classify_source, redact_uri, upload_uri

__all__ = ["S3MultipartUploadOperator"]


class S3MultipartUploadOperator(BaseOperator):
    """Upload a local file, a URI, or an S3 object (server-side copy) to ``s3://s3_bucket/s3_key``.

    :param source: local path or ``file://`` URI (ranged parallel reads, resumable); ``s3://b/k``
        in the destination's endpoint (UploadPartCopy, resumable, no bytes through the worker);
        any other URI smart_open opens (streamed, not resumable). Templated.
    :param s3_bucket: destination bucket (templated).
    :param s3_key: destination key (templated).
    :param aws_conn_id: connection of the destination (and of same-endpoint ``s3://`` sources).
    :param source_aws_conn_id: read an ``s3://`` source through this other connection instead
        (another account or endpoint): the bytes are then streamed, not copied server side.
    :param memory_budget: bytes the task's buffers may take (default 128 MiB): part size and parts
        in flight are derived from it (half of it for part buffers: 8 MiB parts, 7 in flight).
    :param part_size: bytes per part; ``None`` = from ``memory_budget``, raised to stay within
        10,000 parts. Must be 5 MiB..5 GiB (checked when the DAG is parsed).
    :param max_concurrency: parts in flight; ``None`` = from ``memory_budget``. Memory for a
        streamed URI source is about ``(max_concurrency + 1) x part_size``; a local file streams
        each part from disk.
    :param checksum_algorithm: ``auto`` (default: CRC32C, or ``Content-MD5`` where the store refuses
        additional checksum headers), ``CRC32C`` (composite), ``CRC32``, ``CRC64NVME`` (full object)
        or ``MD5`` (``Content-MD5`` only, no ``x-amz-checksum-*`` header: every S3-compatible store).
    :param checksum_type: ``COMPOSITE`` or ``FULL_OBJECT``; ``None`` = the algorithm's default.
    :param resume: continue an earlier try's upload of the same unchanged source (default True).
    :param state_prefix: key prefix of the resume state objects in ``s3_bucket``.
    :param verify_part_etag: compare each part's MD5 with its ETag (catches corruption on servers
        that do not check the CRC; ~1.7 s CPU per GB). ``"auto"`` stops once the server echoes our
        CRC (real S3 checks it itself); ``True``/``False``: always / never.
    :param compute_sha256: also report the SHA-256 of the whole source.
    :param extra_args: CreateMultipartUpload/PutObject arguments (``ContentType``, SSE, ...).
    :param abort_stale_uploads_older_than: before uploading, abort incomplete uploads under
        ``stale_uploads_prefix`` started longer ago than this (``timedelta`` or seconds).
    :param stale_uploads_prefix: prefix for that cleanup; ``None`` = ``s3_key`` itself.
    :param max_attempts: tries per S3 request (throttling, 5xx, resets, timeouts); ``None`` = the
        connection's ``config_kwargs.retries``, else 6. botocore's own retries are off.

    Returns (XCom) ``bucket``, ``key``, ``size``, ``parts``, ``part_size``, ``etag``,
    ``checksum_algorithm``, ``checksum_type``, ``checksum``, ``seconds``, ``mb_per_s``,
    ``resumed_parts``, ``uploaded_parts``, ``copied``, ``verified``, ``version_id``, ``sha256``,
    ``source`` (redacted) and ``stale_uploads_aborted``.

    Fails without retry (``AirflowFailException``) when the source is missing or changed, a
    checksum does not match, or S3 refuses for good; raises ``TransientError`` (Airflow retries,
    resuming the upload) when S3 keeps failing. Messages name ``s3://s3_bucket/s3_key``.
    """

    template_fields: Sequence[str] = ("source", "s3_bucket", "s3_key")
    template_fields_renderers: ClassVar[dict[str, str]] = {"source": "py", "s3_key": "py"}
    ui_color = "#ffe4b5"
    operator_extra_links = (S3ObjectLink(),)

    def __init__(
        self,
        *,
        source: str,
        s3_bucket: str,
        s3_key: str,
        aws_conn_id: str | None = "aws_default",
        source_aws_conn_id: str | None = None,
        part_size: int | None = None,
        max_concurrency: int | None = None,
        memory_budget: int = DEFAULT_MEMORY_BUDGET,
        checksum_algorithm: str = "auto",
        checksum_type: str | None = None,
        resume: bool = True,
        state_prefix: str = DEFAULT_STATE_PREFIX,
        verify_part_etag: bool | str = "auto",
        compute_sha256: bool = False,
        extra_args: dict[str, Any] | None = None,
        abort_stale_uploads_older_than: timedelta | float | None = None,
        stale_uploads_prefix: str | None = None,
        max_attempts: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        for name, value in (("source", source), ("s3_bucket", s3_bucket), ("s3_key", s3_key)):
            if not isinstance(value, str) or not value.strip():
                raise ConfigurationError(f"{self.task_id}: {name} must be a non-empty string, got {value!r}")
        try:
            self.task_resources = TaskResources.for_upload(
                memory_budget, part_size=part_size, max_concurrency=max_concurrency, max_attempts=max_attempts
            )
            self.config = MultipartConfig(
                part_size=self.task_resources.parts.part_size,
                max_concurrency=self.task_resources.parts.in_flight,
                checksum_algorithm=checksum_algorithm,
                checksum_type=checksum_type,
                verify_part_etag=verify_part_etag,
                retry=self.task_resources.retry,
            )
        except ValueError as exc:
            raise standing_alone(ConfigurationError(f"{self.task_id}: {exc}"), exc) from None
        if isinstance(abort_stale_uploads_older_than, (int, float)):
            abort_stale_uploads_older_than = timedelta(seconds=abort_stale_uploads_older_than)
        if abort_stale_uploads_older_than is not None and abort_stale_uploads_older_than < timedelta(0):
            raise ConfigurationError(f"{self.task_id}: abort_stale_uploads_older_than must not be negative")
        self.source, self.s3_bucket, self.s3_key = source, s3_bucket, s3_key
        self.aws_conn_id, self.source_aws_conn_id = aws_conn_id, source_aws_conn_id
        self.resume, self.state_prefix = resume, state_prefix
        self.compute_sha256 = compute_sha256
        self.extra_args = dict(extra_args or {})
        self.abort_stale_uploads_older_than = abort_stale_uploads_older_than
        self.stale_uploads_prefix = stale_uploads_prefix
        self.max_attempts = max_attempts
        self._uploader: ResumableUploader | None = None

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage (when installed): the source in, the destination object out."""
        from airflow_s3stream.operators.lineage import upload_lineage

        return upload_lineage(self.source, self.s3_bucket, self.s3_key)

    def execute(self, context: Any) -> dict[str, Any]:
        where = f"s3://{self.s3_bucket}/{self.s3_key}"
        with named_failures(where):
            s3 = S3Connection.open(self.aws_conn_id, self.task_resources)
            client = s3.client
            config = dataclasses.replace(self.config, retry=s3.retry)
            spec = classify_source(self.source, s3_same_endpoint=self.source_aws_conn_id is None)
            try:
                aborted = self._abort_stale(s3)
                self.log.info("uploading %s to %s (%s)", redact_uri(self.source), where, spec.kind)
                if spec.kind == "uri":
                    result = upload_uri(
                        client,
                        spec.location,
                        self.s3_bucket,
                        self.s3_key,
                        config=config,
                        transport_params=self._transport_params(),
                        extra_args=self.extra_args,
                        compute_sha256=self.compute_sha256,
                    )
                else:
                    self._uploader = ResumableUploader(
                        client,
                        self.s3_bucket,
                        self.s3_key,
                        config=config,
                        resume=self.resume,
                        keep_for_retry=_will_retry(context),
                        state_prefix=self.state_prefix,
                        extra_args=self.extra_args,
                        compute_sha256=self.compute_sha256,
                    )
                    if spec.kind == "file":
                        result = self._uploader.upload_file(spec.location)
                    else:
                        result = self._uploader.copy_object(spec.location)
            finally:
                self._uploader = None
        output = result.to_dict()
        output["source"] = redact_uri(self.source)
        output["stale_uploads_aborted"] = aborted
        self.log.info(
            "uploaded %s: %s %s, %.1f MB/s, %s %s, verified %s",
            where,
            plural(result.size, "byte"),
            _how_sent(result.parts, result.resumed_parts),
            result.mb_per_s,
            result.checksum_algorithm,
            result.checksum,
            ", ".join(result.verified) or "nothing",
        )
        output["aws_conn_id"] = self.aws_conn_id  # the provider view reads S3 through it
        return output

    def on_kill(self) -> None:
        """Stop starting parts; the upload and its resume state stay for the next try."""
        uploader = self._uploader
        if uploader is not None:
            uploader.stop()

    def _abort_stale(self, s3: S3Connection) -> int:
        if self.abort_stale_uploads_older_than is None:
            return 0
        prefix = self.s3_key if self.stale_uploads_prefix is None else self.stale_uploads_prefix
        aborted = abort_stale_uploads(
            s3.client, self.s3_bucket, prefix, self.abort_stale_uploads_older_than, retry=s3.retry
        )
        return len(aborted)

    def _transport_params(self) -> dict[str, Any]:
        if self.source_aws_conn_id is None:
            return {}
        return {"client": S3Connection.open(self.source_aws_conn_id, self.task_resources, source=True).client}


def _will_retry(context: Any) -> bool:
    """True when Airflow will run another try after this one fails (keep resume state for it)."""
    ti = context.get("ti") if hasattr(context, "get") else None
    if ti is None:
        return True  # a plain script: keep the state so running it again resumes
    try:
        return int(ti.try_number) <= int(ti.max_tries)
    except (AttributeError, TypeError, ValueError):
        return True


def _how_sent(parts: int, reused: int) -> str:
    """``in one PUT`` (an object that fits one PutObject has no parts), else ``in 3 parts (1 reused)``."""
    if parts == 0:
        return "in one PUT"
    return f"in {plural(parts, 'part')}" + (f" ({reused:,} reused from an earlier try)" if reused else "")
