"""The named queries on Spark, over the Parquet lake ``export --parquet DIR`` writes.

A named query is DuckDB SQL over the database's tables, views (``store/views.sql``) and table macros.
On Spark the same names have to exist, so :class:`SparkLake`

1. registers every lake table as a temporary view with the database's own columns and types (taken
   from ``_schema.json``, so an empty table or a partition written before a migration reads the same);
2. transpiles each view of ``views.sql`` with sqlglot (DuckDB to Spark) and creates it as a temporary
   view, in file order; a view Spark refuses is remembered with Spark's reason;
3. runs a query by parsing it as DuckDB, putting the bound parameters in as typed literals, inlining
   the table macros (Spark has no table macros: a call becomes the macro's body as a subquery, its
   parameters replaced by the call's arguments), rewriting the DuckDB-only functions sqlglot leaves
   alone (:data:`REWRITES`), and handing Spark the transpiled text.

What cannot be done that way is not papered over: :meth:`SparkLake.support` lists, per query, whether
Spark accepts it and, if not, the first line of the reason (an ``ASOF`` join, a view that failed, a
function without a Spark equivalent).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from repoaudit.analysis.queries import NamedQuery, get_query, load_queries
from repoaudit.errors import ConfigError, QueryError, first_line
from repoaudit.store.database import views_sql
from repoaudit.store.exports import read_lake_schema

try:  # the [spark] extra
    import sqlglot
    from sqlglot import exp
except ImportError:  # pragma: no cover - reported when used
    sqlglot = None

DEFAULT_MASTER = "local[2]"
_LENGTH_OF_ARRAY = re.compile(r'Cannot resolve "length\((.+?)\)" due to data type mismatch.*type "ARRAY')

_STATEMENT = re.compile(r"^CREATE OR REPLACE (VIEW|MACRO) (\w+)(?:\(([^)]*)\))?\s+AS(?: TABLE)?\s*$|"
                        r"^CREATE OR REPLACE (VIEW) (\w+) AS (.*)$", re.M)


def _require_sqlglot() -> None:
    if sqlglot is None:
        raise ConfigError("--engine spark needs the [spark] extra (pip install -e '.[spark]')")


@dataclass(frozen=True)
class Definition:
    """One view or table macro of views.sql, parsed as DuckDB."""

    kind: str  # "VIEW" or "MACRO"
    name: str
    params: tuple[str, ...]
    body: Any  # sqlglot expression


def split_views(text: str) -> list[tuple[str, str, tuple[str, ...], str]]:
    """``views.sql`` as (kind, name, parameters, body SQL), in file order."""
    out = []
    # Whole-line comments go first: they sit between statements and may hold a semicolon of their own.
    text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
    matches = list(_STATEMENT.finditer(text))
    for i, m in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        if m.group(1):
            kind, name, params = m.group(1), m.group(2), m.group(3)
            body = text[m.end():end]
        else:
            kind, name, params = m.group(4), m.group(5), None
            body = m.group(6) + text[m.end():end]
        body = body.strip()
        # the body ends at its statement's semicolon; what follows is the next statement's comments
        body = body[:body.rfind(";")] if ";" in body else body
        out.append((kind, name, tuple(p.strip() for p in params.split(",")) if params else (), body))
    return out


def _spark_type(duckdb_type: str) -> str:
    if duckdb_type == "JSON":
        return "STRING"
    return exp.DataType.build(duckdb_type, dialect="duckdb").sql("spark")


def _literal(value: Any, sql_type: str):
    if value is None:
        return exp.Cast(this=exp.Null(), to=exp.DataType.build(sql_type, dialect="duckdb"))
    if isinstance(value, bool):
        return exp.Boolean(this=value)
    if isinstance(value, (int, float)):
        return exp.Literal.number(value)
    return exp.Cast(this=exp.Literal.string(str(value)), to=exp.DataType.build(sql_type, dialect="duckdb"))


def _py_literal(value: Any):
    """A Python value (read back from Spark, or a bound parameter) as a Spark literal of its type."""
    if value is None:
        return exp.Null()
    if isinstance(value, (dt.datetime, pd.Timestamp)):
        stamp = pd.Timestamp(value)
        stamp = stamp.tz_convert("UTC").tz_localize(None) if stamp.tzinfo else stamp
        return exp.Cast(this=exp.Literal.string(stamp.isoformat(sep=" ")), to=exp.DataType.build("TIMESTAMP"))
    if isinstance(value, (list, tuple)):
        return exp.Array(expressions=[_py_literal(v) for v in value])
    return _literal(value, "VARCHAR")


def _fn(name: str, *args):
    return exp.Anonymous(this=name, expressions=list(args))


def _filtered(aggregate, where):
    """``aggregate`` with the FILTER clause its DuckDB original had (Spark takes FILTER only right after
    the aggregate call, not after the expression built around it)."""
    return exp.Filter(this=aggregate, expression=where.copy()) if where is not None else aggregate


def _string_agg(node, where=None):
    """string_agg(x, sep ORDER BY x) as array_join over a sorted collect_list (collect_set for DISTINCT):
    Spark 4's LISTAGG ... WITHIN GROUP fails at run time (a ClassCastException in its optimizer)."""
    inner, order = node.this, None
    if isinstance(inner, exp.Order):
        order, inner = inner.expressions, inner.this
    distinct = isinstance(inner, exp.Distinct)
    if distinct:
        if len(inner.expressions) != 1:
            return _filtered(node, where)
        inner = inner.expressions[0]
    if order and (len(order) != 1 or order[0].this != inner or order[0].args.get("desc")):
        return _filtered(node, where)  # ordered by something else: left to LISTAGG
    collected = _filtered(_fn("collect_set" if distinct else "collect_list", inner), where)
    if order or distinct:
        collected = _fn("array_sort", collected)
    separator = node.args.get("separator") or exp.Literal.string(",")
    # string_agg over nothing (all NULL, or no rows) is NULL, array_join over nothing ''
    empty = exp.EQ(this=_fn("size", collected.copy()), expression=exp.Literal.number(0))
    return exp.If(this=empty, true=exp.Null(), false=_fn("array_join", collected, separator))


