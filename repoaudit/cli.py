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
@click.argument("url", required=False)
@db_option
@click.option("-f", "--file", "files", multiple=True, type=click.Path(exists=True, path_type=Path),
              help="Flux ImageRepository YAML (file or directory) or a repoaudit config file, instead of URL.")
@click.option("--repo", "include", multiple=True, metavar="GLOB", help="Only repositories matching GLOB (repeatable).")
@click.option("--exclude-repo", "exclude", multiple=True, metavar="GLOB", help="Skip repositories matching GLOB.")
@click.option("--repository", "repositories", multiple=True, metavar="NAME",
              help="Collect exactly this repository, without the catalog (Docker Hub, GHCR, ECR Public).")
@click.option("--exclude-tag", "exclude_tags", multiple=True, metavar="REGEX",
              help="Skip tags matching REGEX (Flux exclusionList semantics; e.g. '^.*\\.sig$').")
@click.option("--concurrency", default=DEFAULT_CONCURRENCY, show_default=True, type=click.IntRange(1, 256),
              help="At most this many requests in flight.")
@click.option("--username", "-u", help="Registry user name.")
@click.option("--password-stdin", is_flag=True, help="Read the password (or token) from standard input.")
@click.option("--ca-file", type=click.Path(exists=True, dir_okay=False), help="PEM CA bundle to verify the registry.")
@click.option("--cert", "cert_file", type=click.Path(exists=True, dir_okay=False), help="Client certificate (mTLS).")
@click.option("--key", "key_file", type=click.Path(exists=True, dir_okay=False), help="Client certificate key.")
@click.option("--insecure", is_flag=True, help="Do not verify the registry's TLS certificate.")
@click.option("--timeout", type=click.FloatRange(min=0.1), help="Seconds per request (default 30).")
@click.option("--proxy", envvar="REPOAUDIT_PROXY", help="HTTP(S) proxy URL (HTTPS_PROXY is honoured too).")
@click.option("--full", is_flag=True, help="Fetch every manifest again instead of HEAD-ing known tags.")
@click.option("--name", help="Registry name to store (default: host[:port], or oci:PATH).")
@click.option("--no-progress", is_flag=True, help="No progress bars.")
@click.option("--shard", metavar="I/N", help="Only the repositories whose name hashes to I mod N (I from 0 to N-1).")
@fail_cleanly
def collect(url, db, files, include, exclude, repositories, exclude_tags, concurrency, username, password_stdin,
            ca_file, cert_file, key_file, insecure, timeout, proxy, full, name, no_progress, shard):
    """Snapshot a registry (https://host, http://host:port), OCI layouts (oci:PATH) or -f FILE into the database."""
    if bool(url) == bool(files):
        raise ConfigError("give a registry URL or -f FILE, not both and not neither")
    if bool(cert_file) != bool(key_file):
        raise ConfigError("--cert and --key go together")
    password = None
    if password_stdin:
        if not username:
            raise ConfigError("--password-stdin needs --username")
        password = sys.stdin.readline().rstrip("\r\n")
    with Audit(db) as audit:
        if files:
            results = collect_files(audit, files, concurrency=concurrency, full=full, progress=not no_progress)
        else:
            results = [audit.collect(url, username=username, password=password, concurrency=concurrency,
                                     include=include, exclude=exclude, repositories=repositories,
                                     exclude_tags=exclude_tags, full=full, name=name, progress=not no_progress,
                                     shard=shard, ca_file=ca_file, cert=(cert_file, key_file) if cert_file else None,
                                     insecure=insecure, timeout=timeout, proxy=proxy)]
        for result in results:
            summary = audit.query("snapshots", limit=1, registry=result.registry).iloc[0]
            click.echo(f"snapshot {result.snapshot_id} of {result.registry}: {result.status} ({result.mode})\n"
                       f"  repositories {result.repositories}, tags {result.tags}, manifests {result.manifests} "
                       f"({result.new_manifests} new), unique bytes {human_bytes(summary['unique_bytes'])}, "
                       f"errors {result.errors}, {result.seconds:.1f}s")
            if result.errors and result.status != "failed":
                click.echo(f"  {result.errors} error(s) recorded: repoaudit sql \"SELECT * FROM collection_errors "
                           f"WHERE snapshot_id = {result.snapshot_id}\"", err=True)
    failed = [r for r in results if r.status == "failed"]
    if failed:
        raise click.ClickException("; ".join(f"snapshot {r.snapshot_id} of {r.registry} failed: {r.error}"
                                             for r in failed))


