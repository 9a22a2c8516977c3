"""Shared fixtures: a real registry per test, a pusher to fill it, skopeo to cross-check it.

Helpers live in plain modules beside this file (``registry.py``, ``pusher.py``) so
tests import them directly (``from pusher import Pusher``): pytest puts ``tests/`` on
``sys.path`` because it is not a package.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pusher import Pusher
from registry import RegistryServer

# Real files written by other projects, copied into the repository with their provenance
# (fixtures/PROVENANCE.md), so a fresh clone's tests read nothing outside it.
FIXTURES = Path(__file__).resolve().parent / "fixtures"

SKOPEO_TIMEOUT = 60


# -- registry ----------------------------------------------------------------------


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[RegistryServer]:
    """A started, empty, unauthenticated HTTP registry with deletes enabled."""
    server = RegistryServer(tmp_path / "registry")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pusher(registry: RegistryServer) -> Iterator[Pusher]:
    client = Pusher(registry.url)
    try:
        yield client
    finally:
        client.close()


# -- skopeo ------------------------------------------------------------------------

# Which TLS flags each subcommand takes: inspect/list-tags/delete have one registry,
# copy/sync have two. skopeo tries HTTPS first and falls back to plain HTTP only
# when verification is off, which is what lets it talk to the HTTP test registry.
_ONE_REGISTRY = {"inspect", "list-tags", "delete", "login", "logout"}
_TWO_REGISTRIES = {"copy", "sync"}


def _skopeo_command(binary: str, args: tuple[str, ...]) -> list[str]:
    args = tuple(str(arg) for arg in args)
    subcommand = next((arg for arg in args if not arg.startswith("-")), None)
    if subcommand is None:
        return [binary, *args]
    at = args.index(subcommand) + 1
    before, after = list(args[:at]), list(args[at:])
    given = " ".join(after)
    inserted: list[str] = []
    if subcommand in _ONE_REGISTRY and "--tls-verify" not in given:
        inserted.append("--tls-verify=false")
    if subcommand in _TWO_REGISTRIES:
        if "--src-tls-verify" not in given:
            inserted.append("--src-tls-verify=false")
        if "--dest-tls-verify" not in given:
            inserted.append("--dest-tls-verify=false")
        # Independent of /etc/containers/policy.json, which a bare machine may lack.
        if "--insecure-policy" not in before:
            before.insert(0, "--insecure-policy")
    return [binary, *before, *inserted, *after]


@pytest.fixture(scope="session")
def skopeo() -> Callable[..., str]:
    """``skopeo(*args) -> stdout``, with TLS verification off for the HTTP test registry.

    A missing skopeo fails rather than skips: CI installs it, and a cross-check that
    silently stops running is worse than none.
    """
    binary = shutil.which("skopeo")
    if binary is None:
        pytest.fail("skopeo is not installed (Debian: apt-get install skopeo)")

    def run(*args: str) -> str:
        command = _skopeo_command(binary, args)
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=SKOPEO_TIMEOUT, stdin=subprocess.DEVNULL
        )
        if result.returncode != 0:
            raise AssertionError(f"{' '.join(command)} exited with {result.returncode}:\n{result.stderr.strip()}")
        return result.stdout

    return run


# -- demo database -----------------------------------------------------------------


@pytest.fixture(scope="session")
def demo_db(tmp_path_factory) -> Path:
    """The demo estate collected into a database once per session (about five seconds)."""
    from repoaudit.demo.runner import run_demo

    out = tmp_path_factory.mktemp("demo")
    return run_demo(out, out / "demo.duckdb", progress=False, echo=lambda *_: None)