def _top_n(node):
    """DuckDB's arg_max(x, key, n) (arg_min): the x of the n rows with the greatest (least) key, greatest first,
    rows whose key is NULL left out. A struct key (a tuple) compares field by field on both engines."""
    key = node.expression
    if isinstance(key, exp.Tuple):
        key = _fn("named_struct", *[e for i, k in enumerate(key.expressions)
                                     for e in (exp.Literal.string(f"k{i}"), k)])
    pairs = _fn("collect_list", _fn("named_struct", exp.Literal.string("k"), key, exp.Literal.string("v"), node.this))
    pairs = exp.Filter(this=pairs, expression=exp.Where(this=exp.Not(this=exp.Is(this=key.copy(), expression=exp.Null()))))
    ranked = _fn("sort_array", pairs, exp.false() if isinstance(node, exp.ArgMax) else exp.true())
    values = exp.Lambda(this=exp.Dot(this=exp.column("s"), expression=exp.to_identifier("v")),
                        expressions=[exp.to_identifier("s")])
    return _fn("slice", _fn("transform", ranked, values), exp.Literal.number(1), node.args["count"])


def _compare(left, right, ordered) -> exp.Expression:
    """-1, 0 or 1 as ``left`` sorts before, with or after ``right`` under one ORDER BY key (DuckDB's
    default: ascending, NULLs last in either direction)."""
    desc = bool(ordered.args.get("desc"))
    nulls_first = bool(ordered.args.get("nulls_first"))
    before, after = exp.Literal.number(-1), exp.Literal.number(1)
    null_l, null_r = exp.Is(this=left.copy(), expression=exp.Null()), exp.Is(this=right.copy(), expression=exp.Null())
    return exp.Case(ifs=[
        exp.If(this=exp.and_(null_l.copy(), null_r.copy()), true=exp.Literal.number(0)),
        exp.If(this=null_l, true=before if nulls_first else after),
        exp.If(this=null_r, true=after if nulls_first else before),
        exp.If(this=exp.LT(this=left.copy(), expression=right.copy()), true=after if desc else before),
        exp.If(this=exp.GT(this=left.copy(), expression=right.copy()), true=before if desc else after),
    ], default=exp.Literal.number(0))


