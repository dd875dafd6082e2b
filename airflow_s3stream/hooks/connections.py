"""Whether the Airflow connection an operator names exists, and the message when it does not.

Airflow's AWS hook falls back to an empty connection when its id is not defined, so a typo in
``aws_conn_id`` used to surface far away (``'NoneType' object has no attribute
'get_frozen_credentials'``, or botocore's ``Unable to locate credentials``). The hooks look the
connection up once, before the first client is built, and fail naming the operator parameter and
the id: ``aws_conn_id 'aws_prod' is not defined``. The message never shows a connection's fields.

``None`` as an id is valid (boto3's default credential chain), and so is a connection defined only
in the environment (``AIRFLOW_CONN_<ID>``): Airflow's own lookup finds it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.sdk.exceptions import AirflowNotFoundException

from airflow_s3stream.errors import ConfigurationError

if TYPE_CHECKING:
    from airflow.sdk.bases.hook import BaseHook

__all__ = ["require_connection", "undefined_connection"]


def undefined_connection(parameter: str, conn_id: str) -> ConfigurationError:
    """The error for ``parameter`` (``aws_conn_id``, ``source_aws_conn_id``, ``postgres_conn_id``)
    naming ``conn_id``, which no secrets backend defines. Its first line is the verdict."""
    return ConfigurationError(
        f"{parameter} {conn_id!r} is not defined: no Airflow connection has this id "
        f"(add it in the UI, with 'airflow connections add', or as AIRFLOW_CONN_{conn_id.upper()})"
    )


def require_connection(hook: BaseHook, parameter: str, conn_id: str | None) -> None:
    """Raise unless ``conn_id`` is ``None``/empty or names a connection ``hook`` can read.

    :param parameter: the operator parameter that gave ``conn_id``; the message names it.
    :raises ConfigurationError: no connection has this id (:func:`undefined_connection`).
    """
    if not conn_id:
        return
    try:
        hook.get_connection(conn_id)
    except AirflowNotFoundException as exc:
        raise undefined_connection(parameter, conn_id) from exc
