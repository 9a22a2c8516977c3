"""The ``repoaudit`` command: parses options, calls the library, prints results.

No logic lives here that a notebook could not reach through :mod:`repoaudit.audit`.
Whatever goes wrong is one line on stderr, and the exit code says which kind:

====  ===================================================================================
0     done
1     an error repoaudit reports (``Error: …``): bad input, a registry, the database
2     a usage error (``Error: …``): unknown option, missing argument, invalid value
3     ``collect --fail-on partial``: a snapshot is partial (some repositories failed)
4     ``collect``: a snapshot failed (the registry unreachable, every repository failed)
70    an internal error, a bug (EX_SOFTWARE): the traceback goes to a log file under
      ``$XDG_STATE_HOME/repoaudit/`` (``~/.local/state/repoaudit/``), the line names it
75    the database stayed locked by another process past ``--lock-timeout`` (EX_TEMPFAIL: try again;
      nothing was recorded)
130   interrupted (Ctrl-C)
====  ===================================================================================

Arguments and output paths are checked before the database is opened, so a typo
never leaves a snapshot or a half-written file behind.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import re
import shutil
import sys
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import click
import pandas as pd

from repoaudit._version import __version__
from repoaudit.analysis.gc import DEFAULT_UPLOAD_AGE_HOURS, upload_purging_file
from repoaudit.audit import DEFAULT_LOCK_TIMEOUT, Audit
from repoaudit.errors import ConfigError, DatabaseLocked, RepoauditError, one_line
from repoaudit.jobs.job import parse_duration
from repoaudit.jobs.load import load_jobs as jobs_from_files
from repoaudit.model.formatting import human_bytes
from repoaudit.model.options import (
    DEFAULT_CONCURRENCY,
    DEFAULT_KEEP_BUDGET,
    DEFAULT_MAX_CONCURRENCY,
    CollectOptions,
    default_db_path,
    parse_target,
)
from repoaudit.model.output import encode, to_csv, to_json
from repoaudit.model.signatures import load_key_file

FORMATS = click.Choice(["table", "csv", "json"])

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3  # collect --fail-on partial: a snapshot is partial
EXIT_FAILED = 4  # collect: a snapshot failed
EXIT_INTERNAL = 70  # sysexits.h EX_SOFTWARE
EXIT_LOCKED = 75  # sysexits.h EX_TEMPFAIL: a scheduler's retry will do
EXIT_INTERRUPTED = 130


def fail_cleanly(fn):
    """Turn library errors into ``Error: …`` on one line, exit 1."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except DatabaseLocked as exc:
            error = click.ClickException(one_line(exc))
            error.exit_code = EXIT_LOCKED
            raise error from None
        except RepoauditError as exc:
            raise click.ClickException(one_line(exc)) from None
        except OSError as exc:
            # A file the user named that cannot be written (disk full, gone since the check): their
            # environment, not a bug. An OSError without a file name is left to the last-resort handler.
            if exc.filename is None or isinstance(exc, (ConnectionError, TimeoutError)):
                raise
            raise click.ClickException(f"{exc.filename}: {exc.strerror or one_line(exc)}") from None
        except KeyboardInterrupt:
            click.echo("repoaudit: interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)

    return wrapper


# -- the last resort ---------------------------------------------------------------------

_URL_SECRET = re.compile(r"(://[^/@\s:]*:)[^/@\s]+@")


def log_dir(env=os.environ) -> Path:
    """Where internal-error logs go: ``$XDG_STATE_HOME/repoaudit``, else ``~/.local/state/repoaudit``."""
    base = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "repoaudit"


def _write_crash_log(exc: BaseException) -> Path | None:
    import platform
    import tempfile

    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    name = f"error-{stamp}-{os.getpid()}.log"
    # Arguments can carry a proxy URL with a password; the log is meant to be attached to a report.
    argv = " ".join(_URL_SECRET.sub(r"\1***@", arg) for arg in sys.argv)
    text = (f"repoaudit {__version__}, Python {platform.python_version()} on {platform.platform()}\n"
            f"command: {argv}\n\n" + "".join(traceback.format_exception(exc)))
    for directory in (log_dir(), Path(tempfile.gettempdir())):
        try:
            directory.mkdir(parents=True, exist_ok=True)
            path = directory / name
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            return path
        except OSError:
            continue
    return None


def report_internal_error(exc: BaseException) -> int:
    """The last resort: one line naming the log that holds the traceback; returns the exit code."""
    path = _write_crash_log(exc)
    message = one_line(exc)
    if len(message) > 200:
        message = message[:197] + "..."
    where = f"with {path}" if path else "(no log file could be written)"
    click.echo(f"Error: internal error ({type(exc).__name__}: {message}); this is a bug, "
               f"please report it {where}", err=True)
    return EXIT_INTERNAL


class RepoauditGroup(click.Group):
    """click's group with repoaudit's error contract (module docstring): one line, a meaningful exit code."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
            code = 0
        except click.exceptions.NoArgsIsHelpError as exc:
            exc.show()  # bare 'repoaudit': the help, as click prints it
            code = exc.exit_code
        except click.UsageError as exc:
            hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
            click.echo(f"Error: {one_line(exc.format_message())}{hint}", err=True)
            code = EXIT_USAGE
        except click.ClickException as exc:
            click.echo(f"Error: {one_line(exc.format_message())}", err=True)
            code = exc.exit_code
        except click.exceptions.Exit as exc:
            code = exc.exit_code
        except click.Abort as exc:
            if isinstance(exc.__cause__, KeyboardInterrupt):
                click.echo("repoaudit: interrupted", err=True)
                code = EXIT_INTERRUPTED
            else:
                click.echo("Error: aborted", err=True)
                code = EXIT_ERROR
        except SystemExit:
            raise
        except Exception as exc:  # noqa: BLE001 - the point of a last resort
            code = report_internal_error(exc)
        if standalone_mode:
            sys.exit(code)
        return code


# -- -q/-v: what reaches stderr -----------------------------------------------------------


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when it writes: a process may swap it (click's runner does)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def _set_verbosity(ctx: click.Context, param: click.Parameter, value) -> None:
    root = ctx.find_root()
    if param.name == "quiet":
        root.meta["repoaudit.quiet"] = root.meta.get("repoaudit.quiet", False) or value
    else:
        root.meta["repoaudit.verbose"] = root.meta.get("repoaudit.verbose", 0) + value
    quiet, verbose = root.meta.get("repoaudit.quiet", False), root.meta.get("repoaudit.verbose", 0)
    level = logging.ERROR if quiet else (logging.WARNING, logging.INFO)[min(verbose, 1)] if verbose < 2 \
        else logging.DEBUG
    logger = logging.getLogger("repoaudit")
    logger.setLevel(level)
    if not any(getattr(h, "repoaudit_cli", False) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("repoaudit: %(message)s"))
        handler.repoaudit_cli = True
        logger.addHandler(handler)
        logger.propagate = False


def quiet() -> bool:
    """Whether -q was given: errors only on stderr, no progress, notes or warnings."""
    ctx = click.get_current_context(silent=True)
    return bool(ctx and ctx.find_root().meta.get("repoaudit.quiet"))


def note(line: str) -> None:
    """An informational line on stderr (for people and logs), silenced by -q."""
    if not quiet():
        click.echo(line, err=True)


def _with_verbosity(command: click.Command) -> None:
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            _with_verbosity(sub)
        return
    command.params += [
        click.Option(["-q", "--quiet"], is_flag=True, expose_value=False, callback=_set_verbosity,
                     help="Only errors on stderr: no progress, notes or warnings."),
        click.Option(["-v", "--verbose"], count=True, expose_value=False, callback=_set_verbosity,
                     help="More on stderr: -v what each step does, -vv each registry request."),
    ]


# -- output paths -------------------------------------------------------------------------


def is_stdout(path: Path | str | None) -> bool:
    return path is not None and str(path) == "-"


def check_output(path: Path | str | None, option: str, *, stdout: bool | str = True,
                 directory: bool = False) -> None:
    """Fail now, before any work, if ``path`` cannot be written: one line naming the option and path.

    The directory it goes in must exist (nothing is created on a typo). ``-`` is standard
    output, unless ``stdout`` is False or a hint saying what to use instead. ``directory``
    checks a directory to be (re)filled.
    """
    if path is None:
        return
    if is_stdout(path):
        if stdout is not True:
            raise ConfigError(f"{option} -: {stdout or 'this output cannot go to standard output; give a file'}")
        return
    path = Path(path)
    parent = Path(os.path.abspath(path)).parent
    if path.exists():
        if directory and not path.is_dir():
            raise ConfigError(f"{option} {path}: exists and is not a directory")
        if not directory and path.is_dir():
            raise ConfigError(f"{option} {path}: is a directory")
        if not os.access(path, os.W_OK):
            raise ConfigError(f"{option} {path}: not writable (permission denied)")
        return
    if not parent.exists():
        raise ConfigError(f"{option} {path}: directory {parent} does not exist")
    if not parent.is_dir():
        raise ConfigError(f"{option} {path}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"{option} {path}: cannot create files in {parent} (permission denied)")


def _remember_lock_timeout(ctx: click.Context, _param, value: float) -> float:
    ctx.meta["repoaudit.lock_timeout"] = value
    return value


def lock_timeout_option(fn):
    return click.option("--lock-timeout", type=click.FloatRange(min=0), default=DEFAULT_LOCK_TIMEOUT,
                        show_default=True, expose_value=False, callback=_remember_lock_timeout,
                        metavar="SECONDS", help="While another process holds the database's lock "
                        "(a notebook's writable connection, another run), wait this long for it.")(fn)


def db_option(fn):
    return lock_timeout_option(click.option(
        "--db", "db", default=default_db_path, show_default="REPOAUDIT_DB or ./repoaudit.duckdb",
        help="DuckDB database file.")(fn))


def open_audit(path, *, read_only: bool = False) -> Audit:
    """The command's database, waiting --lock-timeout for a lock another process holds (saying so once)."""
    ctx = click.get_current_context(silent=True)
    timeout = ctx.meta.get("repoaudit.lock_timeout", DEFAULT_LOCK_TIMEOUT) if ctx else DEFAULT_LOCK_TIMEOUT
    return Audit(path, read_only=read_only, lock_timeout=timeout,
                 on_wait=lambda line: note(f"repoaudit: {line}"))


def raw_option(fn):
    return click.option("--raw", is_flag=True,
                        help="Tables: exact byte counts and full digests.")(fn)


def summary_format_option(fn):
    return click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
                        help="json: what the command did as one JSON document, for scripts.")(fn)


