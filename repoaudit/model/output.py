"""The output contract: one encoder for every row the CLI prints, as a table, CSV or JSON.

* timestamps are ISO 8601 in UTC with ``Z`` (naive values are UTC, as the database stores them);
* integers are integers, also where a SUM made them floats or a NULL made pandas upcast them;
* lists and maps are JSON arrays and objects, in CSV cells too;
* one null: ``null`` in JSON, an empty cell in CSV, blank in tables;
* tables show bytes human-readable (columns named ``*bytes``/``*size``) and digests shortened to
  12 hex digits, unless ``raw``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd

from repoaudit.model.formatting import human_bytes

FORMATS = ("table", "csv", "json")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


def iso_utc(value: datetime) -> str:
    """``2026-01-31T12:00:00Z``: UTC, ``Z`` for the zone, microseconds only when there are any."""
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    return value.isoformat(timespec="microseconds" if value.microsecond else "seconds") + "Z"


def is_null(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    try:
        return bool(pd.isna(value)) if not hasattr(value, "__len__") else False
    except (TypeError, ValueError):
        return False


def plain(value: Any) -> Any:
    """A value as plain JSON data (None, bool, int, float, str, list, dict) under the contract."""
    kind = type(value)
    if kind is str or kind is int or kind is bool:
        return value
    if kind is list or kind is tuple:
        return [plain(v) for v in value]
    if kind is np.ndarray:
        return [plain(v) for v in value.tolist()]
    if is_null(value):
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, (pd.Timestamp, datetime)):
        return iso_utc(value.to_pydatetime() if isinstance(value, pd.Timestamp) else value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, time):
        return value.isoformat()
    if isinstance(value, (pd.Timedelta, timedelta)):
        return pd.Timedelta(value).total_seconds()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)) or hasattr(value, "tolist"):
        items = value.tolist() if hasattr(value, "tolist") else list(value)
        return [plain(v) for v in items] if isinstance(items, list) else plain(items)
    if hasattr(value, "item"):  # numpy scalars
        return plain(value.item())
    if isinstance(value, (int, float, str)):
        return value
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def _integral_floats(series: pd.Series) -> bool:
    """A float column holding only whole numbers: a SUM, a HUGEINT or an integer column upcast by nulls."""
    if not pd.api.types.is_float_dtype(series.dtype):
        return False
    values = series.dropna()
    return bool(len(values)) and bool(((values % 1) == 0).all()) and bool((values.abs() < 2**63).all())


def _column(series: pd.Series) -> list[Any]:
    """One column as plain values, vectorised for the common dtypes (a 1M-row query stays quick)."""
    dtype = series.dtype
    if pd.api.types.is_datetime64_any_dtype(dtype):
        values = series.dt.tz_convert("UTC").dt.tz_localize(None) if getattr(dtype, "tz", None) else series
        stamps = values.to_numpy(dtype="datetime64[us]")
        missing = np.isnat(stamps)
        text = np.datetime_as_string(stamps, unit="s")
        fractional = ~missing & (stamps != stamps.astype("datetime64[s]"))
        if fractional.any():
            text = np.where(fractional, np.datetime_as_string(stamps, unit="us"), text)
        return [None if gone else t + "Z" for t, gone in zip(text.tolist(), missing.tolist())]
    if pd.api.types.is_bool_dtype(dtype) and not series.hasnans:
        return [bool(v) for v in series]
    if pd.api.types.is_integer_dtype(dtype):
        return [None if v is pd.NA else int(v) for v in series.astype(object)]
    if pd.api.types.is_float_dtype(dtype):
        whole = _integral_floats(series)
        return [None if v != v else (int(v) if whole else float(v)) for v in series.tolist()]
    return [v if type(v) is str else plain(v) for v in series.tolist()]


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows of ``frame`` as plain dicts under the contract."""
    names = [str(c) for c in frame.columns]
    columns = [_column(frame.iloc[:, i]) for i in range(frame.shape[1])]
    return [dict(zip(names, row)) for row in zip(*columns)] if columns else [{} for _ in range(len(frame))]


def to_json(data: Any) -> str:
    """Rows (a DataFrame) or documents as indented JSON, one trailing newline."""
    rows = records(data) if isinstance(data, pd.DataFrame) else plain(data)
    return json.dumps(rows, indent=2, ensure_ascii=False) + "\n"


def csv_cell(value: Any) -> str:
    value = plain(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return str(value)


def to_csv(frame: pd.DataFrame) -> str:
    """RFC 4180 CSV with a header row; nulls empty, lists and maps as JSON."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([str(c) for c in frame.columns])
    columns = [[v if type(v) is str else csv_cell(v) for v in _column(frame.iloc[:, i])]
               for i in range(frame.shape[1])]
    writer.writerows(zip(*columns))
    return buffer.getvalue()


def is_bytes_column(name: str) -> bool:
    name = str(name).lower()
    return name.endswith("bytes") or name.endswith("_size") or name == "size"


def table_cell(value: Any, *, column: str = "", raw: bool = False) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ", ".join(table_cell(v, raw=raw) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if isinstance(value, (int, float)) and not raw and is_bytes_column(column):
        return human_bytes(value)
    if isinstance(value, str) and not raw and _DIGEST.match(value):
        return value[:19]  # sha256: and 12 hex digits, as docker and crane show them
    if isinstance(value, str) and value.endswith("Z") and len(value) >= 20 and value[10:11] == "T":
        return value[:19].replace("T", " ")  # UTC, to the second, for people
    return str(value)


def to_table(frame: pd.DataFrame, *, raw: bool = False, width: int | None = None) -> str:
    """Aligned columns for people; ``(no rows)`` when empty.

    With ``width`` (a terminal's), no line is longer: cells longer than a third of it are cut with ``…``
    and the columns wrap into blocks, as pandas prints wide frames. Without (a pipe, a file), lines are
    whole: ``cut`` and ``awk`` see every column.
    """
    if not len(frame):
        return "(no rows)\n"
    rows = records(frame)
    cells = [[table_cell(v, column=c, raw=raw) for c, v in r.items()] for r in rows]
    if width:
        longest = max(20, width // 3)
        cells = [[c if len(c) <= longest else c[:longest - 1] + "…" for c in row] for row in cells]
    text = pd.DataFrame(cells, columns=[str(c) for c in frame.columns])
    return text.to_string(index=False, line_width=width) + "\n"


def encode(frame: pd.DataFrame, fmt: str, *, raw: bool = False, width: int | None = None) -> str:
    """``frame`` as ``table``, ``csv`` or ``json`` text under the contract (``width``: tables only)."""
    if fmt == "csv":
        return to_csv(frame)
    if fmt == "json":
        return to_json(frame)
    return to_table(frame, raw=raw, width=width)
