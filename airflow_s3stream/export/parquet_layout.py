"""Which Parquet columns get dictionary encoding: those where it pays, judged on the first batch.

pyarrow's default tries a dictionary on every column and falls back to plain pages once the
dictionary outgrows its page (1 MiB): a unique id, an amount or a timestamp then carries a
dictionary page and dictionary-coded pages before the fallback, in every row group. On 1M rows of
the benchmark's orders table that made the file 8% larger than DuckDB's (87.4 against 80.7 MB) and
its writing 2x slower; a dictionary only where the first batch repeats its values made it 80.0 MB
(``benchmarks/bench_parquet_layout.py``). DuckDB, too, keeps dictionaries for low cardinality.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DICTIONARY_MAX_DISTINCT", "SAMPLE_ROWS", "dictionary_columns"]

DICTIONARY_MAX_DISTINCT = 0.25  # distinct values / rows in the sample at most this: a dictionary pays
SAMPLE_ROWS = 65_536  # rows of the first batch looked at (count_distinct is a hash pass over them)


def dictionary_columns(batch: Any) -> list[str]:
    """The top-level columns of ``batch`` (a pyarrow RecordBatch) worth a dictionary.

    Strings, binaries, integers, decimals, dates and times whose sample has at most
    ``DICTIONARY_MAX_DISTINCT`` distinct values per row; booleans (already one bit), floats and
    nested columns (structs, lists) stay plain. An empty batch gives no dictionary at all.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    sample = batch.slice(0, SAMPLE_ROWS)
    if sample.num_rows == 0:
        return []
    chosen = []
    for field, column in zip(sample.schema, sample.columns, strict=True):
        values = column.storage if isinstance(column.type, pa.BaseExtensionType) else column
        kind = values.type
        if not (
            pa.types.is_string(kind)
            or pa.types.is_large_string(kind)
            or pa.types.is_binary(kind)
            or pa.types.is_fixed_size_binary(kind)
            or pa.types.is_integer(kind)
            or pa.types.is_decimal(kind)
            or pa.types.is_temporal(kind)
        ):
            continue
        distinct = pc.count_distinct(values, mode="all").as_py()
        if distinct <= DICTIONARY_MAX_DISTINCT * sample.num_rows:
            chosen.append(field.name)
    return chosen