def _ordered_list(node, where=None):
    """DuckDB's list(x ORDER BY k, ...) on Spark. sqlglot writes COLLECT_LIST(x) and drops the ORDER BY,
    so the list came back in whatever order the rows reached the aggregate, which changes with how Spark
    plans and shuffles (it did differ after other queries ran in the same session). Here each row's value
    travels with its sort keys in a struct, the structs are sorted by the keys as DuckDB sorts them, and the
    values taken out. As DuckDB's list, it keeps NULL values and is NULL (not empty) over no rows."""
    inner, order = node.this, None
    if isinstance(inner, exp.Order):
        order, inner = inner.expressions, inner.this
    if not order:
        return _filtered(node, where)
    distinct = isinstance(inner, exp.Distinct)
    if distinct:
        if len(inner.expressions) != 1:
            return _filtered(node, where)
        inner = inner.expressions[0]
    fields = [exp.Literal.string("v"), inner]
    for i, ordered in enumerate(order):
        fields += [exp.Literal.string(f"k{i}"), ordered.this]
    # DISTINCT: DuckDB requires the keys to be the value itself, so distinct structs are distinct values
    collected = _filtered(_fn("collect_set" if distinct else "collect_list", _fn("named_struct", *fields)), where)
    left, right = exp.to_identifier("l"), exp.to_identifier("r")

    def key(side, i):
        return exp.Dot(this=exp.column(side), expression=exp.to_identifier(f"k{i}"))

    # the first key decides, each later one breaks the ties left before it
    compare = _fn("coalesce", *[_fn("nullif", _compare(key("l", i), key("r", i), o), exp.Literal.number(0))
                                for i, o in enumerate(order)], exp.Literal.number(0))
    comparator = exp.Lambda(this=compare, expressions=[left, right])
    values = exp.Lambda(this=exp.Dot(this=exp.column("s"), expression=exp.to_identifier("v")),
                        expressions=[exp.to_identifier("s")])
    ordered_values = _fn("transform", _fn("array_sort", collected, comparator), values)
    empty = exp.EQ(this=_fn("size", collected.copy()), expression=exp.Literal.number(0))
    return exp.If(this=empty, true=exp.Null(), false=ordered_values)