def print_results(results: list, fmt: str, text: Callable[[Any], str]) -> None:
    """What a command did: ``text`` of each result for people, or one JSON array of them for scripts."""
    if fmt == "json":
        click.echo(to_json([{**dataclasses.asdict(r), **_derived(r)} for r in results]), nl=False)
    else:
        for r in results:
            click.echo(text(r))


def _derived(result: Any) -> dict[str, Any]:
    # The properties a summary line reads (unmatched, unchanged) belong in the document too.
    return {name: getattr(result, name) for name, attr in vars(type(result)).items() if isinstance(attr, property)}


def print_frame(frame: pd.DataFrame, fmt: str, output: Path | None = None, *, raw: bool = False) -> None:
    """Rows as a table, CSV or JSON under the output contract (:mod:`repoaudit.model.output`)."""
    to_terminal = not (output and not is_stdout(output)) and sys.stdout.isatty()
    text = encode(frame, fmt, raw=raw, width=shutil.get_terminal_size().columns if to_terminal else None)
    if output and not is_stdout(output):
        output.write_text(text)
    else:
        click.echo(text, nl=False)


@click.group(cls=RepoauditGroup, context_settings={"help_option_names": ["-h", "--help"]})
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
              help="Requests in flight to start with (the limit then adapts: docs/collecting.md).")
