"""airflow-s3stream: constant-memory data movement between Postgres and S3 for Apache Airflow 3."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
