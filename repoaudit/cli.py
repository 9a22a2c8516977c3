"""The ``repoaudit`` command: parses options, calls the library, prints results.

No logic lives here that a notebook could not reach through :mod:`repoaudit.audit`.
Library errors become one line on stderr and exit code 1.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import click
import pandas as pd

from . import __version__
from .audit import Audit
from .config import DEFAULT_CONCURRENCY, default_db_path
from .errors import ConfigError, RepoauditError
from .formatting import human_bytes

FORMATS = click.Choice(["table", "csv", "json"])


def fail_cleanly(fn):
    """Turn library errors into ``repoaudit: error: …`` on one line, exit 1."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except RepoauditError as exc:
            message = " ".join(str(exc).split())
            raise click.ClickException(message) from None
        except KeyboardInterrupt:
            click.echo("repoaudit: interrupted", err=True)
            sys.exit(130)

    return wrapper


def db_option(fn):
    return click.option("--db", "db", default=default_db_path, show_default="REPOAUDIT_DB or ./repoaudit.duckdb",
                        help="DuckDB database file.")(fn)


def print_frame(frame: pd.DataFrame, fmt: str, output: Path | None = None) -> None:
    if fmt == "csv":
        text = frame.to_csv(index=False)
    elif fmt == "json":
        text = json.dumps(json.loads(frame.to_json(orient="records", date_format="iso")), indent=2) + "\n"
    else:
        text = (frame.to_string(index=False) if len(frame) else "(no rows)") + "\n"
    if output:
        output.write_text(text)
    else:
        click.echo(text, nl=False)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="repoaudit")
def main():
    """Audit container image registries: stale images, reclaimable bytes, vulnerability exposure."""


@main.command()
@click.argument("url")
@db_option
@click.option("--repo", "include", multiple=True, metavar="GLOB", help="Only repositories matching GLOB (repeatable).")
@click.option("--exclude-repo", "exclude", multiple=True, metavar="GLOB", help="Skip repositories matching GLOB.")
@click.option("--concurrency", default=DEFAULT_CONCURRENCY, show_default=True, type=click.IntRange(1, 256),
              help="At most this many requests in flight.")
@click.option("--username", "-u", help="Registry user name.")
@click.option("--password-stdin", is_flag=True, help="Read the password (or token) from standard input.")
@click.option("--full", is_flag=True, help="Fetch every manifest again instead of HEAD-ing known tags.")
@click.option("--name", help="Registry name to store (default: host[:port], or oci:PATH).")
@click.option("--no-progress", is_flag=True, help="No progress bars.")
@fail_cleanly
def collect(url, db, include, exclude, concurrency, username, password_stdin, full, name, no_progress):
    """Snapshot a registry (https://host, http://host:port) or OCI layouts (oci:PATH) into the database."""
    password = None
    if password_stdin:
        if not username:
            raise ConfigError("--password-stdin needs --username")
        password = sys.stdin.readline().rstrip("\r\n")
    with Audit(db) as audit:
        result = audit.collect(url, username=username, password=password, concurrency=concurrency,
                               include=include, exclude=exclude, full=full, name=name, progress=not no_progress)
        summary = audit.query("snapshots", limit=1, registry=result.registry).iloc[0]
    click.echo(f"snapshot {result.snapshot_id} of {result.registry}: {result.status} ({result.mode})\n"
               f"  repositories {result.repositories}, tags {result.tags}, manifests {result.manifests} "
               f"({result.new_manifests} new), unique bytes {human_bytes(summary['unique_bytes'])}, "
               f"errors {result.errors}, {result.seconds:.1f}s")
    if result.status == "failed":
        raise click.ClickException(f"snapshot {result.snapshot_id} failed: {result.error}")
    if result.errors:
        click.echo(f"  {result.errors} error(s) recorded: repoaudit sql \"SELECT * FROM collection_errors "
                   f"WHERE snapshot_id = {result.snapshot_id}\"", err=True)


@main.command()
@click.argument("statement")
@db_option
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
@fail_cleanly
def sql(statement, db, fmt):
    """Run SQL against the database (read-only)."""
    with Audit(db, read_only=True) as audit:
        print_frame(audit.sql(statement), fmt)