@click.option("--max-concurrency", default=DEFAULT_MAX_CONCURRENCY, show_default=True, type=click.IntRange(1, 256),
              help="The most requests in flight the adaptive limit may grow to while latency stays flat "
                   "(never below --concurrency; equal to it: no growth).")
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
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="json: one summary object per snapshot, for scripts.")
@click.option("--fail-on", "fail_on", type=click.Choice(["partial", "failed"]), default="failed", show_default=True,
              help=f"Exit non-zero from this status on: a failed snapshot exits {EXIT_FAILED}, "
                   f"a partial one {EXIT_PARTIAL} with --fail-on partial (else 0).")
@click.option("--metrics-file", type=click.Path(dir_okay=False, path_type=Path), metavar="PATH",
              help="Write Prometheus text-format metrics (node-exporter textfile collector) to PATH, atomically.")
@click.option("--no-posture", is_flag=True, help="Skip the anonymous access and TLS probes (docs/posture.md).")
@click.option("--probe-push", is_flag=True, help="Also try an anonymous blob upload (cancelled at once).")
@click.option("--verify-key", "verify_keys", multiple=True, type=click.Path(dir_okay=False), metavar="PEM",
              help="cosign public key to verify image signatures against, offline (repeatable).")
@click.option("--keep-budget", default=DEFAULT_KEEP_BUDGET, show_default=True, type=click.IntRange(0), metavar="N",
              help="Stop fetching before the registry's rate-limit budget (ratelimit-remaining) falls below N: "
                   "a partial snapshot naming the repositories not reached.")
@fail_cleanly
def collect(url, db, files, include, exclude, repositories, exclude_tags, concurrency, max_concurrency, username,
            password_stdin,
            ca_file, cert_file, key_file, insecure, timeout, proxy, full, name, no_progress, shard, fmt, fail_on,
            metrics_file, no_posture, probe_push, verify_keys, keep_budget):
    """Snapshot a registry (https://host, http://host:port), OCI layouts (oci:PATH) or -f FILE into the database."""
    if bool(url) == bool(files):
        raise ConfigError("give a registry URL or -f FILE, not both and not neither")
    if bool(cert_file) != bool(key_file):
        raise ConfigError("--cert and --key go together")
    check_output(metrics_file, "--metrics-file", stdout="the textfile collector reads a file; give a path")
    password = read_password(username, password_stdin)
    trusted = tuple(load_key_file(k) for k in verify_keys)  # a bad key file fails before the database opens
    # Everything that can be wrong with the arguments is found before the database is
    # opened: a bad regex or shard must not leave a 'failed' snapshot behind.
    if files:
        jobs = load_jobs(files)
        registries = list(dict.fromkeys(job.registry for job in jobs))
    else:
        registries = [parse_target(url, name).name]
        CollectOptions(include=include, exclude=exclude, repositories=repositories, exclude_tags=exclude_tags,
                       shard=shard)
    error: RepoauditError | None = None
    with open_audit(db) as audit:
        before = {r: getattr(audit.latest_result(r), "snapshot_id", -1) for r in registries}
        try:
            if files:
                results = collect_jobs(audit, jobs, concurrency=concurrency, max_concurrency=max_concurrency,
                                       full=full,
                                       progress=not (no_progress or quiet()), posture=not no_posture,
                                       probe_push=probe_push, verify_keys=trusted, keep_budget=keep_budget)
            else:
                results = [audit.collect(url, username=username, password=password, concurrency=concurrency,
                                         max_concurrency=max_concurrency,
                                         include=include, exclude=exclude, repositories=repositories,
                                         exclude_tags=exclude_tags, full=full, name=name, progress=not (no_progress or quiet()),
                                         shard=shard, ca_file=ca_file,
                                         cert=(cert_file, key_file) if cert_file else None,
                                         insecure=insecure, timeout=timeout, proxy=proxy,
                                         posture=not no_posture, probe_push=probe_push, verify_keys=trusted,
                                         keep_budget=keep_budget)]
        except DatabaseLocked:
            raise  # nothing was recorded, and reading what was would wait for the lock again
        except RepoauditError as exc:
            # A run that fails outright still leaves its snapshots (failed, and any registry done before it).
            error = exc
            results = [r for r in (audit.latest_result(reg, after=before[reg]) for reg in registries) if r]
            if not any(r.status == "failed" for r in results):
                raise
        summaries = [collect_summary(result, audit.query("snapshots", limit=1, registry=result.registry).iloc[0])
                     for result in results]
        if metrics_file:
            audit.write_collect_metrics(metrics_file, results)
    if fmt == "json":
        click.echo(to_json(summaries), nl=False)
    for result, summary in zip(results, summaries):
        if fmt != "json":
            click.echo(f"snapshot {result.snapshot_id} of {result.registry}: {result.status} ({result.mode})\n"
                       f"  repositories {result.repositories}, tags {result.tags}, manifests {result.manifests} "
                       f"({result.new_manifests} new), unique bytes {human_bytes(summary['unique_bytes'])}, "
                       f"errors {result.errors}, {result.seconds:.1f}s")
        if result.not_reached and fmt != "json":
            shown = ", ".join(result.not_reached[:NOT_REACHED_SHOWN])
            more = len(result.not_reached) - NOT_REACHED_SHOWN
            note(f"  not reached (rate-limit budget, --keep-budget): {shown}"
                 + (f" and {more} more: repoaudit sql \"SELECT repository FROM collection_errors WHERE "
                    f"snapshot_id = {result.snapshot_id} AND error_type = 'BudgetExhausted'\"" if more > 0 else ""))
        if result.errors and result.status != "failed":
            note(f"  {result.errors} error(s) recorded: repoaudit sql \"SELECT * FROM collection_errors "
                 f"WHERE snapshot_id = {result.snapshot_id}\"")
    if error is not None:
        raise SnapshotStatusError(one_line(error), EXIT_FAILED)
    failed = [r for r in results if r.status == "failed"]
    if failed:
        raise SnapshotStatusError("; ".join(f"snapshot {r.snapshot_id} of {r.registry} failed: {r.error}"
                                            for r in failed), EXIT_FAILED)
    partial = [r for r in results if r.status == "partial"]
    if partial and fail_on == "partial":
        raise SnapshotStatusError("; ".join(f"snapshot {r.snapshot_id} of {r.registry} is partial "
                                            f"({r.errors} error(s))" for r in partial), EXIT_PARTIAL)