def collect_files(audit: Audit, files, **kw) -> list:
    """Load Flux ImageRepository objects or repoaudit config files, collect, and say what was skipped."""
    from .fluxconfig import load_config, load_flux

    jobs = []
    flux_paths = []
    for path in files:
        if path.is_file() and _is_repoaudit_config(path):
            jobs.extend(load_config(path))
        else:
            flux_paths.append(path)
    skipped_docs: list[str] = []
    if flux_paths:
        jobs.extend(load_flux(flux_paths, skipped=skipped_docs))
    if not jobs:
        raise ConfigError(f"no ImageRepository or registries found in {', '.join(map(str, files))}")
    for job in jobs:
        for note in job.notes:
            click.echo(f"note: {job.name}: {note}", err=True)
    results, skipped = audit.collect_jobs(jobs, **kw)
    for job, reason in skipped:
        click.echo(f"skipped {job.name}: {reason}", err=True)
    return results


def _is_repoaudit_config(path: Path) -> bool:
    """A repoaudit config file has a top-level ``registries`` key; anything else is read as Flux YAML."""
    from .loader import load_documents

    try:
        docs = load_documents(path, kind="flux", empty_ok=True)
    except ConfigError:
        return False  # load_flux reports the error with its line
    return len(docs) == 1 and isinstance(docs[0].body, dict) and "registries" in docs[0].body


@main.command()
@db_option
@click.option("--registry", help="Only this registry.")
@click.option("--format", "fmt", type=click.Choice(["yaml", "json", "table"]), default="yaml", show_default=True)
@fail_cleanly
def status(db, registry, fmt):
    """Flux-style status of each repository in the latest snapshot (compare with kubectl get imagerepository)."""
    with Audit(db, read_only=True) as audit:
        frame = audit.query("repository_status", registry=registry)
        if fmt == "table":
            print_frame(frame, "table")
            return
        docs = audit.flux_status(registry=registry)
    if fmt == "json":
        click.echo(json.dumps(docs, indent=2))
    else:
        import yaml

        click.echo(yaml.safe_dump_all(docs, sort_keys=False, default_flow_style=False), nl=False)


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
@click.option("--db", "db", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="Demo database (recreated).  [default: DIR/repoaudit-demo.duckdb]")
@click.option("--no-progress", is_flag=True, help="No progress bars.")
@fail_cleanly
def demo(directory, db, no_progress):
    """Generate the synthetic demo estate, collect its history and print the headline answers."""
    from .demo import run_demo

    run_demo(directory, db, progress=not no_progress, echo=click.echo)


# --- scan and workload commands (issue 4) ---


@main.group()
def ingest():
    """Load scan reports (Trivy, Grype, CycloneDX) and Kubernetes pod listings into the database."""


def _scan_ingest_command(kind: str, produced_by: str) -> None:
    @ingest.command(kind, help=f"Ingest {produced_by} reports: files, or directories searched for *.json. "
                               "All files or none: a bad file fails the whole ingest.")
    @click.argument("paths", nargs=-1, required=True, metavar="FILE|DIR...", type=click.Path(path_type=Path))
    @db_option
    @fail_cleanly
    def command(paths, db):
        with Audit(db) as audit:
            result = audit.ingest(kind, paths)
        click.echo(result.summary())