@main.command()
@db_option
@click.option("--registry", help="Only this registry.")
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
@fail_cleanly
def snapshots(db, registry, fmt):
    """List collection runs, newest first."""
    with Audit(db, read_only=True) as audit:
        print_frame(audit.query("snapshots", registry=registry), fmt)


def parse_params(pairs: tuple[str, ...]) -> dict[str, str]:
    params = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--param wants key=value, got {pair!r}")
        params[key.strip()] = value
    return params


@main.command()
@click.argument("name")
@db_option
@click.option("--param", "-p", "params", multiple=True, metavar="KEY=VALUE", help="Query parameter (repeatable).")
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write to a file.")
@fail_cleanly
def query(name, db, params, fmt, output):
    """Run a named query from queries/ (see 'repoaudit queries')."""
    with Audit(db, read_only=True) as audit:
        print_frame(audit.query(name, **parse_params(params)), fmt, output)


@main.command("queries")
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
@fail_cleanly
def list_queries(fmt):
    """List the named queries, their descriptions and parameters."""
    with Audit(":memory:") as audit:
        frame = audit.queries()
    if fmt != "table":
        print_frame(frame, fmt)
        return
    for row in frame.itertuples():
        click.echo(f"{row.name}\n  {row.description}")
        if row.parameters:
            click.echo(f"  parameters: {row.parameters}")


@main.command()
@click.argument("name", required=False)
@db_option
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write NAME (a table, view or named query) to this CSV file.")
@click.option("--parquet", "parquet_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write every table as Hive-partitioned Parquet under this directory.")
@click.option("--overwrite", is_flag=True, help="Replace a non-empty --parquet directory.")
@click.option("--param", "-p", "params", multiple=True, metavar="KEY=VALUE", help="Named-query parameter.")
@fail_cleanly
def export(name, db, csv_path, parquet_dir, overwrite, params):
    """Export NAME to CSV (--csv FILE), or every table to partitioned Parquet (--parquet DIR)."""
    if bool(csv_path) == bool(parquet_dir):
        raise ConfigError("give exactly one of --csv FILE (with NAME) or --parquet DIR")
    with Audit(db, read_only=True) as audit:
        if csv_path:
            if not name:
                raise ConfigError("--csv needs the NAME of a table, view or named query")
            count = audit.export_csv(name, csv_path, **parse_params(params))
            click.echo(f"{count} rows written to {csv_path}")
            return
        if name or params:
            raise ConfigError("--parquet exports every table; it takes no NAME or --param")
        counts = audit.export_parquet(parquet_dir, overwrite=overwrite)
    for table, rows in counts.items():
        click.echo(f"{table:<24} {rows:>10} rows")
    click.echo(f"written to {parquet_dir}")


@main.command()
@click.option("--dir", "directory", default="data/demo", show_default=True,
              type=click.Path(file_okay=False, path_type=Path), help="Where to write the demo estate.")
@click.option("--db", "db", default="data/demo/repoaudit-demo.duckdb", show_default=True,
              type=click.Path(dir_okay=False, path_type=Path), help="Demo database (recreated).")
@click.option("--no-progress", is_flag=True, help="No progress bars.")
@fail_cleanly
def demo(directory, db, no_progress):
    """Generate the synthetic demo estate, collect its history and print the headline answers."""
    from .demo import run_demo

    run_demo(directory, db, progress=not no_progress, echo=click.echo)


# --- scan and workload commands (issue 4) ---


# --- retention commands (issue 5) ---


# --- history, sharding and merge commands (issue 7) ---


# --- report and export commands (issue 6) ---


@main.command()
@db_option
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="File to write (default report.html or report.md).")
@click.option("--format", "fmt", type=click.Choice(["html", "md"]), default="html", show_default=True)
@click.option("--since", metavar="SNAPSHOT|DURATION",
              help="Compare with this snapshot id or look-back (7d, 24h, 2w); default: the previous snapshot.")
@fail_cleanly
def report(db, output, fmt, since):
    """Write the audit report: a self-contained HTML page, or Markdown for chat and e-mail."""
    from .report import write_report

    with Audit(db, read_only=True) as audit:
        path = write_report(audit, output or f"report.{fmt}", fmt=fmt, since=since)
    click.echo(f"report written to {path}")


if __name__ == "__main__":
    main()
