"""``S3ToBagItZipOperator``: package S3 objects into a zipped BagIt bag in S3, in one pass, no disk.

Thin by design: arguments are validated here (at DAG parse time where they are not templated),
clients come from :class:`~airflow_s3stream.hooks.s3.S3StreamHook`, the bag is written by
:func:`airflow_s3stream.archive.package.package_bag` into a staged
:class:`~airflow_s3stream.s3.multipart.MultipartWriter`, and published by
:func:`airflow_s3stream.publish.publish`, so the ZIP appears only when complete, a failed run
leaves any previous object as it was, and uploads of the key left open by killed tries are aborted.
"""

from __future__ import annotations

import dataclasses
import posixpath
import time
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from airflow_s3stream.archive.package import COMPRESSIONS, PackageConfig, package_bag
from airflow_s3stream.archive.sources import DEFAULT_PREFETCH_OBJECTS, s3_payload
from airflow_s3stream.archive.verify import VerifyConfig, verify_archive
from airflow_s3stream.budget import DEFAULT_MEMORY_BUDGET
from airflow_s3stream.errors import ConfigurationError
from airflow_s3stream.hooks.s3_connection import S3Connection
from airflow_s3stream.operators.failures import named_failures, standing_alone
from airflow_s3stream.operators.links import S3ObjectLink
from airflow_s3stream.progress import plural
from airflow_s3stream.publish import Publication, publish
from airflow_s3stream.resources import TaskResources
from airflow_s3stream.s3.multipart import MultipartConfig, MultipartWriter
from airflow_s3stream.s3.reader import ReaderConfig, S3ObjectSource

__all__ = ["S3ToBagItZipOperator"]

ZIP = "application/zip"


def _templated(value: Any) -> bool:
    return isinstance(value, str) and "{{" in value


