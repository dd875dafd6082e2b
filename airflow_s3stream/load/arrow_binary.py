"""Arrow record batches as ``COPY ... FROM STDIN (FORMAT binary)`` input, when that is exact.

Binary COPY skips Postgres's text parsing and our CSV rendering: measured on 1M Parquet rows
(int, text, numeric, timestamptz) it loads in about half the time of the CSV path. But binary
input must be exactly the column's wire type (an ``int4`` value into an ``int8`` column is a
protocol error), so a file goes binary only when every loaded column is in :data:`PG_TO_ARROW`
and its Arrow type is that type or widens to it without loss:

==================  ==============================================================
Postgres column     Arrow column accepted (cast, always exact)
==================  ==============================================================
int2 / int4 / int8  a signed integer no wider
float4 / float8     float32 / float64 (a float32 into float8 takes the CSV path, which
                    reads its shortest decimal form, as it always has)
bool                bool
text / varchar      string, large_string
bytea               binary, large_binary
date                date32
timestamptz         timestamp with a time zone, unit s / ms / us (-> us, UTC)
timestamp           timestamp without a time zone, unit s / ms / us (-> us)
numeric             decimal128 / decimal256
==================  ==============================================================

Anything else (json, uuid, intervals, arrays, domains, ns timestamps, a string into numeric)
takes the CSV path of :mod:`airflow_s3stream.load.arrow_text`, which restores every type the
export writes. The encoder is ``pgpq``'s (Rust); without it every file takes the CSV path.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa

__all__ = ["BinaryEncoder", "binary_schema"]

_INTS = {"int2": 16, "int4": 32, "int8": 64}
_TEXT = ("text", "varchar")
_TIME_UNITS = ("s", "ms", "us")


def _target_type(pg_type: str, source: pa.DataType) -> pa.DataType | None:
    """The Arrow type ``source`` is cast to for a ``pg_type`` column, or None (use text COPY)."""
    if pg_type in _INTS:
        if not (pa.types.is_signed_integer(source) and source.bit_width <= _INTS[pg_type]):
            return None
        return {"int2": pa.int16(), "int4": pa.int32(), "int8": pa.int64()}[pg_type]
    if pg_type == "float8" and pa.types.is_float64(source):
        return pa.float64()
    if pg_type == "float4" and pa.types.is_float32(source):
        return pa.float32()
    if pg_type == "bool" and pa.types.is_boolean(source):
        return pa.bool_()
    if pg_type in _TEXT and (pa.types.is_string(source) or pa.types.is_large_string(source)):
        return source
    if pg_type == "bytea" and (pa.types.is_binary(source) or pa.types.is_large_binary(source)):
        return source
    if pg_type == "date" and pa.types.is_date32(source):
        return source
    if pg_type in ("timestamptz", "timestamp") and pa.types.is_timestamp(source) and source.unit in _TIME_UNITS:
        if (source.tz is not None) != (pg_type == "timestamptz"):
            return None
        return pa.timestamp("us", tz="UTC" if source.tz is not None else None)
    if pg_type == "numeric" and pa.types.is_decimal(source):
        return source
    return None


def binary_schema(source: pa.Schema, columns: Sequence[str], pg_types: Sequence[str]) -> pa.Schema | None:
    """The Arrow schema ``columns`` of ``source`` are cast to for binary COPY into columns of
    ``pg_types`` (the target's ``pg_type.typname``, in the same order), or None when any column
    has no exact binary form (the whole file then takes the CSV path)."""
    if not _have_pgpq():
        return None
    fields = []
    for name, pg_type in zip(columns, pg_types, strict=True):
        source_type = source.field(name).type
        if isinstance(source_type, pa.BaseExtensionType):
            return None
        target = _target_type(pg_type, source_type)
        if target is None:
            return None
        fields.append(pa.field(name, target))
    return pa.schema(fields)


def _have_pgpq() -> bool:
    import importlib.util

    return importlib.util.find_spec("pgpq") is not None


class BinaryEncoder:
    """``header()``, then ``encode(batch)`` per batch, then ``trailer()``: the binary COPY stream."""

    def __init__(self, schema: pa.Schema) -> None:
        import pgpq

        self._schema = schema
        self._encoder: Any = pgpq.ArrowToPostgresBinaryEncoder(schema)

    def header(self) -> bytes:
        return bytes(self._encoder.write_header())

    def encode(self, batch: pa.RecordBatch) -> Any:
        """The COPY data of ``batch``'s rows (its columns cast to the schema; each cast is exact)."""
        if batch.schema != self._schema:
            batch = pa.RecordBatch.from_arrays(
                [col.cast(field.type) for col, field in zip(batch.columns, self._schema, strict=True)],
                schema=self._schema,
            )
        return self._encoder.write_batch(batch)

    def trailer(self) -> bytes:
        return bytes(self._encoder.finish())
