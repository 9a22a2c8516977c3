"""The Python API: ``audit = repoaudit.open("repoaudit.duckdb")``, then DataFrames.

Everything the CLI does goes through :class:`Audit`, so a notebook and a cron
job see the same behaviour.
"""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterable

import duckdb
import pandas as pd

from .collector import CollectResult, collect_source
from .config import ClientOptions, CollectOptions, Target, default_db_path, parse_target
from .errors import ConfigError, QueryError, StoreError
from .progress import NullProgress, TqdmProgress
from .queries import NamedQuery, get_query, load_queries
from .retry import RetryPolicy
from .sources import open_source
from .store import connect


def run_sync(make_coro: Callable[[], Any]) -> Any:
    """Run a coroutine from sync code, also inside Jupyter where a loop is already running."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make_coro())
    box: dict[str, Any] = {}

    def runner():
        try:
            box["result"] = asyncio.run(make_coro())
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=runner, name="repoaudit-collect")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["result"]


class Audit:
    """A repoaudit database: collect into it, query it, export from it."""

    def __init__(self, path: str | Path | None = None, *, read_only: bool = False):
        self.path = str(path or default_db_path())
        self.read_only = read_only
        self.con: duckdb.DuckDBPyConnection = connect(self.path, read_only=read_only)

    def __repr__(self) -> str:
        return f"Audit({self.path!r})"

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> "Audit":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- reading ---------------------------------------------------------------
    def sql(self, text: str, params: dict | list | None = None) -> pd.DataFrame:
        """Run ad-hoc SQL and return a DataFrame."""
        try:
            return self.con.execute(text, params).df() if params else self.con.execute(text).df()
        except duckdb.Error as exc:
            raise QueryError(f"SQL failed: {str(exc).splitlines()[0]}") from None

    def queries(self) -> pd.DataFrame:
        """The named queries with their descriptions and parameters."""
        rows = [{"name": q.name, "description": q.description,
                 "parameters": ", ".join(f"{p.name} {p.type} = {p.default!r}" for p in q.params)}
                for q in load_queries().values()]
        return pd.DataFrame(rows, columns=["name", "description", "parameters"])

    def named(self, name: str) -> NamedQuery:
        return get_query(name)

    def query(self, name: str, **params: Any) -> pd.DataFrame:
        """Run the named query ``queries/<name>.sql`` with bound parameters."""
        q = get_query(name)
        bound = q.bind(params)
        try:
            return self.con.execute(q.sql, bound).df()
        except duckdb.Error as exc:
            raise QueryError(f"query {name} failed: {str(exc).splitlines()[0]}") from None

    def snapshots(self) -> pd.DataFrame:
        return self.query("snapshots")

    def relations(self) -> list[str]:
        rows = self.con.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' "
                                "ORDER BY table_name").fetchall()
        return [r[0] for r in rows]

    def relation(self, name: str) -> pd.DataFrame:
        """A whole table or view by name (checked against the catalog, never pasted blindly)."""
        if name not in self.relations():
            raise QueryError(f"unknown table or view {name!r} (valid: {', '.join(self.relations())})")
        return self.con.execute(f'SELECT * FROM "{name}"').df()

    def export_csv(self, name: str, path: str | Path, **params: Any) -> int:
        """Write a table, view or named query to CSV; returns the row count."""
        if name in self.relations():
            if params:
                raise QueryError(f"{name} is a table or view and takes no parameters")
            frame = self.relation(name)
        elif name in load_queries():
            frame = self.query(name, **params)
        else:
            raise QueryError(f"unknown table, view or query {name!r} (tables and views: "
                             f"{', '.join(self.relations())}; queries: {', '.join(load_queries())})")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(path, index=False)
        return len(frame)

    def export_parquet(self, directory: str | Path, *, overwrite: bool = False) -> dict[str, int]:
        """Every table as Hive-partitioned Parquet under ``directory``; rows per table."""
        from .exports import export_parquet

        return export_parquet(self.con, directory, overwrite=overwrite)

    # -- collecting ------------------------------------------------------------
    def collect(self, url: str | Target, *, username: str | None = None, password: str | None = None,
                concurrency: int = 16, include: Iterable[str] = (), exclude: Iterable[str] = (),
                full: bool = False, progress: bool = True, name: str | None = None,
                started_at: datetime | None = None, retry: RetryPolicy | None = None,
                client_options: ClientOptions | None = None, transport=None) -> CollectResult:
        """Snapshot one registry (``https://…``/``http://…``) or OCI layout tree (``oci:PATH``)."""
        if self.read_only:
            raise StoreError(f"{self.path} is open read-only; open it writable to collect")
        target = url if isinstance(url, Target) else parse_target(url, name)
        if client_options is None:
            client_options = ClientOptions(username=username, password=password, concurrency=concurrency,
                                           **({"retry": retry} if retry else {}))
        if client_options.password and not client_options.username:
            raise ConfigError("a password was given without a username")
        options = CollectOptions(include=tuple(include), exclude=tuple(exclude), full=full)

        async def go():
            kw = {"transport": transport} if transport is not None and target.kind == "registry" else {}
            source = open_source(target, client_options, **kw)
            try:
                bar = TqdmProgress(target.name) if progress else NullProgress()
                return await collect_source(self.con, source, options, progress=bar, started_at=started_at)
            finally:
                await source.aclose()

        return run_sync(go)

    # -- scans and workloads (issue 4) ----------------------------------------

    # -- retention (issue 5) ---------------------------------------------------

    # -- history and merge (issue 7) -------------------------------------------


def open(path: str | Path | None = None, *, read_only: bool = False) -> Audit:  # noqa: A001 - mirrors builtins.open on purpose
    """Open (or create) a repoaudit database; ``REPOAUDIT_DB`` or ./repoaudit.duckdb by default."""
    return Audit(path, read_only=read_only)