NOT_REACHED_SHOWN = 20  # the rest are in the snapshot's repositories and collection_errors


class SnapshotStatusError(click.ClickException):
    """A collect whose worst snapshot status fails the run: one line, and the exit code saying which status."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


def collect_summary(result, snapshot) -> dict:
    """What ``collect --format json`` prints for one snapshot."""
    return {"snapshot_id": int(result.snapshot_id), "registry": result.registry, "status": result.status,
            "mode": result.mode, "repositories": int(result.repositories), "tags": int(result.tags),
            "manifests": int(result.manifests), "new_manifests": int(result.new_manifests),
            "unique_bytes": int(snapshot["unique_bytes"] or 0), "errors": int(result.errors),
            "requests": int(sum(result.requests.values())), "seconds": round(float(result.seconds), 3),
            "error": result.error, "not_reached": list(result.not_reached)}


def load_jobs(files) -> list:
    """The collect jobs of Flux ImageRepository objects or repoaudit config files, their notes on stderr."""
    jobs = jobs_from_files(files)
    for job in jobs:
        for line in job.notes:
            note(f"note: {job.name}: {line}")
    return jobs


def collect_jobs(audit: Audit, jobs: list, **kw) -> list:
    """Collect loaded jobs and say what was skipped."""
    results, skipped = audit.collect_jobs(jobs, **kw)
    for job, reason in skipped:
        note(f"skipped {job.name}: {reason}")
    return results


def read_password(username: str | None, password_stdin: bool) -> str | None:
    """The password ``--password-stdin`` reads from standard input (never a command-line argument)."""
    if not password_stdin:
        return None
    if not username:
        raise ConfigError("--password-stdin needs --username")
    return sys.stdin.readline().rstrip("\r\n")


@main.command()
@db_option
@click.option("--registry", help="Only this registry.")
@click.option("--format", "fmt", type=click.Choice(["yaml", "json", "table", "csv"]), default="yaml",
              show_default=True, help="yaml/json: Flux ImageRepository objects; table/csv: one row per repository.")
@raw_option
@fail_cleanly
def status(db, registry, fmt, raw):
    """Flux-style status of each repository in the latest snapshot (compare with kubectl get imagerepository)."""
    with open_audit(db, read_only=True) as audit:
        frame = audit.query("repository_status", registry=registry)
        if fmt in ("table", "csv"):
            print_frame(frame, fmt, raw=raw)
            return
        docs = audit.flux_status(registry=registry)
    if fmt == "json":
        click.echo(to_json(docs), nl=False)
    else:
        import yaml

        from repoaudit.model.output import plain

        click.echo(yaml.safe_dump_all(plain(docs), sort_keys=False, default_flow_style=False), nl=False)


@main.command()
@click.argument("statement")
@db_option
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
@raw_option
@fail_cleanly
def sql(statement, db, fmt, raw):
    """Run SQL against the database (read-only)."""
    with open_audit(db, read_only=True) as audit:
        print_frame(audit.sql(statement), fmt, raw=raw)


@main.command()
@db_option
@click.option("--registry", help="Only this registry.")
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
@raw_option
@fail_cleanly
def snapshots(db, registry, fmt, raw):
    """List collection runs, newest first."""
    with open_audit(db, read_only=True) as audit:
        print_frame(audit.query("snapshots", registry=registry), fmt, raw=raw)


def parse_params(pairs: tuple[str, ...]) -> dict[str, str]:
    params = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--param wants key=value, got {pair!r}")
        params[key.strip()] = value
    return params


def engine_options(f):
    """--engine, --parquet and --spark-master: a named query on Spark over the Parquet lake (issue 21)."""
    f = click.option("--spark-master", default=None, metavar="URL",
                     help="Spark master for --engine spark  [default: local[2]].")(f)
    f = click.option("--parquet", "lake", type=click.Path(file_okay=False, path_type=Path), default=None,
                     help="The lake (export --parquet DIR) --engine spark reads.")(f)
    return click.option("--engine", type=click.Choice(["duckdb", "spark"]), default="duckdb", show_default=True,
                        help="Run on the database (duckdb) or on Spark over the Parquet lake.")(f)


def spark_lake(engine, lake, spark_master):
    """The Spark session over the lake, or None for DuckDB; the options must go together."""
    if engine != "spark":
        if lake or spark_master:
            raise ConfigError("--parquet and --spark-master go with --engine spark")
        return None
    if not lake:
        raise ConfigError("--engine spark needs --parquet DIR (a lake written by 'repoaudit export --parquet')")
    from repoaudit.fleet.spark import SparkLake

    return SparkLake(lake, master=spark_master)


@main.command()
@click.argument("name")
@db_option
@click.option("--param", "-p", "params", multiple=True, metavar="KEY=VALUE", help="Query parameter (repeatable).")
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write to a file ('-': standard output).")
@raw_option
@engine_options
@fail_cleanly
def query(name, db, params, fmt, output, raw, engine, lake, spark_master):
    """Run a named query from queries/ (see 'repoaudit queries'), on the database or on Spark."""
    check_output(output, "-o")
    params = parse_params(params)
    spark = spark_lake(engine, lake, spark_master)
    if spark is not None:
        print_frame(spark.query(name, **params), fmt, output, raw=raw)
        return
    with open_audit(db, read_only=True) as audit:
        print_frame(audit.query(name, **params), fmt, output, raw=raw)


@main.command("queries")
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
@engine_options
@fail_cleanly
def list_queries(fmt, engine, lake, spark_master):
    """List the named queries, their descriptions and parameters (--engine spark: which run on Spark, and why not)."""
    spark = spark_lake(engine, lake, spark_master)
    if spark is not None:
        print_frame(spark.support(), fmt)
        return
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
              help="Write NAME (a table, view or named query) to this CSV file ('-': standard output).")
@click.option("--parquet", "parquet_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write every table as Hive-partitioned Parquet under this directory.")
@click.option("--overwrite", is_flag=True, help="Replace a non-empty --parquet directory.")
@click.option("--append", is_flag=True, help="Add the snapshots a --parquet lake lacks, leaving its old partitions.")
@click.option("--param", "-p", "params", multiple=True, metavar="KEY=VALUE", help="Named-query parameter.")
@fail_cleanly
def export(name, db, csv_path, parquet_dir, overwrite, append, params):
    """Export NAME to CSV (--csv FILE), or every table to partitioned Parquet (--parquet DIR)."""
    if bool(csv_path) == bool(parquet_dir):
        raise ConfigError("give exactly one of --csv FILE (with NAME) or --parquet DIR")
    if csv_path and not name:
        raise ConfigError("--csv needs the NAME of a table, view or named query")
    if parquet_dir and (name or params):
        raise ConfigError("--parquet exports every table; it takes no NAME or --param")
    if (overwrite or append) and not parquet_dir:
        raise ConfigError("--overwrite and --append go with --parquet DIR")
    check_output(csv_path, "--csv")
    check_output(parquet_dir, "--parquet", stdout=False, directory=True)
    params = parse_params(params)
    with open_audit(db, read_only=True) as audit:
        if is_stdout(csv_path):
            print_frame(audit.export_frame(name, **params), "csv")
            return
        if csv_path:
            count = audit.export_csv(name, csv_path, **params)
            click.echo(f"{count} rows written to {csv_path}")
            return
        counts = audit.export_parquet(parquet_dir, overwrite=overwrite, append=append)
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
    from repoaudit.demo.runner import run_demo

    run_demo(directory, db, progress=not (no_progress or quiet()), echo=click.echo)


# --- scan and workload commands (issue 4) ---


@main.group()
def ingest():
    """Load scan reports (Trivy, Grype, CycloneDX) and Kubernetes pod listings into the database."""


def _scan_ingest_command(kind: str, produced_by: str) -> None:
    @ingest.command(kind, help=f"Ingest {produced_by} reports: files, or directories searched for *.json. "
                               "All files or none: a bad file fails the whole ingest.")
    @click.argument("paths", nargs=-1, required=True, metavar="FILE|DIR...", type=click.Path(path_type=Path))
    @db_option
    @summary_format_option
    @fail_cleanly
    def command(paths, db, fmt):
        with open_audit(db) as audit:
            result = audit.ingest(kind, paths)
        print_results([result], fmt, lambda r: r.summary())


for _kind, _produced_by in (("trivy", "'trivy image -f json'"), ("grype", "'grype -o json'"),
                            ("cyclonedx", "CycloneDX 1.4-1.7 JSON (with vulnerabilities)")):
    _scan_ingest_command(_kind, _produced_by)


@ingest.command("pods")
@click.argument("paths", nargs=-1, required=True, metavar="FILE|DIR...", type=click.Path(path_type=Path))
@click.option("--cluster", default="default", show_default=True,
              help="Cluster name; the newest ingest of a cluster is what runs there now.")
@click.option("--allow-empty", is_flag=True,
              help="Store a listing with no containers even though the cluster last ran some "
                   "(refused by default: it would lift retention's protection of running images).")
@db_option
@summary_format_option
@fail_cleanly
def ingest_pods(paths, cluster, allow_empty, db, fmt):
    """Ingest 'kubectl get pods -A -o json|yaml' output (PodList, List or Pod); several files form one snapshot."""
    with open_audit(db) as audit:
        result = audit.ingest("pods", paths, cluster=cluster, allow_empty=allow_empty)
    print_results([result], fmt, lambda r: r.summary())


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
@click.option("--sign", "sign_key", metavar="KEY", type=click.Path(dir_okay=False, path_type=Path),
              help="Sign the plan with KEY: an Ed25519 private key (PEM) or an HMAC secret file.")
@click.option("--metrics-file", type=click.Path(dir_okay=False, path_type=Path), metavar="PATH",
              help="Write Prometheus text-format metrics (reclaimable bytes per policy) to PATH, atomically.")
@engine_options
@fail_cleanly
def retention_plan(policies, db, registry, include, as_of, fmt, output, sign_key, metrics_file, engine, lake,
                   spark_master):
    """What each policy would delete, and the bytes garbage collection would then free."""
    from repoaudit.retention.whatif import whatif_table

    if sign_key and not output and fmt != "json":
        raise ConfigError("--sign signs the plan JSON: add -o FILE or --format json")
    check_output(output, "-o", stdout="the plan goes to standard output with --format json")
    check_output(metrics_file, "--metrics-file", stdout="the textfile collector reads a file; give a path")
    as_of = _as_of(as_of)
    spark = spark_lake(engine, lake, spark_master)
    if spark is not None:
        from repoaudit.fleet.spark_retention import plan_retention_on_spark

        plan = plan_retention_on_spark(spark, policies, registry=registry, include=include, as_of=as_of,
                                       blobs=False, detail=bool(output) or fmt != "table")
    else:
        with open_audit(db, read_only=True) as audit:
            plan = audit.retention(*policies, registry=registry, include=include, as_of=as_of, blobs=False,
                                   detail=bool(output) or fmt != "table")
    if output:
        plan.write_json(output, sign=sign_key)
    if metrics_file:
        Audit.write_retention_metrics(metrics_file, plan)
    if fmt == "json":
        click.echo(to_json(plan.to_document(sign=sign_key)), nl=False)
    elif fmt == "csv":
        click.echo(to_csv(plan.candidates), nl=False)
    else:
        for snap in plan.snapshots.itertuples():
            click.echo(f"{snap.registry}: snapshot {snap.snapshot_id} of {snap.started_at:%Y-%m-%d %H:%M} UTC"
                       + (f", ages as of {plan.as_of:%Y-%m-%d %H:%M}" if plan.as_of else ""))
        click.echo("")
        click.echo(whatif_table(plan), nl=False)
        pushed = plan.summary[["pushed_from_first_seen", "pushed_from_created", "pushed_from_tag"]].sum()
        click.echo(f"\npush time of candidates: first snapshot that saw them for {int(pushed.iloc[0])}, "
                   f"config created for {int(pushed.iloc[1])} (already there at the first look at their repository)"
                   + (f", a tag's first sighting for {int(pushed.iloc[2])}" if pushed.iloc[2] else ""))
        for warning in plan.warnings:
            note(f"warning: {warning}")
    if output:
        note(f"plan written to {output} (apply: repoaudit retention apply {output} --yes)")


@retention.command("apply")
@click.argument("plan_file", type=click.Path(dir_okay=False, path_type=Path))
@db_option
@click.option("--policy", help="The policy to apply, when the plan holds several.")
@click.option("--yes", is_flag=True, help="Delete for real; without it, a dry run that deletes nothing.")
@click.option("--username", "-u", help="Registry user name.")
@click.option("--password-stdin", is_flag=True, help="Read the password (or token) from standard input.")
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
@click.option("--registry-url", "registry_urls", multiple=True, metavar="[NAME=]URL",
              help="Apply at URL instead of where the plan's snapshot was collected (its catalog must hold the "
                   "planned repositories); NAME= when the plan spans several registries.")
@click.option("--verify-key", type=click.Path(dir_okay=False, path_type=Path), envvar="REPOAUDIT_PLAN_VERIFY_KEY",
              help="Refuse a plan not signed with this key (Ed25519 public key PEM, or the HMAC secret file).")
@fail_cleanly
def retention_apply(plan_file, db, policy, yes, username, password_stdin, fmt, registry_urls, verify_key):
    """Verify a plan against the database, then delete its images by digest, skipping any whose tags changed
    or that are deployed now."""
    from repoaudit.retention.apply import parse_registry_urls

    password = read_password(username, password_stdin)
    urls = parse_registry_urls(registry_urls)
    with open_audit(db, read_only=not yes) as audit:
        result = audit.retention_apply(plan_file, policy=policy, yes=yes, username=username, password=password,
                                       registry_urls=urls, verify_key=verify_key)
    frame = result.outcomes
    if fmt != "table":
        print_frame(frame, fmt)
    else:
        print_frame(frame[["repository", "digest", "role", "tags", "outcome", "reason"]], "table")
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
@raw_option
@fail_cleanly
def history(reference, db, registry, limit, fmt, raw):
    """A repository's or tag's history across snapshots: digests, when seen, moves and rollbacks."""
    with open_audit(db, read_only=True) as audit:
        print_frame(audit.history(reference, registry=registry, limit=limit), fmt, raw=raw)


@main.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Database to merge into (created if missing).")
@click.option("--max-spread-hours", default=24.0, show_default=True, type=click.FloatRange(min=0),
              help="Refuse shards of one registry that started further apart than this.")
@lock_timeout_option
@summary_format_option
@fail_cleanly
def merge(inputs, output, max_spread_hours, fmt):
    """Combine shard databases (collect --shard I/N) into one snapshot per registry."""
    from datetime import timedelta

    check_output(output, "-o", stdout="a database cannot be standard output; give a file")
    with open_audit(output) as audit:
        results = audit.merge(list(inputs), max_spread=timedelta(hours=max_spread_hours))
    def text(r) -> str:
        missing = f", missing shards {' '.join(r.missing_shards)}" if r.missing_shards else ""
        return (f"snapshot {r.snapshot_id} of {r.registry}: {r.status}, merged from {r.shards} databases\n"
                f"  repositories {r.repositories}, tags {r.tags}, manifests {r.manifests} "
                f"({r.new_manifests} new), errors {r.errors}{missing}")

    print_results(results, fmt, text)


# --- report and export commands (issue 6) ---


@main.command()
@db_option
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="File to write (default report.html or report.md; '-': standard output).")
@click.option("--format", "fmt", type=click.Choice(["html", "md"]), default="html", show_default=True)
@click.option("--since", metavar="SNAPSHOT|DURATION",
              help="Compare with this snapshot id or look-back (7d, 24h, 2w); default: the previous snapshot.")
@click.option("--policy", "policies", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Retention policy for the what-if section (native YAML, Harbor, ECR or GAR JSON; repeatable).")
@fail_cleanly
def report(db, output, fmt, since, policies):
    """Write the audit report: a self-contained HTML page, or Markdown for chat and e-mail."""
    output = output or Path(f"report.{fmt}")
    check_output(output, "-o")
    with open_audit(db, read_only=True) as audit:
        if is_stdout(output):
            click.echo(audit.report(fmt=fmt, since=since, policies=list(policies)), nl=False)
            return
        path = audit.write_report(output, fmt=fmt, since=since, policies=list(policies))
    click.echo(f"report written to {path}")


# --- registry events (issue 18) ---


@ingest.command("events")
@click.argument("paths", nargs=-1, required=True, metavar="SPOOL|LOG...", type=click.Path(path_type=Path))
@click.option("--registry", default=None, help="Registry these events belong to, as collected "
              "(default: the host each event's URL names).")
@click.option("--rules", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Client classification rules (YAML); see docs/events.md.")
@click.option("--reclassify", is_flag=True, help="Apply the rules to every stored event as well.")
@db_option
@summary_format_option
@fail_cleanly
def ingest_events_command(paths, registry, rules, reclassify, db, fmt):
    """Ingest 'repoaudit events serve' spool files (or directories of them) and Distribution JSON log files."""
    with open_audit(db) as audit:
        result = audit.ingest_events(paths, registry=registry, rules=rules, reclassify=reclassify)
    print_results([result], fmt, lambda r: r.summary())


@main.group()
def events():
    """Receive registry notifications and Harbor webhooks into a spool for 'repoaudit ingest events'."""


@events.command("serve")
@click.option("--spool", "spool_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory for the spool files.")
@click.option("--host", default="0.0.0.0", show_default=True)
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.option("--token-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="File holding the bearer token callers must send (or REPOAUDIT_EVENTS_TOKEN).")
@click.option("--basic-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="File holding user:password for basic auth (or REPOAUDIT_EVENTS_BASIC).")
@click.option("--max-body", default="1MiB", show_default=True, help="Largest body accepted (413 above).")
@click.option("--rotate-size", default="64MiB", show_default=True, help="Close a spool file past this size.")
@click.option("--rotate-age", default="1h", show_default=True, help="Close a spool file this old (s, m, h, d).")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))
@fail_cleanly
def events_serve(spool_dir, host, port, token_file, basic_file, max_body, rotate_size, rotate_age, log_level):
    """Serve the receiver: POST envelopes in, fsynced spool lines out, 200 only once they are on disk."""
    import os

    from repoaudit.events.server import ReceiverConfig, parse_size, serve
    from repoaudit.retention.policy import parse_duration

    def secret(path, env):
        if path is not None:
            value = path.read_text().strip()
            if not value:
                raise ConfigError(f"{path}: empty")
            return value
        return os.environ.get(env) or None

    try:
        age = parse_duration(rotate_age, bare_unit="s")
    except ValueError as exc:
        raise ConfigError(f"--rotate-age: {exc}") from None
    config = ReceiverConfig(token=secret(token_file, "REPOAUDIT_EVENTS_TOKEN"),
                            basic=secret(basic_file, "REPOAUDIT_EVENTS_BASIC"),
                            max_body=parse_size(max_body, "--max-body"), rotate_bytes=parse_size(rotate_size,
                                                                                                  "--rotate-size"),
                            rotate_seconds=age)
    serve(str(spool_dir), config, host=host, port=port, log_level=log_level)


# -- gc preview (issue 19) ---------------------------------------------------------
@main.group()
def gc():
    """Garbage collection of a registry's own storage (collect registry-storage:PATH first)."""