def _rewrite_functions(tree, lists: frozenset = frozenset()):
    """DuckDB functions sqlglot passes through unchanged, given their Spark equivalents. ``lists``: the
    arguments of length() that Spark's analyser found to be arrays (length of a list is size on Spark)."""

    def visit(node):
        if isinstance(node, exp.Length) and (node.this.sql(dialect="spark") in lists or (
                isinstance(node.this, exp.Column) and node.this.name in lists)):
            return _fn("size", node.this)
        if isinstance(node, exp.Filter) and isinstance(node.this, exp.GroupConcat):
            return _string_agg(node.this, node.expression)
        if isinstance(node, exp.GroupConcat):
            return _string_agg(node)
        if isinstance(node, exp.Filter) and isinstance(node.this, exp.ArrayAgg):
            return _ordered_list(node.this, node.expression)
        if isinstance(node, exp.ArrayAgg):
            return _ordered_list(node)
        if isinstance(node, exp.DateDiff) and (node.unit.name if node.unit else "day").lower() in ("day", "days"):
            # DuckDB counts the day boundaries between the two; Spark's DATEDIFF(DAY, ...) whole days elapsed.
            return _fn("datediff", exp.Cast(this=node.this, to=exp.DataType.build("DATE")),
                       exp.Cast(this=node.expression, to=exp.DataType.build("DATE")))
        if isinstance(node, exp.Bracket) and len(node.expressions) == 1 and isinstance(node.expressions[0], exp.Slice):
            # DuckDB's list[a:b]: elements a..b, 1-based and inclusive, either end optional
            begin = node.expressions[0].this or exp.Literal.number(1)
            end = node.expressions[0].expression
            if end is None:
                return _fn("slice", node.this, begin, exp.Literal.number(2 ** 31 - 1))
            return _fn("list_slice", node.this, begin, end)  # the next pass makes it Spark's slice
        if isinstance(node, exp.RegexpFullMatch):  # the whole string matches: RLIKE anchored
            anchored = _fn("concat", exp.Literal.string("^(?:"), node.expression, exp.Literal.string(")$"))
            return exp.RegexpLike(this=node.this, expression=anchored)
        if isinstance(node, (exp.ArgMax, exp.ArgMin)) and node.args.get("count") is not None:
            return _top_n(node)
        if isinstance(node, exp.IgnoreNulls) and isinstance(node.this, exp.AnyValue):
            # DuckDB's any_value skips NULLs; sqlglot says so with IGNORE NULLS after the call, which Spark's
            # grammar refuses once a FILTER clause follows. Spark's second argument says the same.
            return _fn("any_value", node.this.this, exp.true())
        if isinstance(node, exp.ArrayOverlaps):  # DuckDB's && on lists; Spark's && is boolean AND
            return _fn("arrays_overlap", node.this, node.expression)
        if isinstance(node, exp.ToDays):
            return _fn("make_dt_interval", node.this)
        if isinstance(node, exp.CTE) and node.args.get("materialized") is not None:
            node.set("materialized", None)  # a planner hint Spark's grammar lacks; the result is the same
            return node
        if isinstance(node, exp.Anonymous):
            name = node.name.lower()
            args = node.expressions
            if name == "to_days" and len(args) == 1:
                return _fn("make_dt_interval", args[0])
            if name == "to_hours" and len(args) == 1:
                return _fn("make_dt_interval", exp.Literal.number(0), args[0])
            if name == "to_microseconds" and len(args) == 1:
                seconds = exp.Div(this=exp.Cast(this=args[0], to=exp.DataType.build("DECIMAL(38, 6)")),
                                  expression=exp.Literal.number(1_000_000))
                return _fn("make_dt_interval", exp.Literal.number(0), exp.Literal.number(0),
                           exp.Literal.number(0), seconds)
            if name == "to_seconds" and len(args) == 1:
                seconds = exp.Cast(this=args[0], to=exp.DataType.build("DECIMAL(18, 6)"))
                return _fn("make_dt_interval", exp.Literal.number(0), exp.Literal.number(0),
                           exp.Literal.number(0), seconds)
            if name == "list_slice" and len(args) == 3:
                # DuckDB: elements begin..end (1-based, inclusive); Spark: a start and a length
                begin, end = args[1], args[2]
                length = exp.Add(this=exp.Sub(this=end.copy(), expression=begin.copy()),
                                 expression=exp.Literal.number(1))
                return _fn("slice", args[0], begin, exp.Greatest(this=length, expressions=[exp.Literal.number(0)]))
            if name == "error" and len(args) == 1:
                return _fn("raise_error", args[0])
            if name == "list_has_any" and len(args) == 2:
                return _fn("arrays_overlap", *args)
            if name == "list_bool_or" and len(args) == 1:
                # over a boolean list: true when any is, NULL for an empty list (as DuckDB)
                return _fn("array_max", args[0])
        if isinstance(node, exp.Literal) and node.is_string and node.this in ("-infinity", "infinity"):
            # DuckDB's infinite timestamps: the ends of Spark's range stand in for them.
            return exp.Literal.string("0001-01-01 00:00:00" if node.this.startswith("-") else "9999-12-31 23:59:59")
        return node

    # transform() does not descend into a node it replaced, so what a rewrite wrapped (an arg_max inside a
    # list_slice) is rewritten by the next pass; every rewrite yields nodes no rule matches again.
    for _ in range(8):
        before = tree.sql(dialect="duckdb")
        tree = tree.transform(visit)
        if tree.sql(dialect="duckdb") == before:
            break
    return tree


