"""The package's exception hierarchy. Every message names the object at fault.

``S3StreamError`` is the root. Two branches matter to Airflow:

* :class:`InvalidInputError` (and its subclasses) means retrying cannot help: a bad parameter, a
  missing source, a corrupt archive. Operators turn it into ``AirflowFailException``.
* :class:`TransientError` means the remote side misbehaved (throttling, resets) and our own
  retries were exhausted; Airflow's task retries may still succeed.
"""

from __future__ import annotations

__all__ = [
    "ArchiveError",
    "BagError",
    "ChecksumMismatchError",
    "ConcurrentUploadError",
    "ConfigurationError",
    "DestinationError",
    "ExportConnectionError",
    "ExportError",
    "InvalidInputError",
    "LoadConnectionError",
    "LoadError",
    "ObjectChangedError",
    "QueryError",
    "RowRejectedError",
    "S3StreamError",
    "SourceChangedError",
    "SourceError",
    "TableNotFoundError",
    "TransientError",
    "UploadError",
    "UploadInterruptedError",
]


class S3StreamError(Exception):
    """Root of every error this package raises on purpose."""


class InvalidInputError(S3StreamError):
    """Retrying will not help: the input, the configuration or the data is wrong."""


class ConfigurationError(InvalidInputError, ValueError):
    """A parameter is invalid; raised as early as possible (DAG parse time for operators)."""


class TransientError(S3StreamError):
    """A remote failure that outlived our own retries; a later task try may succeed."""


# --- sources and destinations ---------------------------------------------------------------


class SourceError(InvalidInputError):
    """The source (file, URI, object, query) is missing or unreadable."""


class DestinationError(InvalidInputError):
    """The destination bucket is missing, or the credentials may not write to it."""


class ObjectChangedError(InvalidInputError):
    """An S3 object was replaced while we were reading it (ETag/VersionId no longer matches)."""


# --- multipart uploads ----------------------------------------------------------------------


class UploadError(S3StreamError):
    """A multipart upload failed; the message names the bucket, key and part."""


class ChecksumMismatchError(InvalidInputError):
    """Bytes stored differ from bytes sent or expected (part, object or archive member)."""


class SourceChangedError(InvalidInputError):
    """The upload source changed between tries or during the upload."""


class UploadInterruptedError(TransientError):
    """The upload was stopped (task killed); its resume state was kept for the next try."""


class ConcurrentUploadError(TransientError):
    """Another live try holds the resume state of the same destination; this try left it alone.

    Retryable: once that try finishes, releases the state or stops renewing it, a later try resumes.
    """


# --- Postgres export ------------------------------------------------------------------------


class ExportError(S3StreamError):
    """The query failed or the connection was lost during an export."""


class QueryError(ExportError, InvalidInputError):
    """Postgres rejected the query (syntax, missing relation, bad cast); carries its message."""


class ExportConnectionError(ExportError, TransientError):
    """The Postgres connection was lost or the backend terminated mid-export; a retry may succeed."""


# --- ZIP and BagIt verification -------------------------------------------------------------


class ArchiveError(InvalidInputError):
    """The object is not a readable ZIP (not a ZIP, truncated, corrupt structure)."""


class BagError(InvalidInputError):
    """The zipped bag cannot be read as BagIt at all (e.g. no bagit.txt)."""


# --- S3 -> Postgres load --------------------------------------------------------------------


class LoadError(S3StreamError):
    """A load into Postgres failed; nothing was committed. The message names the S3 object."""


class RowRejectedError(LoadError, InvalidInputError):
    """Postgres rejected the data (a bad value, a missing column, a row-count mismatch)."""


class TableNotFoundError(LoadError, InvalidInputError):
    """The load's target table (or its schema) does not exist; found before any data moves."""


class LoadConnectionError(LoadError, TransientError):
    """The Postgres connection was lost or the backend terminated mid-load; a retry may succeed."""
