"""Query results as Arrow tables and pandas DataFrames.

DuckDB's own ``.df()`` builds every string, and every list of strings, as a Python
object, one value at a time: for the 750,000 rows a stale-images query returns on a
1M-tag estate that took longer than the query itself. Arrow hands pandas the
columns whole. :func:`fetch_frame` converts through Arrow but keeps the dtypes
``.df()`` gives (nullable integers and booleans where a column holds NULLs, floats
for DECIMAL and HUGEINT sums, datetimes for DATE, object columns for strings that
are all NULL), so a notebook cannot tell the two apart; column types Arrow and
DuckDB map differently (intervals, maps, structs, blobs, times) go through DuckDB's
own conversion of the Arrow columns.
"""

from __future__ import annotations

from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

_NULLABLE_INTEGERS = {
    pa.int8(): pd.Int8Dtype(), pa.int16(): pd.Int16Dtype(), pa.int32(): pd.Int32Dtype(),
    pa.int64(): pd.Int64Dtype(), pa.uint8(): pd.UInt8Dtype(), pa.uint16(): pd.UInt16Dtype(),
    pa.uint32(): pd.UInt32Dtype(), pa.uint64(): pd.UInt64Dtype(),
}


def fetch_arrow(con: duckdb.DuckDBPyConnection, sql: str, params: Any = None) -> pa.Table:
    """A query's result as an Arrow table, without the extra copy a DB-API cursor makes."""
    # DuckDB 2 refuses con.sql() while an execute() result is unread (a fetchone() leaves one); execute()
    # would drop that result anyway, and it copies the rows once more on their way to Arrow.
    abort = getattr(con, "abort", None)
    if abort is not None:
        abort()
    relation = con.sql(sql, params=params) if params else con.sql(sql)
    if relation is None:  # a statement that returns nothing (DDL)
        return pa.table({})
    # DuckDB 2 names it to_arrow_table; 1.x arrow(), which 2.x turned into a batch reader.
    fetch = getattr(relation, "to_arrow_table", None) or relation.arrow
    table = fetch()
    return table.read_all() if hasattr(table, "read_all") else table


def fetch_frame(con: duckdb.DuckDBPyConnection, sql: str, params: Any = None) -> pd.DataFrame:
    """A query's result as a DataFrame with the dtypes of DuckDB's ``.df()``, converted through Arrow."""
    return arrow_to_frame(con, fetch_arrow(con, sql, params))


def arrow_to_frame(con: duckdb.DuckDBPyConnection, table: pa.Table) -> pd.DataFrame:
    columns: list[pd.Series | None] = [None] * table.num_columns
    other: list[int] = []
    for i, (field, column) in enumerate(zip(table.schema, table.columns)):
        series = _convert(field.type, column)
        if series is None:
            other.append(i)
        else:
            columns[i] = series
    if other:
        # DuckDB reads the Arrow columns back and converts them its own way: no second run of the query.
        rest = con.from_arrow(pa.table({f"c{i}": table.column(i) for i in other})).df()
        for i in other:
            columns[i] = rest[f"c{i}"]
    frame = pd.concat([s.reset_index(drop=True) for s in columns], axis=1, ignore_index=True) if columns \
        else pd.DataFrame()
    frame.columns = _unique_names(table.column_names)
    return frame


def _convert(dtype: pa.DataType, column: pa.ChunkedArray) -> pd.Series | None:
    nulls = column.null_count
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        if nulls == len(column):
            return pd.Series([None] * len(column), dtype=object)
        return column.to_pandas()
    if pa.types.is_integer(dtype):
        return column.to_pandas(types_mapper=_NULLABLE_INTEGERS.get) if nulls else column.to_pandas()
    if pa.types.is_boolean(dtype):
        return column.to_pandas(types_mapper={pa.bool_(): pd.BooleanDtype()}.get) if nulls else column.to_pandas()
    if pa.types.is_floating(dtype) or pa.types.is_timestamp(dtype):
        return column.to_pandas()
    if pa.types.is_decimal(dtype):
        return pc.cast(column, pa.float64()).to_pandas()
    if pa.types.is_date(dtype):
        return pc.cast(column, pa.timestamp("us")).to_pandas()
    if (pa.types.is_list(dtype) or pa.types.is_large_list(dtype)) and (
            pa.types.is_string(dtype.value_type) or pa.types.is_large_string(dtype.value_type)):
        series = column.to_pandas()
        return series.where(series.notna(), pd.NA).astype(object) if nulls else series
    if pa.types.is_dictionary(dtype):  # a DuckDB ENUM, which .df() gives as an ordered categorical
        return column.to_pandas().cat.as_ordered()
    return None


def _unique_names(names: list[str]) -> list[str]:
    """Duplicate column names get ``_1``, ``_2``… as DuckDB's ``.df()`` gives them."""
    seen: set[str] = set()
    out = []
    for name in names:
        candidate, n = name, 0
        while candidate in seen:
            n += 1
            candidate = f"{name}_{n}"
        seen.add(candidate)
        out.append(candidate)
    return out
