"""A real CNCF Distribution registry (``docker-registry``) for tests, one per test.

repoaudit's numbers (reclaimable bytes, what garbage collection frees, which tags
point where) are only worth something if they match what a real registry does,
so behaviour tests run against Distribution 2.8 itself rather than a fake.
``MockTransport`` stays the tool for faults a real server will not produce.

Each server owns one work directory::

    WORKDIR/config.yml      the generated configuration (rewritten on every start)
    WORKDIR/storage/        filesystem storage driver root
    WORKDIR/registry.log    stdout + stderr of every run, appended (access lines included)
    WORKDIR/htpasswd        only with ``htpasswd=``

The port is chosen once, so a server stopped for ``garbage_collect`` comes back
on the same URL and clients built against it keep working.
"""

from __future__ import annotations

import ctypes
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

__all__ = ["PROBE_USER_AGENT", "REGISTRY_BINARY", "RegistryServer", "RegistryStartError", "free_port"]

#: Debian's package names the Distribution binary ``docker-registry``; upstream calls it ``registry``.
REGISTRY_BINARY = os.environ.get("REPOAUDIT_REGISTRY_BINARY") or "docker-registry"

#: User-Agent of the readiness probe, so request counts can leave those lines out.
PROBE_USER_AGENT = "repoaudit-tests-probe"

START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0

# gorilla/handlers' CombinedLoggingHandler, which Distribution wraps around its app:
#   127.0.0.1 - - [27/Nov/2024:08:55:00 +0000] "GET /v2/ HTTP/1.1" 200 2 "" "python-httpx/0.28.1"
# Everything else in the log is logrus text ("time=... level=info msg=...").
_ACCESS_LINE = re.compile(r'^\S+ \S+ \S+ \[[^\]]+\] "[A-Z]+ \S+ HTTP/[0-9.]+" \d{3} ')


class RegistryStartError(RuntimeError):
    """The registry process died or did not answer ``/v2/`` in time; the message carries the log tail."""


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now.

    There is a window between closing this socket and the registry binding the
    port; ``RegistryServer.start`` retries with a new port if it loses that race.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:
    # A pytest run killed with SIGKILL (CI timeout, a developer's ^C^C) would otherwise
    # leave registries listening and holding tmp directories. Linux only; elsewhere
    # stop()/__exit__ are the only cleanup. Runs in the child between fork and exec.
    if sys.platform.startswith("linux"):
        try:
            PR_SET_PDEATHSIG = 1
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        except Exception:
            pass


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _bcrypt_hash(password: str) -> str:
    try:
        import bcrypt
    except ImportError as exc:  # pragma: no cover - depends on the test extras
        raise RuntimeError(
            "RegistryServer(htpasswd=...) needs the 'bcrypt' package (pip install bcrypt): "
            "Distribution's htpasswd backend accepts bcrypt hashes only"
        ) from exc
    # Cost 4 (the minimum) rather than the default 12: Distribution re-checks the
    # hash on every request, and at cost 12 each request would spend ~250 ms in bcrypt.
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()


