"""How a load writes into Postgres: mode, format, CSV dialect, columns, validated early.

:class:`LoadOptions` is the one config object of the load engine, every knob with its documented
default. ``validate()`` raises :class:`~airflow_s3stream.errors.ConfigurationError` naming the bad
parameter, so the operator calls it in ``__init__`` and a wrong value fails when the DAG is parsed.
The CSV defaults are the export's (``,``, header, NULL as the empty unquoted field), so an export
loads back unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from airflow_s3stream.errors import ConfigurationError

__all__ = ["LOAD_COMPRESSIONS", "LOAD_FORMATS", "MODES", "REPLACE_VIA", "LoadOptions"]

LOAD_FORMATS = ("auto", "csv", "jsonl", "parquet")
LOAD_COMPRESSIONS = ("auto", None, "gzip", "zstd")
MODES = ("append", "replace", "replace_interval", "upsert")
REPLACE_VIA = ("truncate", "swap")


@dataclass(frozen=True)
class LoadOptions:
    """What a load does with its files.

    :param mode: ``append`` (COPY into the table), ``replace`` (empty it, then load),
        ``replace_interval`` (DELETE the rows ``interval_filter`` matches, then load) or ``upsert``
        (COPY into a temporary table, then ``INSERT ... ON CONFLICT (conflict_columns) DO UPDATE``).
    :param file_format: ``auto`` (the manifest's format, else the key's suffix), ``csv``, ``jsonl``
        or ``parquet``.
    :param compression: ``auto`` (suffix ``.gz`` / ``.zst``, else the magic bytes), ``None``,
        ``gzip`` or ``zstd``; for CSV and JSON Lines (a Parquet file compresses its own columns).
    :param columns: target columns to load, in file order; ``None``: the CSV header's names, the
        Parquet schema's names, the JSON keys (CSV without header: every table column in order).
    :param delimiter: CSV field delimiter, one character.
    :param header: CSV files start with a header line of column names.
    :param null_string: CSV spelling of NULL (unquoted); ``""`` as the export writes it.
    :param quote: CSV quote character.
    :param encoding: the files' text encoding, as Postgres names it (``UTF8``, ``LATIN1``, ...).
    :param ignore_unknown_keys: JSON Lines: drop keys that are not columns instead of failing.
    :param conflict_columns: ``upsert``: the unique key ``ON CONFLICT`` targets.
    :param interval_filter: ``replace_interval``: SQL condition with ``%(name)s`` placeholders,
        bound from the operator's ``parameters``, e.g. ``created_at >= %(start)s AND created_at < %(end)s``.
    :param replace_via: ``replace``: ``truncate`` (TRUNCATE then load; holds an ACCESS EXCLUSIVE
        lock for the whole load) or ``swap`` (load a new table, then drop and rename in one step).
    """

    mode: str = "append"
    file_format: str = "auto"
    compression: str | None = "auto"
    columns: tuple[str, ...] | None = None
    delimiter: str = ","
    header: bool = True
    null_string: str = ""
    quote: str = '"'
    encoding: str = "UTF8"
    ignore_unknown_keys: bool = False
    conflict_columns: tuple[str, ...] | None = None
    interval_filter: str | None = None
    replace_via: str = "truncate"

    @classmethod
    def of(
        cls, *, columns: Sequence[str] | None = None, conflict_columns: Sequence[str] | None = None, **kwargs: object
    ) -> LoadOptions:
        """Build from operator-style arguments (lists become tuples) and validate."""
        return cls(
            columns=tuple(columns) if columns is not None else None,
            conflict_columns=tuple(conflict_columns) if conflict_columns is not None else None,
            **kwargs,  # type: ignore[arg-type]
        ).validate()

    def validate(self) -> LoadOptions:
        """Return ``self`` or raise :class:`ConfigurationError` naming the bad parameter."""
        if self.mode not in MODES:
            raise ConfigurationError(f"mode {self.mode!r} is not one of {', '.join(MODES)}")
        if self.file_format not in LOAD_FORMATS:
            raise ConfigurationError(f"file_format {self.file_format!r} is not one of {', '.join(LOAD_FORMATS)}")
        if self.compression not in LOAD_COMPRESSIONS:
            raise ConfigurationError(f"compression {self.compression!r} is not one of auto, None, gzip, zstd")
        if self.mode == "upsert" and not self.conflict_columns:
            raise ConfigurationError("mode 'upsert' needs conflict_columns (the unique key ON CONFLICT targets)")
        if self.mode == "replace_interval" and not (self.interval_filter or "").strip():
            raise ConfigurationError("mode 'replace_interval' needs interval_filter (the rows an interval replaces)")
        if self.interval_filter and self.mode != "replace_interval":
            raise ConfigurationError(f"interval_filter is only used by mode 'replace_interval', not {self.mode!r}")
        if self.conflict_columns and self.mode != "upsert":
            raise ConfigurationError(f"conflict_columns is only used by mode 'upsert', not {self.mode!r}")
        if self.replace_via not in REPLACE_VIA:
            raise ConfigurationError(f"replace_via {self.replace_via!r} is not one of {', '.join(REPLACE_VIA)}")
        if self.replace_via != "truncate" and self.mode != "replace":
            raise ConfigurationError("replace_via is only used by mode 'replace'")
        if len(self.delimiter) != 1 or self.delimiter in "\r\n":
            raise ConfigurationError(f"delimiter {self.delimiter!r} must be one character other than a newline")
        if len(self.quote) != 1 or self.quote in "\r\n" or self.quote == self.delimiter:
            raise ConfigurationError(f"quote {self.quote!r} must be one character, not a newline or the delimiter")
        if any(c in self.null_string for c in "\r\n"):
            raise ConfigurationError("null_string must not contain a newline")
        for name in ("columns", "conflict_columns"):
            names = getattr(self, name)
            if names is not None:
                if not names or not all(isinstance(n, str) and n for n in names):
                    raise ConfigurationError(f"{name} must be a non-empty list of column names, got {names!r}")
                if len(set(names)) != len(names):
                    raise ConfigurationError(f"{name} names a column twice: {list(names)!r}")
        if self.columns and self.conflict_columns:
            missing = [c for c in self.conflict_columns if c not in self.columns]
            if missing:
                raise ConfigurationError(f"conflict_columns {missing!r} are not among columns {list(self.columns)!r}")
        return self