@gc.command("preview")
@db_option
@click.option("--registry", help="The registry (its --name); needed when several have storage snapshots.")
@click.option("--snapshot", type=int, help="This storage snapshot instead of the registry's latest.")
@click.option("--upload-age", metavar="DURATION",
              help="The registry's storage.maintenance.uploadpurging.age (a Go duration: 168h, 30m); "
                   "default: from --registry-config, else 168h.")
@click.option("--registry-config", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The registry's config.yml, for its upload purging settings.")
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True,
              help="table/csv: per repository and total; json: also every blob either mode frees.")
@raw_option
@fail_cleanly
def gc_preview(db, registry, snapshot, upload_age, registry_config, fmt, raw):
    """Bytes `docker-registry garbage-collect` would free, with and without --delete-untagged."""
    purging, age_hours = True, DEFAULT_UPLOAD_AGE_HOURS
    if registry_config:
        purging, age_hours = upload_purging_file(registry_config)
    if upload_age:
        try:
            age_hours = parse_duration(upload_age) / 3600
        except ValueError as exc:
            raise ConfigError(f"--upload-age: {exc}") from None
    with open_audit(db, read_only=True) as audit:
        preview = audit.gc_preview(registry, snapshot=snapshot, upload_age_hours=age_hours)
    if not purging:
        preview.warnings.append("upload purging is disabled in the registry config: abandoned uploads stay "
                                "until removed by hand")
    for warning in preview.warnings:
        note(f"warning: {warning}")
    if fmt == "json":
        click.echo(json.dumps(preview.to_json(), indent=2))
        return
    frame = preview.repositories.drop(columns=["registry"])
    frame["repository"] = frame["repository"].fillna("(total)")
    print_frame(frame, fmt, raw=raw)