class RegistryServer:
    """One ``docker-registry serve`` process on 127.0.0.1 with its own storage.

    ``htpasswd`` and ``token`` are mutually exclusive because Distribution runs a
    single access controller. ``extra`` is deep-merged over the generated config last,
    so a test can switch on anything else (``{"storage": {"cache": {...}}}``,
    ``{"storage": {"readonly": {"enabled": True}}}``, ...).
    """

    def __init__(
        self,
        workdir: Path,
        *,
        htpasswd: dict[str, str] | None = None,
        token: dict | None = None,
        tls: tuple[Path, Path] | None = None,
        client_ca: Path | None = None,
        probe_cert: tuple[Path, Path] | None = None,
        delete: bool = True,
        extra: dict | None = None,
    ) -> None:
        if htpasswd is not None and token is not None:
            raise ValueError("RegistryServer: htpasswd and token auth cannot be combined (one access controller)")
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.htpasswd = dict(htpasswd) if htpasswd is not None else None
        self.token = dict(token) if token is not None else None
        self.tls = (Path(tls[0]), Path(tls[1])) if tls is not None else None
        # client_ca: Distribution then requires a client certificate that CA signed (mutual TLS);
        # probe_cert is the one its readiness probe presents.
        self.client_ca = Path(client_ca) if client_ca is not None else None
        self.probe_cert = (str(probe_cert[0]), str(probe_cert[1])) if probe_cert is not None else None
        self.delete = delete
        self.extra = dict(extra or {})

        self.config_path = self.workdir / "config.yml"
        self.storage_dir = self.workdir / "storage"
        self.log_path = self.workdir / "registry.log"
        self.htpasswd_path = self.workdir / "htpasswd"
        # Fixed per server so upload URLs (whose _state is signed with it) survive a restart.
        self._http_secret = secrets.token_hex(16)
        self._port = free_port()
        self._started_once = False
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file = None

    # -- addresses ---------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._port

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT``, the form image references and skopeo want."""
        return f"127.0.0.1:{self._port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    # -- configuration -----------------------------------------------------------

    def config(self) -> dict[str, Any]:
        """The configuration ``start`` writes, as a dict (handy for asserting on it)."""
        config: dict[str, Any] = {
            "version": 0.1,
            "log": {
                "level": "info",
                "formatter": "text",
                "fields": {"service": "registry"},
                # Access lines are kept on purpose: tests count requests with them.
                "accesslog": {"disabled": False},
            },
            "storage": {
                "filesystem": {"rootdirectory": str(self.storage_dir)},
                "delete": {"enabled": self.delete},
                # No blobdescriptor cache: a cache could answer for blobs that a test
                # just deleted or garbage-collected behind the server's back.
                # No upload purging: it is a background timer that only adds log noise.
                "maintenance": {"uploadpurging": {"enabled": False}},
            },
            "http": {
                "addr": self.host,
                "secret": self._http_secret,
                "headers": {"X-Content-Type-Options": ["nosniff"]},
            },
            # No "health" section: the storage-driver health check polls every 10 s and
            # would add log lines (and disk reads) unrelated to what a test does.
        }
        if self.tls is not None:
            config["http"]["tls"] = {"certificate": str(self.tls[0]), "key": str(self.tls[1])}
            if self.client_ca is not None:
                config["http"]["tls"]["clientcas"] = [str(self.client_ca)]
        if self.htpasswd is not None:
            config["auth"] = {"htpasswd": {"realm": "repoaudit-test", "path": str(self.htpasswd_path)}}
        if self.token is not None:
            config["auth"] = {"token": dict(self.token)}
        return _deep_merge(config, self.extra)

    def _write_files(self) -> None:
        self.storage_dir.mkdir(parents=True, exist_ok=True)
        if self.htpasswd is not None and not self.htpasswd_path.exists():
            lines = [f"{user}:{_bcrypt_hash(password)}\n" for user, password in self.htpasswd.items()]
            self.htpasswd_path.write_text("".join(lines))
        self.config_path.write_text(yaml.safe_dump(self.config(), sort_keys=False))

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> None:
        if self.running:
            return
        if shutil.which(REGISTRY_BINARY) is None:
            raise RegistryStartError(
                f"{REGISTRY_BINARY!r} not found on PATH (Debian: apt-get install docker-registry)"
            )
        attempts = 1 if self._started_once else 3
        for attempt in range(attempts):
            try:
                self._start_once()
                self._started_once = True
                return
            except RegistryStartError:
                lost_port_race = "address already in use" in self._log_tail().lower()
                if not lost_port_race or attempt == attempts - 1:
                    raise
                self._port = free_port()

    def _start_once(self) -> None:
        self._write_files()
        self._log_file = open(self.log_path, "ab")
        self._process = subprocess.Popen(
            [REGISTRY_BINARY, "serve", str(self.config_path)],
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            preexec_fn=_die_with_parent,
        )
        deadline = time.monotonic() + START_TIMEOUT
        # verify=False: with tls= the certificate is usually self-signed for the test;
        # this probe only asks "is it up", clients under test verify on their own.
        with httpx.Client(verify=self._probe_context(), timeout=1.0,
                          headers={"User-Agent": PROBE_USER_AGENT}) as probe:
            while True:
                code = self._process.poll()
                if code is not None:
                    self._close_log()
                    self._process = None
                    raise RegistryStartError(
                        f"registry exited with {code} on {self.host}; log tail:\n{self._log_tail()}"
                    )
                try:
                    response = probe.get(f"{self.url}/v2/")
                    if response.status_code in (200, 401):
                        return
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    self.stop()
                    raise RegistryStartError(
                        f"registry on {self.host} did not answer /v2/ within {START_TIMEOUT:.0f}s; "
                        f"log tail:\n{self._log_tail()}"
                    )
                time.sleep(0.05)

    def _probe_context(self) -> ssl.SSLContext | bool:
        if self.probe_cert is None:
            return False
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.load_cert_chain(*self.probe_cert)
        return context

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._close_log()

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self) -> RegistryServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- storage -----------------------------------------------------------------

    def garbage_collect(self, delete_untagged: bool = False) -> str:
        """Run Distribution's offline GC and return its output (stdout + stderr).

        Distribution documents GC as unsafe while the registry accepts writes, and the
        GC command does not check; refusing here keeps tests honest about that.
        """
        if self.running:
            raise RuntimeError("garbage_collect: stop the registry first (GC is offline-only in Distribution)")
        self._write_files()
        command = [REGISTRY_BINARY, "garbage-collect"]
        if delete_untagged:
            command.append("--delete-untagged")
        command.append(str(self.config_path))
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=self.workdir)
        output = result.stdout + result.stderr
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} exited with {result.returncode}:\n{output[-4000:]}")
        return output

    @property
    def blobs_dir(self) -> Path:
        return self.storage_dir / "docker" / "registry" / "v2" / "blobs"

    def blob_store_bytes(self) -> int:
        """Bytes of blob content on disk: what garbage collection can give back.

        Manifests are blobs too, so they count; repository link files and upload
        sessions are not blobs and do not.
        """
        if not self.blobs_dir.exists():
            return 0
        return sum(path.stat().st_size for path in self.blobs_dir.rglob("data") if path.is_file())

    def blob_digests(self) -> set[str]:
        """Digests (``sha256:...``) of every blob on disk, manifests included."""
        if not self.blobs_dir.exists():
            return set()
        return {
            f"{path.parent.parent.parent.name}:{path.parent.name}"
            for path in self.blobs_dir.rglob("data")
            if path.is_file()
        }

    # -- logs --------------------------------------------------------------------

    def log_text(self) -> str:
        if not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    def access_log_lines(self, *, include_probe: bool = False) -> list[str]:
        """HTTP access lines of every run so far, oldest first (one per request).

        The registry writes an access line just after the response has gone out, so a
        client can read the log before the line of its last request is there; while the
        server runs this waits until the log has been quiet for a moment (at most 2 s).
        The readiness probes of ``start`` are left out unless ``include_probe``.
        """
        if self.running:
            self._wait_log_quiet()
        lines = [line for line in self.log_text().splitlines() if _ACCESS_LINE.match(line)]
        if not include_probe:
            lines = [line for line in lines if f'"{PROBE_USER_AGENT}"' not in line]
        return lines

    def _wait_log_quiet(self, quiet: float = 0.05, limit: float = 2.0) -> None:
        deadline = time.monotonic() + limit
        size = -1
        while time.monotonic() < deadline:
            current = self.log_path.stat().st_size if self.log_path.exists() else 0
            if current == size:
                return
            size = current
            time.sleep(quiet)

    def _log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<RegistryServer {self.url} {state} workdir={self.workdir}>"
