"""The retention what-if on Spark over the Parquet lake: the same engine, its statements run by Spark.

:func:`repoaudit.retention.engine.plan_retention` is a sequence of DuckDB statements over temporary
tables (``engine.sql``) plus each policy's generated query (``compiler.py``). :class:`SparkConnection`
takes those statements as a DuckDB connection would and runs each on a :class:`SparkLake`, transpiled
the way the named queries are, so the rules, the byte accounting and the totals are the engine's own and
not a second copy that could drift:

- ``CREATE TEMP TABLE t AS query`` and ``INSERT INTO t query`` become temporary views over a checkpointed
  DataFrame (materialised once, as DuckDB's table is; later statements read it, not its plan again);
- ``ALTER TABLE t ADD COLUMN`` and ``UPDATE t ... FROM ... WHERE`` rebuild the view with the new column
  or the updated values (one matching source row per target row, as the engine's updates are written);
- ``rowid`` (the engine's free link id) is ``monotonically_increasing_id()``: unique, and fixed once the
  table holding it is materialised;
- pandas frames the engine registers become Spark DataFrames.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import pandas as pd
import pyarrow as pa

from repoaudit.errors import QueryError, first_line
from repoaudit.fleet.spark import (
    SparkLake,
    _py_literal,
    _reason,
    _spark_type,
    exp,
    sqlglot,
)

__all__ = ["SparkConnection", "plan_retention_on_spark"]

_EXISTS = "SELECT count(*) FROM information_schema.tables WHERE table_name = ?"


def _pandas_type(dtype) -> str:
    kind = getattr(dtype, "kind", "O")
    return {"b": "BOOLEAN", "i": "BIGINT", "u": "BIGINT", "f": "DOUBLE", "M": "TIMESTAMP"}.get(kind, "STRING")


class _Result:
    """What the engine reads from ``execute()`` and ``sql()``: a DataFrame, rows, or an Arrow table."""

    def __init__(self, frame: pd.DataFrame | None):
        self.frame = frame if frame is not None else pd.DataFrame()

    def df(self) -> pd.DataFrame:
        return self.frame

    def fetchall(self) -> list[tuple]:
        return [tuple(None if pd.isna(v) is True else v for v in row)
                for row in self.frame.itertuples(index=False, name=None)]

    def fetchone(self) -> tuple | None:
        rows = self.fetchall()
        return rows[0] if rows else None

    def to_arrow_table(self) -> pa.Table:
        return pa.Table.from_pandas(self.frame, preserve_index=False)


class SparkConnection:
    """The part of a DuckDB connection the retention engine uses, run on a :class:`SparkLake`."""

    def __init__(self, lake: SparkLake):
        self.lake = lake
        self.spark = lake.spark
        self.tables: dict[str, Any] = {}  # temporary table name -> its materialised DataFrame

    # -- the connection's surface -------------------------------------------------------------------------
    def execute(self, sql: str, params: Any = None) -> _Result:
        if sql.strip() == _EXISTS:  # store.database.relation_exists
            name = params[0]
            found = name in self.tables or name in self.lake.views or name in self.lake.schema["tables"]
            return _Result(pd.DataFrame({"n": [int(found)]}))
        try:
            tree = sqlglot.parse_one(sql, read="duckdb")
        except sqlglot.errors.ParseError as exc:
            raise QueryError(f"sqlglot cannot parse a retention step: {first_line(exc)}") from None
        tree = self._bind(tree, params)
        try:
            return self._run(tree)
        except QueryError:
            raise
        except Exception as exc:
            head = next((line.strip() for line in sql.splitlines()
                         if line.strip() and not line.strip().startswith("--")), "")
            raise QueryError(f"retention on Spark: {_reason(exc)} (in: {head[:80]})") from None

    def sql(self, sql: str, params: Any = None) -> _Result:
        return self.execute(sql, params)

    def register(self, name: str, frame: pd.DataFrame) -> None:
        ddl = ", ".join(f"`{c}` {_pandas_type(t)}" for c, t in frame.dtypes.items())
        rows = [tuple(None if v is pd.NaT or (isinstance(v, float) and v != v) else
                      (v.to_pydatetime() if isinstance(v, pd.Timestamp) else v) for v in row)
                for row in frame.astype(object).itertuples(index=False, name=None)]
        self.spark.createDataFrame(rows, ddl).createOrReplaceTempView(name)

    def unregister(self, name: str) -> None:
        self.spark.catalog.dropTempView(name)

    # -- statements ---------------------------------------------------------------------------------------
    @staticmethod
    def _bind(tree, params: Any):
        if not params:
            return tree
        positional = list(params) if isinstance(params, (list, tuple)) else None
        counter = iter(range(10_000))

        def bind(node):
            if isinstance(node, (exp.Placeholder, exp.Parameter)):
                if positional is not None:
                    return _py_literal(positional[next(counter)])
                if node.name in params:
                    return _py_literal(params[node.name])
                raise QueryError(f"retention on Spark: no value for parameter ${node.name}")
            return node

        return tree.transform(bind)

    def _frame(self, query):
        def rowid(node):
            if isinstance(node, exp.Column) and node.name.lower() == "rowid":
                return exp.Anonymous(this="monotonically_increasing_id", expressions=[])
            return node

        return self.lake._sql(query.transform(rowid))

    def _keep(self, name: str, frame) -> None:
        frame = frame.localCheckpoint(eager=True)
        self.tables[name] = frame
        frame.createOrReplaceTempView(name)

    def _table(self, node) -> str:
        name = node.this.name if isinstance(node, exp.Schema) else node.name
        return name

    def _run(self, tree) -> _Result:
        if isinstance(tree, exp.Create) and tree.kind == "TABLE":
            name = self._table(tree.this)
            if isinstance(tree.expression, exp.Query):
                self._keep(name, self._frame(tree.expression))
            else:
                columns = [f"`{c.name}` {_spark_type(c.args['kind'].sql('duckdb'))}"
                           for c in tree.this.expressions]
                self._keep(name, self.spark.createDataFrame([], ", ".join(columns)))
            return _Result(None)
        if isinstance(tree, exp.Insert):
            name = self._table(tree.this)
            into = self.tables[name]
            new = self._frame(tree.expression)
            if len(new.columns) != len(into.columns):
                raise QueryError(f"retention on Spark: INSERT INTO {name} with another number of columns")
            new = new.toDF(*into.columns)  # by position, as DuckDB inserts
            new = new.select(*[new[f.name].cast(f.dataType) for f in into.schema.fields])
            self._keep(name, into.unionByName(new))
            return _Result(None)
        if isinstance(tree, exp.Alter):
            name = tree.this.name
            frame = self.tables[name]
            for action in tree.args.get("actions") or []:
                if not isinstance(action, exp.ColumnDef):
                    raise QueryError(f"retention on Spark: ALTER TABLE {action.sql('duckdb')}")
                frame = frame.selectExpr("*", f"CAST(NULL AS {_spark_type(action.args['kind'].sql('duckdb'))}) "
                                              f"AS `{action.name}`")
            self._keep(name, frame)
            return _Result(None)
        if isinstance(tree, exp.Update):
            self._update(tree)
            return _Result(None)
        if isinstance(tree, exp.Drop):
            for table in tree.args.get("tables") or [tree.this]:
                self.tables.pop(table.name, None)
                self.spark.catalog.dropTempView(table.name)
            return _Result(None)
        if isinstance(tree, exp.Query):
            return _Result(self._frame(tree).toPandas())
        raise QueryError(f"retention on Spark: no Spark form for {tree.key.upper()} statements")

    def _update(self, tree) -> None:
        """``UPDATE t a SET c = e, ... FROM s WHERE w`` as t rebuilt: each row's new values are read by a join
        on a row number given to t, and rows nothing matched keep theirs."""
        target = tree.this
        name, alias = target.name, target.alias_or_name
        frame = self.tables[name]
        numbered = f"_ra_update_{name}"
        frame.selectExpr("*", "monotonically_increasing_id() AS `__row`").localCheckpoint(eager=True) \
            .createOrReplaceTempView(numbered)
        sets = {e.this.name: e.expression for e in tree.expressions}
        changes = exp.select(exp.column("__row", table=alias), *[exp.alias_(v.copy(), f"__new_{c}")
                                                                 for c, v in sets.items()])
        changes = changes.from_(exp.Table(this=exp.to_identifier(numbered), alias=exp.TableAlias(
            this=exp.to_identifier(alias))))
        source = tree.args.get("from_") or tree.args.get("from")
        if source is not None:
            changes = changes.join(source.this.copy(), join_type="cross")
        where = tree.args.get("where")
        if where is not None:
            changes = changes.where(where.this.copy())
        self.lake._sql(changes).createOrReplaceTempView(f"{numbered}_changes")
        columns = ", ".join(f"CASE WHEN c.`__row` IS NOT NULL THEN c.`__new_{col}` ELSE t.`{col}` END AS `{col}`"
                            if col in sets else f"t.`{col}`" for col in frame.columns)
        self._keep(name, self.spark.sql(f"SELECT {columns} FROM `{numbered}` t "
                                        f"LEFT JOIN `{numbered}_changes` c ON c.`__row` = t.`__row`"))
        self.spark.catalog.dropTempView(numbered)
        self.spark.catalog.dropTempView(f"{numbered}_changes")


def plan_retention_on_spark(lake: str | Path | SparkLake, policies: Iterable[Any], *, master: str | None = None,
                            **options: Any):
    """:func:`~repoaudit.retention.engine.plan_retention` with its statements run on Spark over ``lake``."""
    from repoaudit.retention.engine import plan_retention

    on_spark = lake if isinstance(lake, SparkLake) else SparkLake(lake, master=master)
    return plan_retention(SparkConnection(on_spark), policies, **options)
