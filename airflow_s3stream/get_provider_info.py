"""Provider metadata read by Airflow through the ``apache_airflow_provider`` entry point."""

from __future__ import annotations

from typing import Any

__all__ = ["get_provider_info"]


def get_provider_info() -> dict[str, Any]:
    """Return the provider description ``airflow providers list`` shows."""
    from airflow_s3stream import __version__

    return {
        "package-name": "airflow-s3stream",
        "name": "S3 Stream",
        "description": (
            "Stream Postgres query results to S3, verify huge ZIP/BagIt archives in S3 with "
            "ranged reads, package S3 objects into zipped BagIt bags, and run resumable parallel "
            "multipart uploads, in constant memory."
        ),
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "S3 Stream",
                "external-doc-url": "https://pypi.org/project/airflow-s3stream/",
                "tags": ["aws", "software"],
            }
        ],
        "operators": [
            {
                "integration-name": "S3 Stream",
                "python-modules": [
                    "airflow_s3stream.operators.postgres_to_s3",
                    "airflow_s3stream.operators.s3_to_postgres",
                    "airflow_s3stream.operators.job_commit",
                    "airflow_s3stream.operators.multipart_upload",
                    "airflow_s3stream.operators.zip_verify",
                    "airflow_s3stream.operators.bag_package",
                ],
            }
        ],
        "hooks": [
            {
                "integration-name": "S3 Stream",
                "python-modules": [
                    "airflow_s3stream.hooks.s3",
                    "airflow_s3stream.hooks.postgres",
                ],
            }
        ],
        "extra-links": ["airflow_s3stream.operators.links.S3ObjectLink"],
        "plugins": [{"name": "s3stream", "plugin-class": "airflow_s3stream.ui.plugin.S3StreamUIPlugin"}],
    }