class S3ToBagItZipOperator(BaseOperator):
    """Make a zipped BagIt bag (RFC 8493) of S3 objects and write it to ``s3://s3_bucket/s3_key``.

    Every source object is streamed once into a ZIP64 stream (deflate or store, data descriptors);
    the manifest digests are computed on the same bytes; ``bagit.txt``, ``bag-info.txt`` (with
    ``Payload-Oxum``, ``Bagging-Date`` and ``bag_info``), ``manifest-<alg>.txt`` and
    ``tagmanifest-<alg>.txt`` are written at the end. Nothing touches local disk.

    :param source_bucket: bucket of the source objects (templated).
    :param source_prefix: package every object under this prefix (templated); payload paths are
        the keys relative to it, under ``data/``. Keys ending in ``/`` (folder markers) are skipped.
    :param source_keys: or package exactly these keys (templated), each under ``source_prefix``.
    :param s3_bucket: bucket of the bag (templated).
    :param s3_key: key of the bag (templated), e.g. ``"bags/{{ ds }}.zip"``.
    :param checksums: manifest algorithms, ``sha256`` and/or ``sha512`` (not templated).
    :param bag_info: ``bag-info.txt`` fields (templated); ``Payload-Oxum`` is computed.
    :param bag_name: the bag's directory inside the ZIP (templated); default: ``s3_key``'s file
        name without ``.zip``.
    :param compression: ``deflate`` (default) or ``store`` (templated).
    :param verify_after: verify the published bag with the package's verifier (``bagit`` mode);
        an invalid bag fails the task.
    :param aws_conn_id: connection of the destination (and of the sources by default).
    :param source_aws_conn_id: connection of the sources when they are elsewhere.
    :param memory_budget: bytes the task's buffers may take (default 128 MiB): part size and parts
        in flight of the ZIP's upload are derived from it (:mod:`airflow_s3stream.resources`).
    :param part_size: multipart part size in bytes (``None``: from ``memory_budget``).
    :param max_concurrency: parts uploading at once (``None``: from ``memory_budget``).
    :param prefetch_objects: source objects opened ahead (many small objects on real S3).

    Returns ``{key, files, payload_bytes, zip_bytes, oxum, manifests: {alg: member}, seconds,
    mb_per_s}`` (plus ``bucket``, ``bag_name`` and, with ``verify_after``, ``verification``).
    Fails without retry (``AirflowFailException``) on a missing source, an unsafe payload path or
    an invalid result; a ``TransientError`` (S3 kept failing) lets Airflow retry.
    """

    template_fields: Sequence[str] = (
        "source_bucket",
        "source_prefix",
        "source_keys",
        "s3_bucket",
        "s3_key",
        "bag_info",
        "bag_name",
        "compression",
    )
    template_fields_renderers: ClassVar[dict[str, str]] = {"bag_info": "json", "source_keys": "json"}
    ui_color = "#c8e6d9"
    operator_extra_links = (S3ObjectLink(),)

    def __init__(
        self,
        *,
        source_bucket: str,
        s3_bucket: str,
        s3_key: str,
        source_prefix: str = "",
        source_keys: Sequence[str] | str | None = None,
        checksums: Sequence[str] = ("sha256",),
        bag_info: Mapping[str, Any] | str | None = None,
        bag_name: str | None = None,
        compression: str = "deflate",
        verify_after: bool = False,
        aws_conn_id: str | None = "aws_default",
        source_aws_conn_id: str | None = None,
        part_size: int | None = None,
        max_concurrency: int | None = None,
        memory_budget: int = DEFAULT_MEMORY_BUDGET,
        prefetch_objects: int = DEFAULT_PREFETCH_OBJECTS,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not source_bucket or not s3_bucket or not s3_key:
            raise ConfigurationError(f"{self.task_id}: source_bucket, s3_bucket and s3_key are required")
        if isinstance(checksums, str):
            raise ConfigurationError(f"{self.task_id}: checksums must be a list such as ['sha256'], got {checksums!r}")
        self.checksums = tuple(checksums)
        if source_keys is not None and not _templated(source_keys) and isinstance(source_keys, str):
            raise ConfigurationError(f"{self.task_id}: source_keys must be a list of keys, got {source_keys!r}")
        if not 1 <= prefetch_objects <= 64:
            raise ConfigurationError(f"{self.task_id}: prefetch_objects must be within 1..64, got {prefetch_objects}")
        self.source_bucket, self.source_prefix, self.source_keys = source_bucket, source_prefix, source_keys
        self.s3_bucket, self.s3_key = s3_bucket, s3_key
        self.bag_info = bag_info or {}
        self.bag_name = bag_name
        self.compression = compression
        self.verify_after = verify_after
        self.aws_conn_id, self.source_aws_conn_id = aws_conn_id, source_aws_conn_id
        self.prefetch_objects = prefetch_objects
        try:
            self.task_resources = TaskResources.for_package(
                memory_budget,
                part_size=part_size,
                max_concurrency=max_concurrency,
                prefetch_objects=prefetch_objects,
                separate_source=bool(source_aws_conn_id),
            )
            parts = self.task_resources.parts
            self.multipart_config = MultipartConfig(part_size=parts.part_size, max_concurrency=parts.in_flight)
            self._package_config()  # what is not templated is checked now, at parse time
        except (ValueError, ConfigurationError) as exc:
            raise standing_alone(ConfigurationError(f"{self.task_id}: {exc}"), exc) from None

    def _package_config(self) -> PackageConfig:
        """The package config from the (rendered) arguments; templated ones get a placeholder."""
        name = self.bag_name or posixpath.basename(self.s3_key).removesuffix(".zip") or "bag"
        info = self.bag_info
        return PackageConfig(
            bag_name="bag" if _templated(name) else name,
            checksums=self.checksums,
            bag_info={} if _templated(info) else info,  # type: ignore[arg-type]
            compression="deflate" if _templated(self.compression) else self.compression,
        )

    def execute(self, context: Any) -> dict[str, Any]:
        if self.compression not in COMPRESSIONS:
            raise AirflowFailException(
                f"{self.task_id}: compression must be 'deflate' or 'store', got {self.compression!r}"
            )
        if not isinstance(self.bag_info, Mapping):
            raise AirflowFailException(f"{self.task_id}: bag_info must render to a mapping, got {self.bag_info!r}")
        if self.source_keys is not None and isinstance(self.source_keys, str):
            raise AirflowFailException(f"{self.task_id}: source_keys must render to a list, got {self.source_keys!r}")
        try:
            config = self._package_config()
        except ConfigurationError as exc:
            raise standing_alone(AirflowFailException(f"{self.task_id}: {exc}"), exc) from None
        started = time.monotonic()
        target = f"s3://{self.s3_bucket}/{self.s3_key}"
        with named_failures(target):
            dest_s3 = S3Connection.open(self.aws_conn_id, self.task_resources)
            source_s3 = (
                S3Connection.open(self.source_aws_conn_id, self.task_resources, source=True)
                if self.source_aws_conn_id
                else dest_s3
            )
            dest, source, retry = dest_s3.client, source_s3.client, source_s3.retry
            mp_config = dataclasses.replace(self.multipart_config, retry=dest_s3.retry)
            files = s3_payload(
                source,
                self.source_bucket,
                prefix=self.source_prefix,
                keys=list(self.source_keys) if self.source_keys is not None else None,
                reader_config=ReaderConfig(prefetch_blocks=0, retry=retry),
                retry=retry,
                prefetch_objects=self.prefetch_objects,
            )
            with MultipartWriter(
                dest, self.s3_bucket, self.s3_key, config=mp_config, extra_args={"ContentType": ZIP}, stage=True
            ) as writer:
                result = package_bag(files, writer, config)
            staged = writer.staged
            assert staged is not None
            outcome = publish(dest, Publication(self.s3_bucket, (staged,), owned_prefix=self.s3_key), mp_config)
            published = outcome.results[self.s3_key]
            seconds = time.monotonic() - started
            xcom: dict[str, Any] = {
                "bucket": self.s3_bucket,
                "key": self.s3_key,
                "bag_name": result.bag_name,
                "files": result.files,
                "payload_bytes": result.payload_bytes,
                "zip_bytes": result.zip_bytes,
                "oxum": result.oxum,
                "manifests": result.manifests,
                "seconds": round(seconds, 3),
                "mb_per_s": round(result.payload_bytes / 1e6 / max(seconds, 1e-9), 2),
                "etag": published.to_dict().get("etag"),
            }
            self.log.info(
                "packaged %s (%s, Oxum %s) into %s (%s) in %.2f s",
                plural(result.files, "file"), plural(result.payload_bytes, "byte"), result.oxum, target,
                plural(result.zip_bytes, "byte"), seconds,
            )  # fmt: skip
            if self.verify_after:
                report = verify_archive(
                    S3ObjectSource(dest, self.s3_bucket, self.s3_key),
                    VerifyConfig(mode="bagit", reader=ReaderConfig(retry=dest_s3.retry)),
                )
                self.log.info("%s", report.summary())
                xcom["verification"] = {"valid": report.valid, "errors": [str(e) for e in report.errors[:20]]}
                if not report.valid:
                    raise AirflowFailException(f"{target}: the bag just written does not verify:\n{report.summary()}")
        xcom["aws_conn_id"] = self.aws_conn_id  # the provider view reads S3 through it
        return xcom
