"""How the package's errors leave an operator: named, and either failed for good or retried.

Every operator runs its work inside :func:`named_failures`, so the rule is the same for all:

* retrying cannot help (:class:`~airflow_s3stream.errors.InvalidInputError`: bad SQL, a missing
  source, a corrupt archive; :class:`~airflow_s3stream.errors.UploadError`: S3 refused a write
  for good) -> ``AirflowFailException``, which Airflow does not retry;
* a remote failure that outlived the package's own retries
  (:class:`~airflow_s3stream.errors.TransientError`, ``ExportConnectionError`` included) -> the
  same class, which Airflow retries;
* a raw botocore error that escaped the S3 layer is first classified there
  (:func:`airflow_s3stream.s3.classify.to_error`), then treated as above.

Each message names ``where`` (the ``s3://`` object the task works on) unless it already does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from airflow.sdk.exceptions import AirflowFailException

from airflow_s3stream.errors import InvalidInputError, S3StreamError, UploadError

__all__ = ["named_failures"]


@contextlib.contextmanager
def named_failures(where: str, *, reading: bool = False) -> Iterator[None]:
    """Translate what the block raises per the module docstring.

    :param where: the object the task works on, e.g. ``s3://bucket/key``; prefixed to messages
        that do not name it yet.
    :param reading: the object is a source (a missing one is then a ``SourceError``).
    """
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except (BotoCoreError, ClientError) as exc:
        from airflow_s3stream.s3.classify import to_error

        raise _for_airflow(to_error(exc, where, reading=reading), where) from exc
    except S3StreamError as exc:
        error = _for_airflow(exc, where)
        if error is exc:
            raise
        raise error from exc


def _for_airflow(exc: S3StreamError, where: str) -> Exception:
    """``exc`` as it should leave the operator: ``AirflowFailException`` or the same retryable class."""
    text = str(exc)
    message = text if where in text else f"{where}: {text}"
    if isinstance(exc, (InvalidInputError, UploadError)):
        return AirflowFailException(message)
    if message == text:
        return exc
    return type(exc)(message)