for _kind, _produced_by in (("trivy", "'trivy image -f json'"), ("grype", "'grype -o json'"),
                            ("cyclonedx", "CycloneDX 1.4-1.7 JSON (with vulnerabilities)")):
    _scan_ingest_command(_kind, _produced_by)


@ingest.command("pods")
@click.argument("paths", nargs=-1, required=True, metavar="FILE|DIR...", type=click.Path(path_type=Path))
@click.option("--cluster", default="default", show_default=True,
              help="Cluster name; the newest ingest of a cluster is what runs there now.")
@db_option
@fail_cleanly
def ingest_pods(paths, cluster, db):
    """Ingest 'kubectl get pods -A -o json|yaml' output (PodList, List or Pod); several files form one snapshot."""
    with Audit(db) as audit:
        result = audit.ingest("pods", paths, cluster=cluster)
    click.echo(result.summary())



# --- retention commands (issue 5) ---


@main.group()
def retention():
    """Retention what-if with exact reclaimable bytes, and applying a plan."""


def _as_of(value: str | None):
    if not value:
        return None
    from datetime import datetime

    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"--as-of wants an ISO date or time (2026-01-31, 2026-01-31T12:00), got {value!r}") from None


def _csv_ready(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    for col in out.columns:
        if out[col].map(lambda v: isinstance(v, (list, tuple)) or hasattr(v, "tolist")).any():
            out[col] = out[col].map(lambda v: " ".join(map(str, list(v))) if v is not None else "")
    return out


@retention.command("plan")
@click.option("--policy", "policies", multiple=True, required=True, metavar="FILE",
              type=click.Path(dir_okay=False, path_type=Path),
              help="Native YAML, Harbor, ECR or Artifact Registry JSON policy (repeatable: side by side).")
@db_option
@click.option("--registry", help="Only this registry (default: every registry's latest snapshot).")
@click.option("--repo", "include", multiple=True, metavar="GLOB", help="Only candidates in repositories matching GLOB.")
@click.option("--as-of", "as_of", metavar="TIME", help="Measure ages at TIME (UTC) instead of the snapshot time.")
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True,
              help="table: the what-if side by side; json: the plan; csv: one row per candidate.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the plan JSON (what 'retention apply' reads) to FILE.")
@fail_cleanly
def retention_plan(policies, db, registry, include, as_of, fmt, output):
    """What each policy would delete, and the bytes garbage collection would then free."""
    from .retention import whatif_table

    with Audit(db, read_only=True) as audit:
        plan = audit.retention(*policies, registry=registry, include=include, as_of=_as_of(as_of), blobs=False,
                               detail=bool(output) or fmt != "table")
    if output:
        plan.write_json(output)
    if fmt == "json":
        click.echo(json.dumps(plan.to_document(), indent=2))
    elif fmt == "csv":
        click.echo(_csv_ready(plan.candidates).to_csv(index=False), nl=False)
    else:
        for snap in plan.snapshots.itertuples():
            click.echo(f"{snap.registry}: snapshot {snap.snapshot_id} of {snap.started_at:%Y-%m-%d %H:%M} UTC"
                       + (f", ages as of {plan.as_of:%Y-%m-%d %H:%M}" if plan.as_of else ""))
        click.echo("")
        click.echo(whatif_table(plan), nl=False)
        pushed = plan.summary[["pushed_from_first_seen", "pushed_from_created"]].sum()
        click.echo(f"\npush time of candidates: first snapshot that saw them for {int(pushed.iloc[0])}, "
                   f"config created for {int(pushed.iloc[1])} (already there at the first look at their repository)")
        for warning in plan.warnings:
            click.echo(f"warning: {warning}", err=True)
    if output:
        click.echo(f"plan written to {output} (apply: repoaudit retention apply {output} --yes)", err=True)