class SparkLake:
    """A Spark session whose temporary views are the lake's tables and views.sql's views."""

    def __init__(self, lake: str | Path, *, master: str | None = None, session=None):
        _require_sqlglot()
        self.lake = Path(lake)
        schema = read_lake_schema(self.lake)
        if schema is None:
            raise ConfigError(f"{self.lake} is not a repoaudit lake (no _schema.json; write one with "
                              "'repoaudit export --parquet DIR')")
        self.schema = schema
        self.spark = session or _session(master or DEFAULT_MASTER)
        self.macros: dict[str, Definition] = {}
        self.lists: set[str] = set()  # length() arguments Spark found to be arrays
        self.failed: dict[str, str] = {}  # view name -> why Spark refused it
        self._register_tables()
        self._register_views()

    # -- setting up ---------------------------------------------------------------------------------------
    def _register_tables(self) -> None:
        for table, entry in sorted(self.schema["tables"].items()):
            columns = [(c["name"], _spark_type(c["stored_as"])) for c in entry["columns"]]
            ddl = ", ".join(f"`{n}` {t}" for n, t in columns)
            folder = self.lake / table
            if folder.is_dir() and next(folder.rglob("*.parquet"), None) is not None:
                # The schema is given, not inferred: no job reads every footer, and a file written before a
                # migration added a column reads as NULLs in it rather than as another schema.
                own = {n for n, _ in columns}
                extra = [f"`{p['name']}` {_spark_type(p['type'])}" for p in entry["partitions"] if p["name"] not in own]
                frame = (self.spark.read.schema(", ".join([ddl, *extra])).option("basePath", str(folder))
                         .parquet(str(folder)))
                frame.select(*[n for n, _ in columns]).createOrReplaceTempView(table)
            else:
                self.spark.createDataFrame([], ddl).createOrReplaceTempView(table)

    def _register_views(self) -> None:
        """Parse views.sql; each view is created on Spark the first time a query names it."""
        self.views: dict[str, Any] = {}
        for kind, name, params, body in split_views(views_sql()):
            try:
                tree = sqlglot.parse_one(body, read="duckdb")
            except sqlglot.errors.ParseError as exc:
                self.failed[name] = f"sqlglot cannot parse it: {first_line(exc)}"
                continue
            if kind == "MACRO":
                self.macros[name] = Definition(kind, name, params, tree)
            else:
                self.views[name] = tree
        self.created: set[str] = set()

    def _ensure_views(self, tree, seen: frozenset = frozenset()) -> None:
        """Create on Spark every view ``tree`` names (after the views those name), once."""
        for table in tree.find_all(exp.Table):
            name = table.name
            if name in self.created or name in self.failed or name not in self.views or name in seen:
                continue
            view = self._inline_macros(self.views[name])
            self._ensure_views(view, seen | {name})
            try:
                self._sql(view).createOrReplaceTempView(name)
                self.created.add(name)
            except Exception as exc:  # Spark's AnalysisException, sqlglot's errors: the reason is the point
                self.failed[name] = _reason(exc)

    # -- transpiling --------------------------------------------------------------------------------------
    def _inline_macros(self, tree, depth: int = 0):
        if depth > 8:
            raise QueryError("table macros nest deeper than 8")

        def visit(node):
            if isinstance(node, exp.Table) and isinstance(node.this, exp.Anonymous) \
                    and node.this.name.lower() in self.macros:
                macro = self.macros[node.this.name.lower()]
                args = node.this.expressions
                if len(args) != len(macro.params):
                    raise QueryError(f"macro {macro.name} takes {len(macro.params)} arguments, got {len(args)}")
                bound = dict(zip(macro.params, args))

                def substitute(inner):
                    if isinstance(inner, exp.Column) and not inner.table and inner.name in bound:
                        return bound[inner.name].copy()
                    return inner

                body = self._inline_macros(macro.body.copy().transform(substitute), depth + 1)
                alias = node.alias or macro.name
                return exp.Subquery(this=body, alias=exp.TableAlias(this=exp.to_identifier(alias)))
            return node

        return tree.transform(visit)

    def _expand_correlated(self, tree):
        """A table macro called with a column of the relation beside it (``FROM snaps s, gc_blobs(s.snapshot_id)
        g``, DuckDB's lateral call) as the union of the macro's bodies for each value that column holds, each
        row marked with its value and joined back on it. Spark resolves no outer column in a subquery's CTEs
        (sqlglot hoists the macro's CTEs to the top), so the values are read first: the relation beside the
        call is a table or one of the statement's earlier CTEs, and such relations are small (a registry's
        storage snapshots)."""
        for node in list(tree.find_all(exp.Table)):
            call = node.this
            if not (isinstance(call, exp.Anonymous) and call.name.lower() in self.macros):
                continue
            outer = [c for a in call.expressions for c in a.find_all(exp.Column) if c.table]
            if not outer:
                continue
            select = node.find_ancestor(exp.Select)
            if len({c.table for c in outer}) != 1 or len(call.expressions) != 1 or \
                    not isinstance(call.expressions[0], exp.Column) or select is None:
                raise QueryError(f"a call of table macro {call.name} with outer columns other than one column")
            column = call.expressions[0]
            beside = [t for t in select.find_all(exp.Table) if t.alias_or_name == column.table and t is not node]
            if len(beside) != 1:
                raise QueryError(f"table macro {call.name}: cannot find relation {column.table} beside it")
            values_query = exp.select(exp.column(column.name)).distinct().from_(beside[0].name)
            cte = node.find_ancestor(exp.CTE)
            with_ = tree.args.get("with_") or tree.args.get("with")
            if with_ is not None:
                earlier = []
                for c in with_.expressions:
                    if c is cte:
                        break
                    earlier.append(c.copy())
                if earlier:
                    values_query.set("with_" if "with_" in tree.args else "with", exp.With(expressions=earlier))
            values = sorted({row[0] for row in self._sql(values_query).collect()}, key=repr)
            macro = self.macros[call.name.lower()]
            alias = node.alias or macro.name
            bodies = []
            for value in values or [None]:
                literal = _py_literal(value)
                body = exp.select(exp.Star(), exp.alias_(literal.copy(), "__arg")).from_(
                    exp.Table(this=exp.Anonymous(this=macro.name, expressions=[literal]), alias=exp.TableAlias(
                        this=exp.to_identifier("__body"))))
                bodies.append(body if values else body.where(exp.false()))
            union = bodies[0]
            for body in bodies[1:]:
                union = exp.union(union, body, distinct=False)
            star = [s for s in select.expressions if isinstance(s, exp.Column) and isinstance(s.this, exp.Star)
                    and s.table == alias]
            if star or any(isinstance(e, exp.Star) for e in select.expressions):
                # the marker column stays out of what the statement selects
                names = self._sql(exp.select(exp.Star()).from_(exp.Table(
                    this=exp.Anonymous(this=macro.name, expressions=[_py_literal(None)])))).columns
                for e in select.expressions:
                    if isinstance(e, exp.Star):
                        raise QueryError(f"table macro {macro.name}: SELECT * beside a call with an outer column")
                select.set("expressions", [c for e in select.expressions for c in (
                    [exp.column(n, table=alias) for n in names] if any(e is x for x in star) else [e])])
            node.replace(exp.Subquery(this=union, alias=exp.TableAlias(this=exp.to_identifier(alias))))
            select.where(exp.EQ(this=exp.column("__arg", table=alias), expression=column.copy()), copy=False)
        return tree

    def transpile_tree(self, tree) -> str:
        tree = self._inline_macros(self._expand_correlated(tree))
        for join in tree.find_all(exp.Join):
            if (join.args.get("method") or "").upper() == "ASOF":
                raise QueryError("an ASOF join (DuckDB's nearest-match join), which Spark has no equivalent for")
        self._ensure_views(tree)
        return _rewrite_functions(tree, frozenset(self.lists)).sql(dialect="spark")

    def _sql(self, tree):
        """Spark's DataFrame for ``tree``. DuckDB's length() takes strings and lists alike, Spark's only
        strings; which argument is a list only Spark's analyser knows, so its refusal names the argument
        and the statement is transpiled again with size() there."""
        for _ in range(16):
            try:
                return self.spark.sql(self.transpile_tree(tree.copy()))
            except Exception as exc:
                found = _LENGTH_OF_ARRAY.search(_reason(exc))
                if not found or found.group(1) in self.lists:
                    raise
                self.lists.add(found.group(1))
        raise QueryError("too many list arguments of length()")

    def transpile_sql(self, sql: str) -> str:
        """Any DuckDB statement over the lake's tables and views as Spark SQL."""
        try:
            tree = sqlglot.parse_one(sql, read="duckdb")
        except sqlglot.errors.ParseError as exc:
            raise QueryError(f"sqlglot cannot parse it: {first_line(exc)}") from None
        return self.transpile_tree(tree)

    def transpile(self, query: NamedQuery, params: dict[str, Any]) -> str:
        """The query's Spark SQL with its bound parameters as literals."""
        return self.transpile_tree(self._bound_tree(query, params))

    def _bound_tree(self, query: NamedQuery, params: dict[str, Any]):
        bound = {p.name: p.default for p in query.params}
        bound.update(params)
        types = {p.name: p.type for p in query.params}
        try:
            tree = sqlglot.parse_one(query.sql, read="duckdb")
        except sqlglot.errors.ParseError as exc:
            raise QueryError(f"sqlglot cannot parse it: {first_line(exc)}") from None

        def bind(node):
            if isinstance(node, (exp.Placeholder, exp.Parameter)) and node.name in bound:
                return _literal(bound[node.name], types[node.name])
            return node

        return tree.transform(bind)

    # -- running ------------------------------------------------------------------------------------------
    def query(self, name: str, **params: Any) -> pd.DataFrame:
        """Run the named query on Spark; a query Spark refuses is a QueryError with the reason."""
        q = get_query(name)
        bound = q.bind(params)
        # bind() keeps only parameters the SQL uses; unused ones need no literal
        values = {p.name: bound.get(p.name, p.default) for p in q.params}
        try:
            return self._sql(self._bound_tree(q, values)).toPandas()
        except QueryError as exc:
            raise QueryError(f"query {name} on Spark: {exc}") from None
        except Exception as exc:
            raise QueryError(f"query {name} on Spark: {self._explain(exc)}") from None

    def _explain(self, exc: Exception) -> str:
        reason = _reason(exc)
        missing = re.search(r"cannot be found.*?`([\w]+)`|TABLE_OR_VIEW_NOT_FOUND.*?`(\w+)`", reason)
        name = missing and (missing.group(1) or missing.group(2))
        if name in self.failed:
            return f"needs view {name}, which Spark refused: {self.failed[name]}"
        return reason

    def support(self) -> pd.DataFrame:
        """Each named query: whether Spark accepts it (analysed, not run) and, if not, why."""
        rows = []
        for q in load_queries().values():
            try:
                self._sql(self._bound_tree(q, {p.name: p.default for p in q.params}))
                rows.append({"name": q.name, "spark": True, "reason": ""})
            except Exception as exc:
                reason = exc.args[0] if isinstance(exc, QueryError) else self._explain(exc)
                rows.append({"name": q.name, "spark": False, "reason": reason})
        return pd.DataFrame(rows, columns=["name", "spark", "reason"])


