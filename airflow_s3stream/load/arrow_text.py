"""Arrow record batches as ``COPY ... FROM STDIN (FORMAT csv)`` input, every value restored exactly.

Arrow's C++ CSV writer does the bulk: numbers in their shortest exact form (NaN and infinities as
``nan`` / ``inf``, which Postgres reads), decimals as digits, dates and times in ISO form,
``timestamp[tz]`` in UTC with ``Z``, every string quoted and NULL as the empty unquoted field, which
is exactly Postgres's CSV convention (``""`` is the empty string). The columns it cannot write are
turned into text first, the inverse of :mod:`airflow_s3stream.export.arrow_types`:

===============================  =====================================================
Arrow (as the export writes it)   COPY text
===============================  =====================================================
struct<months, days,              ``14 mons -3 days 14706700000 microseconds`` (exact)
microseconds> (interval)
arrow.uuid                        32 hex digits
arrow.json                        the JSON text, unchanged
binary                            ``\\x`` + hex (bytea)
list<...>                         an array literal ``{1,NULL,"a,b"}``
dictionary                        its decoded values
===============================  =====================================================
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv

__all__ = ["batch_to_csv", "text_compatible"]

_INTERVAL_FIELDS = ("months", "days", "microseconds")
_WRITE_OPTIONS = pa_csv.WriteOptions(include_header=False)


def _array_literal(value: Any) -> str:
    """A Postgres array literal for a Python list (nested lists for more dimensions)."""
    parts = []
    for item in value:
        if item is None:
            parts.append("NULL")
        elif isinstance(item, list):
            parts.append(_array_literal(item))
        else:
            if isinstance(item, bool):
                text = "t" if item else "f"
            elif isinstance(item, bytes):
                text = "\\x" + item.hex()
            elif isinstance(item, (dict,)):
                text = json.dumps(item)
            else:
                text = str(item)
            parts.append('"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"')
    return "{" + ",".join(parts) + "}"


def _python_text(arr: pa.Array, convert: Any) -> pa.Array:
    return pa.array([None if v is None else convert(v) for v in arr.to_pylist()], type=pa.string())


def _interval_text(arr: pa.StructArray) -> pa.Array:
    import pyarrow.compute as pc  # only for these columns: the module costs ~9 MiB of RSS

    months, days, micros = (pc.cast(arr.field(name), pa.string()) for name in _INTERVAL_FIELDS)
    text = pc.binary_join_element_wise(months, " mons ", days, " days ", micros, " microseconds", "")
    return pc.if_else(arr.is_null(), pa.scalar(None, pa.string()), text)


def _is_interval(dtype: pa.DataType) -> bool:
    return pa.types.is_struct(dtype) and tuple(dtype.field(i).name for i in range(dtype.num_fields)) == _INTERVAL_FIELDS


def text_compatible(arr: pa.Array) -> pa.Array:
    """``arr`` as a column Arrow's CSV writer renders in a form Postgres reads back exactly."""
    dtype = arr.type
    if isinstance(dtype, pa.BaseExtensionType):
        storage = arr.storage
        if pa.types.is_fixed_size_binary(storage.type) and storage.type.byte_width == 16:  # arrow.uuid
            return _python_text(storage, lambda v: v.hex())
        return text_compatible(storage)  # arrow.json: the JSON text
    if pa.types.is_dictionary(dtype):
        return text_compatible(arr.dictionary_decode())
    if pa.types.is_binary(dtype) or pa.types.is_large_binary(dtype) or pa.types.is_fixed_size_binary(dtype):
        return _python_text(arr, lambda v: "\\x" + v.hex())
    if pa.types.is_list(dtype) or pa.types.is_large_list(dtype) or pa.types.is_fixed_size_list(dtype):
        return _python_text(arr, _array_literal)
    if _is_interval(dtype):
        return _interval_text(arr)
    if pa.types.is_struct(dtype) or pa.types.is_map(dtype):
        return _python_text(arr, lambda v: json.dumps(v, default=str))
    if pa.types.is_duration(dtype):
        import pyarrow.compute as pc

        micros = pc.cast(arr.cast(pa.duration("us")).cast(pa.int64()), pa.string())
        return pc.binary_join_element_wise(micros, " microseconds", "")
    return arr


def batch_to_csv(batch: pa.RecordBatch) -> pa.Buffer:
    """The rows of ``batch`` as CSV (no header) for ``COPY ... (FORMAT csv)`` with the default NULL."""
    arrays = [text_compatible(col) for col in batch.columns]
    table = pa.Table.from_arrays(arrays, names=batch.schema.names)
    sink = pa.BufferOutputStream()
    pa_csv.write_csv(table, sink, _WRITE_OPTIONS)
    return sink.getvalue()
