"""Collection through an HTTP proxy that demands credentials, as Flux's proxySecretRef describes one.

The proxy is a small forwarding proxy on loopback: it checks ``Proxy-Authorization``,
counts what it forwarded and relays to the real registry. The test proves requests
really went through it and that the proxy password is stored nowhere.
"""

from __future__ import annotations

import base64
import http.server
import json
import select
import socket
import ssl
import threading
import urllib.request

import pytest
from click.testing import CliRunner

import repoaudit
from pusher import Pusher, layer_bytes
from registry import RegistryServer
from repoaudit.cli import EXIT_FAILED, main
from repoaudit.store.exports import base_tables
from tokenserver import make_pki

PROXY_USER, PROXY_PASSWORD = "egress", "proxy-pass-never-stored"


class ForwardingProxy(http.server.ThreadingHTTPServer):
    """Forward proxy: absolute-URI requests relayed to an HTTP origin, CONNECT tunnels to an HTTPS one."""

    def __init__(self):
        self.forwarded: list[str] = []
        self.refused = 0
        super().__init__(("127.0.0.1", 0), _ProxyHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ForwardingProxy

    def log_message(self, *args):  # keep test output clean
        pass

    def _authorized(self) -> bool:
        expected = "Basic " + base64.b64encode(f"{PROXY_USER}:{PROXY_PASSWORD}".encode()).decode()
        if self.headers.get("Proxy-Authorization") == expected:
            self.server.forwarded.append(f"{self.command} {self.path}")
            return True
        self.server.refused += 1
        self.send_response(407)
        self.send_header("Proxy-Authenticate", 'Basic realm="egress"')
        self.send_header("Content-Length", "0")
        self.end_headers()
        return False

    def do_CONNECT(self):
        """An HTTPS origin: a byte tunnel to host:port; TLS runs end to end through it."""
        if not self._authorized():
            return
        host, port = self.path.rsplit(":", 1)
        upstream = socket.create_connection((host, int(port)), timeout=30)
        self.send_response(200, "Connection established")
        self.end_headers()
        self.close_connection = True
        ends = [self.connection, upstream]
        try:
            while True:
                readable, _, broken = select.select(ends, [], ends, 30)
                if broken or not readable:
                    return
                for end in readable:
                    data = end.recv(65536)
                    if not data:
                        return
                    (upstream if end is self.connection else self.connection).sendall(data)
        finally:
            upstream.close()

    def _relay(self):
        if not self._authorized():
            return
        headers = {k: v for k, v in self.headers.items()
                   if k.lower() not in ("proxy-authorization", "proxy-connection", "connection", "host")}
        request = urllib.request.Request(self.path, method=self.command, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as upstream:
                status, body, upstream_headers = upstream.status, upstream.read(), upstream.headers
        except urllib.error.HTTPError as exc:
            status, body, upstream_headers = exc.code, exc.read(), exc.headers
        self.send_response(status)
        for key, value in upstream_headers.items():
            if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(0 if self.command == "HEAD" else len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = _relay


@pytest.fixture
def proxy():
    server = ForwardingProxy()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_collect_through_an_authenticating_proxy(registry, pusher, proxy, tmp_path, monkeypatch):
    pusher.push_image("team/app", ["1.0", "2.0"], layers=[layer_bytes("proxied", 600)])
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "none"))
    proxy_url = f"http://{PROXY_USER}:{PROXY_PASSWORD}@127.0.0.1:{proxy.server_address[1]}"
    db = tmp_path / "proxy.duckdb"
    result = CliRunner().invoke(main, ["collect", registry.url, "--db", str(db), "--proxy", proxy_url,
                                       "--no-progress"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "tags 2" in result.stdout
    assert f"GET {registry.url}/v2/_catalog?n=1000" in proxy.forwarded
    assert any("/v2/team/app/manifests/" in line for line in proxy.forwarded)
    assert proxy.refused == 0

    with repoaudit.open(db, read_only=True) as audit:
        dump = "\n".join(audit.relation(t).to_csv(index=False) for t in base_tables(audit.con))
    assert PROXY_PASSWORD not in dump + result.output


def test_collect_an_https_registry_through_a_connect_tunnel(proxy, tmp_path, monkeypatch):
    pki = make_pki(tmp_path / "pki")
    server = RegistryServer(tmp_path / "registry", tls=pki.server)
    server.start()
    try:
        with Pusher(server.url, verify=ssl.create_default_context(cafile=str(pki.ca_cert))) as pusher:
            pusher.push_image("team/app", ["1.0", "2.0", "3.0"], layers=[layer_bytes("tunnelled", 700)])
        monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "none"))
        proxy_url = f"http://{PROXY_USER}:{PROXY_PASSWORD}@127.0.0.1:{proxy.server_address[1]}"
        db = tmp_path / "tunnel.duckdb"
        result = CliRunner().invoke(main, ["collect", server.url, "--db", str(db), "--proxy", proxy_url,
                                           "--ca-file", str(pki.ca_cert), "--no-progress"], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        assert "tags 3" in result.stdout
        # Everything went through the tunnel: the proxy saw CONNECT and nothing else, the registry the requests.
        assert proxy.forwarded and set(proxy.forwarded) == {f"CONNECT {server.host}"}
        assert any("/v2/team/app/manifests/" in line for line in server.access_log_lines())
        with repoaudit.open(db, read_only=True) as audit:
            dump = "\n".join(audit.relation(t).to_csv(index=False) for t in base_tables(audit.con))
        assert PROXY_PASSWORD not in dump + result.output
    finally:
        server.stop()


def test_wrong_proxy_credentials_fail_in_one_line(registry, proxy, tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "none"))
    bad = f"http://{PROXY_USER}:wrong@127.0.0.1:{proxy.server_address[1]}"
    result = CliRunner().invoke(main, ["collect", registry.url, "--db", str(tmp_path / "p.duckdb"), "--proxy", bad,
                                       "--no-progress"], catch_exceptions=False)
    assert result.exit_code == EXIT_FAILED  # the snapshot is recorded as failed
    lines = [l for l in result.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and "407" in lines[0]
    assert "wrong" not in lines[0]
    assert proxy.refused >= 1


def test_flux_proxy_secret_ref_reaches_the_client(tmp_path):
    from repoaudit.jobs.flux import load_flux

    docs = [
        {"apiVersion": "image.toolkit.fluxcd.io/v1", "kind": "ImageRepository",
         "metadata": {"name": "app", "namespace": "team"},
         "spec": {"image": "registry.example.com/team/app", "proxySecretRef": {"name": "egress"}}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "egress", "namespace": "team"},
         "stringData": {"address": "http://127.0.0.1:3128", "username": PROXY_USER, "password": PROXY_PASSWORD}},
    ]
    path = tmp_path / "flux.yaml"
    path.write_text("---\n".join(json.dumps(d) + "\n" for d in docs))
    (job,) = load_flux([path])
    options = job.client_options()
    assert options.proxy == f"http://{PROXY_USER}:{PROXY_PASSWORD}@127.0.0.1:3128"
    assert PROXY_PASSWORD not in repr(options) and PROXY_PASSWORD not in repr(job)


def test_collect_through_a_proxy_from_the_environment(registry, pusher, proxy, tmp_path, monkeypatch):
    """HTTP_PROXY is honoured (httpx applies it only to a client without its own transport)."""
    pusher.push_image("team/env", ["1"], layers=[layer_bytes("env-proxied", 300)])
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "none"))
    monkeypatch.setenv("HTTP_PROXY", f"http://{PROXY_USER}:{PROXY_PASSWORD}@127.0.0.1:{proxy.server_address[1]}")
    for var in ("NO_PROXY", "no_proxy", "http_proxy"):
        monkeypatch.delenv(var, raising=False)
    result = CliRunner().invoke(main, ["collect", registry.url, "--db", str(tmp_path / "env.duckdb"),
                                       "--no-progress"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert f"GET {registry.url}/v2/_catalog?n=1000" in proxy.forwarded
