"""What an export produces: format, compression, splitting and empty-result policy, validated early.

:class:`ExportOptions` is the one config object of the export engine (like s3transfer's
``TransferConfig``): every knob with its documented default. ``validate()`` raises
:class:`~airflow_s3stream.errors.ConfigurationError` naming the bad parameter, so operators call
it in ``__init__`` and a wrong value fails when the DAG is parsed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from airflow_s3stream.errors import ConfigurationError
from airflow_s3stream.resources import TaskResources
from airflow_s3stream.units import MiB

__all__ = [
    "COMPRESSIONS",
    "EMPTY_RESULT_POLICIES",
    "FILE_FORMATS",
    "ExportOptions",
    "MiB",
]

FILE_FORMATS = ("csv", "jsonl", "parquet")
COMPRESSIONS = (None, "gzip", "zstd")
EMPTY_RESULT_POLICIES = ("write_empty_file", "skip", "fail")

_EXTENSIONS = {"csv": ".csv", "jsonl": ".jsonl", "parquet": ".parquet"}
_COMPRESSION_SUFFIXES = {None: "", "gzip": ".gz", "zstd": ".zst"}
_CONTENT_TYPES = {"csv": "text/csv", "jsonl": "application/x-ndjson", "parquet": "application/vnd.apache.parquet"}
_LEVELS = {"gzip": (1, 9), "zstd": (-7, 22)}  # zlib levels; zstd: negative "fast" levels up to ultra 22
_DEFAULT_LEVELS = {"gzip": 6, "zstd": 3}  # the libraries' own defaults


@dataclass(frozen=True)
class ExportOptions:
    """How query results are written.

    :param file_format: ``csv``, ``jsonl`` (one JSON object per line) or ``parquet``.
    :param compression: ``None``, ``gzip`` or ``zstd``. For CSV/JSONL the whole object is
        compressed and the key gets ``.gz`` / ``.zst``; for Parquet it is the column codec
        (``None`` means Parquet's default, snappy) and the key stays ``.parquet``.
    :param compression_level: codec level; ``None`` takes the codec's default (gzip 6, zstd 3).
    :param delimiter: CSV field delimiter, one character.
    :param header: CSV: write the column names as the first line of every file.
    :param null_string: CSV: how NULL is written (unquoted); ``""`` like ``psql``'s ``\\copy``.
    :param max_bytes_per_file: split into numbered parts; a part is closed at the first row (CSV/JSONL)
        or row group (Parquet) boundary once it holds this many bytes (after compression).
    :param max_rows_per_file: split into numbered parts of at most this many rows.
    :param empty_result: ``write_empty_file`` (a CSV header / a Parquet file with the schema), ``skip``
        (publish nothing) or ``fail`` (raise :class:`~airflow_s3stream.errors.InvalidInputError`).
    :param write_manifest: write ``_manifest.json`` after every data file is complete (split: the
        last step of the commit, listing each file's key, rows, bytes, ETag and checksum).
    :param parquet_row_group_rows: rows per Parquet row group (a row group is held in memory);
        ``None`` (default) derives it from ``resources`` and the measured width of a row.
    :param resources: the task's sizes (:meth:`~airflow_s3stream.resources.TaskResources.for_export`;
        default: those of the default memory budget): the Parquet row group and the compressor's
        state are sized from them.
    """

    file_format: str = "csv"
    compression: str | None = None
    compression_level: int | None = None
    delimiter: str = ","
    header: bool = True
    null_string: str = ""
    max_bytes_per_file: int | None = None
    max_rows_per_file: int | None = None
    empty_result: str = "write_empty_file"
    write_manifest: bool = False
    parquet_row_group_rows: int | None = None
    resources: TaskResources = field(default_factory=TaskResources.for_export)

    def validate(self) -> ExportOptions:
        """Return ``self`` or raise :class:`ConfigurationError` naming the bad parameter."""
        if self.file_format not in FILE_FORMATS:
            raise ConfigurationError(f"file_format {self.file_format!r} is not one of {', '.join(FILE_FORMATS)}")
        if self.compression not in COMPRESSIONS:
            raise ConfigurationError(f"compression {self.compression!r} is not one of None, gzip, zstd")
        if self.compression_level is not None:
            if self.compression is None:
                raise ConfigurationError("compression_level is set but compression is None")
            low, high = _LEVELS[self.compression]
            if self.file_format == "parquet" and self.compression == "gzip":
                low = 1
            if not low <= self.compression_level <= high:
                raise ConfigurationError(
                    f"compression_level {self.compression_level} is outside {low}..{high} for {self.compression}"
                )
        if len(self.delimiter) != 1 or self.delimiter in '"\r\n':
            raise ConfigurationError(f"delimiter {self.delimiter!r} must be one character other than quote or newline")
        if any(c in self.null_string for c in "\r\n"):
            raise ConfigurationError("null_string must not contain a newline")
        for name in ("max_bytes_per_file", "max_rows_per_file"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ConfigurationError(f"{name} must be a positive integer, got {value!r}")
        if self.empty_result not in EMPTY_RESULT_POLICIES:
            raise ConfigurationError(
                f"empty_result {self.empty_result!r} is not one of {', '.join(EMPTY_RESULT_POLICIES)}"
            )
        if self.parquet_row_group_rows is not None and self.parquet_row_group_rows < 1:
            raise ConfigurationError("parquet_row_group_rows must be positive")
        return self

    @property
    def split(self) -> bool:
        """True when the result is written as numbered parts under a prefix."""
        return self.max_bytes_per_file is not None or self.max_rows_per_file is not None

    @property
    def suffix(self) -> str:
        """File name suffix: ``.csv``, ``.jsonl.gz``, ``.parquet`` ..."""
        ext = _EXTENSIONS[self.file_format]
        if self.file_format == "parquet":
            return ext
        return ext + _COMPRESSION_SUFFIXES[self.compression]

    @property
    def content_type(self) -> str:
        """The Content-Type stored with each object."""
        if self.file_format != "parquet" and self.compression == "gzip":
            return "application/gzip"
        if self.file_format != "parquet" and self.compression == "zstd":
            return "application/zstd"
        return _CONTENT_TYPES[self.file_format]

    @property
    def level(self) -> int | None:
        """The effective compression level (``None`` without compression)."""
        if self.compression is None:
            return None
        return self.compression_level if self.compression_level is not None else _DEFAULT_LEVELS[self.compression]