@retention.command("apply")
@click.argument("plan_file", type=click.Path(dir_okay=False, path_type=Path))
@db_option
@click.option("--policy", help="The policy to apply, when the plan holds several.")
@click.option("--yes", is_flag=True, help="Delete for real; without it, a dry run that deletes nothing.")
@click.option("--username", "-u", help="Registry user name.")
@click.option("--password-stdin", is_flag=True, help="Read the password (or token) from standard input.")
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
@fail_cleanly
def retention_apply(plan_file, db, policy, yes, username, password_stdin, fmt):
    """Delete a plan's images by digest, skipping any whose tags changed or that are deployed now."""
    password = None
    if password_stdin:
        if not username:
            raise ConfigError("--password-stdin needs --username")
        password = sys.stdin.readline().rstrip("\r\n")
    with Audit(db, read_only=not yes) as audit:
        result = audit.retention_apply(plan_file, policy=policy, yes=yes, username=username, password=password)
    frame = result.outcomes
    if fmt != "table":
        print_frame(frame if fmt == "json" else _csv_ready(frame), fmt)
    else:
        shown = frame.assign(tags=frame["tags"].map(lambda v: ", ".join(v)),
                             live_tags=frame["live_tags"].map(lambda v: ", ".join(v)))
        print_frame(shown[["repository", "digest", "role", "tags", "outcome", "reason"]], "table")
    counts = ", ".join(f"{n} {outcome}" for outcome, n in sorted(result.counts().items())) or "nothing to do"
    mode = "dry run (nothing deleted; add --yes to delete)" if result.dry_run else "applied"
    click.echo(f"{result.policy}: {mode}: {counts}", err=True)
    if result.failed:
        raise click.ClickException(f"{result.failed} deletion(s) failed; see the deletions table")


# --- history, sharding and merge commands (issue 7) ---


@main.command()
@click.argument("reference", metavar="REPO[:TAG]")
@db_option
@click.option("--registry", help="Only this registry.")
@click.option("--limit", default=1000, show_default=True, type=click.IntRange(1), help="At most this many rows.")
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
@fail_cleanly
def history(reference, db, registry, limit, fmt):
    """A repository's or tag's history across snapshots: digests, when seen, moves and rollbacks."""
    with Audit(db, read_only=True) as audit:
        print_frame(audit.history(reference, registry=registry, limit=limit), fmt)


@main.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Database to merge into (created if missing).")
@click.option("--max-spread-hours", default=24.0, show_default=True, type=click.FloatRange(min=0),
              help="Refuse shards of one registry that started further apart than this.")
@fail_cleanly
def merge(inputs, output, max_spread_hours):
    """Combine shard databases (collect --shard I/N) into one snapshot per registry."""
    from datetime import timedelta

    from .merge import merge as merge_databases

    for r in merge_databases(list(inputs), output, max_spread=timedelta(hours=max_spread_hours)):
        missing = f", missing shards {' '.join(r.missing_shards)}" if r.missing_shards else ""
        click.echo(f"snapshot {r.snapshot_id} of {r.registry}: {r.status}, merged from {r.shards} databases\n"
                   f"  repositories {r.repositories}, tags {r.tags}, manifests {r.manifests} "
                   f"({r.new_manifests} new), errors {r.errors}{missing}")


# --- report and export commands (issue 6) ---


@main.command()
@db_option
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="File to write (default report.html or report.md).")
@click.option("--format", "fmt", type=click.Choice(["html", "md"]), default="html", show_default=True)
@click.option("--since", metavar="SNAPSHOT|DURATION",
              help="Compare with this snapshot id or look-back (7d, 24h, 2w); default: the previous snapshot.")
@click.option("--policy", "policies", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Retention policy for the what-if section (native YAML, Harbor, ECR or GAR JSON; repeatable).")
@fail_cleanly
def report(db, output, fmt, since, policies):
    """Write the audit report: a self-contained HTML page, or Markdown for chat and e-mail."""
    from .report import write_report

    with Audit(db, read_only=True) as audit:
        path = write_report(audit, output or f"report.{fmt}", fmt=fmt, since=since, policies=list(policies))
    click.echo(f"report written to {path}")


if __name__ == "__main__":
    main()