# --- registry posture (issue 20) ---


@main.command()
@db_option
@click.option("--registry", help="Only this registry.")
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
@raw_option
@fail_cleanly
def posture(db, registry, fmt, raw):
    """Each registry's access posture: anonymous read/catalog/push, plain HTTP, certificate, weak TLS, changes."""
    with open_audit(db, read_only=True) as audit:
        print_frame(audit.posture(registry), fmt, raw=raw)


# --- fleet: sharded collection as Kubernetes Indexed Jobs (issue 21) ---


@main.group()
def deploy():
    """Render deployment manifests (Kubernetes) for running repoaudit beyond one machine."""


@deploy.command("render")
@click.argument("url")
@click.option("--shards", required=True, type=int, help="Collect in this many shards, one pod each.")
@click.option("--run", "run", default=None, help="Run id in the Job names and shard markers  [default: today, UTC].")
@click.option("--image", default="registry.example.com/platform/repoaudit:0.1.0", show_default=True,
              help="The repoaudit image (built from deploy/Dockerfile).")
@click.option("--namespace", default="platform-audit", show_default=True)
@click.option("--name", default="repoaudit", show_default=True, help="Prefix of the Job names.")
@click.option("--claim", default="repoaudit-data", show_default=True,
              help="PersistentVolumeClaim shared by every pod (ReadWriteMany).")