def _reason(exc: Exception) -> str:
    java = getattr(exc, "java_exception", None)
    if java is not None:  # a failure while running: the JVM's root cause says what went wrong
        try:
            while java.getCause() is not None:
                java = java.getCause()
            return first_line(java.toString())
        except Exception:
            pass
    text = getattr(exc, "getMessage", None)
    text = text() if callable(text) else str(exc)
    return first_line(text) if text else type(exc).__name__


def _session(master: str):
    # PySpark logs every refused statement with its JVM stack; the refusal is reported as a QueryError.
    logging.getLogger("SQLQueryContextLogger").setLevel(logging.CRITICAL)
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise ConfigError("--engine spark needs the [spark] extra (pip install -e '.[spark]') and Java 17") from None
    try:
        builder = SparkSession.builder.master(master).appName("repoaudit")
        if master.startswith("local"):
            # One machine: a shuffle into Spark's default 200 partitions is mostly task overhead.
            builder = builder.config("spark.sql.shuffle.partitions", "2")
        return (builder
                .config("spark.sql.session.timeZone", "UTC")
                .config("spark.ui.enabled", "false")
                .config("spark.ui.showConsoleProgress", "false")
                # repoaudit's TIMESTAMP columns are UTC wall times; read them as timestamps, not TIMESTAMP_NTZ
                .config("spark.sql.parquet.inferTimestampNTZ.enabled", "false")
                .config("spark.sql.sources.partitionColumnTypeInference.enabled", "false")
                .getOrCreate())
    except Exception as exc:
        raise ConfigError(f"cannot start Spark at {master}: {_reason(exc)}") from None