@click.option("--data-dir", default="/data", show_default=True, help="Where the claim is mounted.")
@click.option("--auth-secret", default="regcred", show_default=True,
              help="kubernetes.io/dockerconfigjson Secret with the registry credentials ('' for none).")
@click.option("--wait-minutes", default=360, show_default=True, type=int,
              help="How long the merge Job waits for every shard before merging the finished ones.")
@click.option("--collect-arg", "collect_args", multiple=True, metavar="ARG",
              help="Extra argument for each shard's 'repoaudit collect' (repeatable).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write to a file.")
@fail_cleanly
def deploy_render(url, shards, run, image, namespace, name, claim, data_dir, auth_secret, wait_minutes,
                  collect_args, output):
    """The Indexed collect Job (one shard per pod) and the merge-and-export Job, as YAML."""
    from repoaudit.fleet.deploy import FleetSpec, render_yaml

    check_output(output, "-o")
    run = run or datetime.now(timezone.utc).strftime("%Y%m%d")
    text = render_yaml(FleetSpec(url, shards, run, image=image, namespace=namespace, name=name, claim=claim,
                                 data_dir=data_dir, auth_secret=auth_secret or None, wait_minutes=wait_minutes,
                                 collect_args=tuple(collect_args)))
    if output and not is_stdout(output):
        output.write_text(text)
        click.echo(f"manifests written to {output}")
    else:
        click.echo(text, nl=False)


# -q and -v on every verb (the helpers are with the error contract above).
_with_verbosity(main)

if __name__ == "__main__":
    main()
