"""An in-memory distribution API for ``httpx.MockTransport``: only for faults a real registry won't produce.

Behaviour tests use the real registry (``registry.py``); this serves a tiny
catalog of images and lets a test wrap the handler to inject 429s, 5xx storms,
garbage bodies or wrong digests at exact points.

:class:`FakeRegistryServer` serves the same content over real HTTP from a
thread, for what a mock transport cannot show: bodies that never end or
trickle, redirect loops, connections cut short. A raw handler for a path writes
to the socket itself.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

import httpx

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class FakeRegistry:
    def __init__(self):
        self.blobs: dict[str, bytes] = {}
        self.manifests: dict[str, bytes] = {}
        self.tags: dict[str, dict[str, str]] = {}
        self.hits: Counter[str] = Counter()
        self.fault: Callable[[httpx.Request], httpx.Response | None] = lambda request: None
        self.catalog: list[str] | None = None  # names the catalog lists, when not those of self.tags
        self.media_types: dict[str, str] = {}  # manifest digest -> Content-Type, when not OCI_MANIFEST

    def image_documents(self, layer: bytes = b"layer", created: str = "2024-01-01T00:00:00Z",
                        config: dict | None = None) -> tuple[dict, bytes]:
        """A manifest (as a dict, to be spoiled) and its config bytes, the blobs already added."""
        config = json.dumps(config if config is not None else {
            "created": created, "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [digest_of(layer)]}}).encode()
        self.blobs[digest_of(config)] = config
        self.blobs[digest_of(layer)] = layer
        manifest = {
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest_of(config),
                       "size": len(config)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest_of(layer),
                        "size": len(layer)}],
        }
        return manifest, config

    def add_image(self, repo: str, tag: str, layer: bytes = b"layer", created: str = "2024-01-01T00:00:00Z",
                  config: dict | None = None) -> str:
        manifest, _ = self.image_documents(layer, created, config)
        return self.add_manifest(repo, tag, json.dumps(manifest).encode())

    def add_manifest(self, repo: str, tag: str | None, body: bytes, media_type: str | None = None) -> str:
        """Any bytes as the manifest of ``repo:tag`` (untagged with ``tag=None``); returns their digest."""
        d = digest_of(body)
        self.manifests[d] = body
        if media_type:
            self.media_types[d] = media_type
        if tag is not None:
            self.tags.setdefault(repo, {})[tag] = d
        else:
            self.tags.setdefault(repo, {})
        return d

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.hits[f"{request.method} {path}"] += 1
        injected = self.fault(request)
        if injected is not None:
            return injected
        if path == "/v2/":
            return httpx.Response(200, json={})
        if path == "/v2/_catalog":
            names = self.catalog if self.catalog is not None else sorted(self.tags)
            return httpx.Response(200, json={"repositories": names})
        for repo in self.tags:
            prefix = f"/v2/{repo}/"
            if not path.startswith(prefix):
                continue
            rest = path[len(prefix):]
            if rest == "tags/list":
                return httpx.Response(200, json={"name": repo, "tags": sorted(self.tags[repo])})
            if rest.startswith("manifests/"):
                ref = rest[len("manifests/"):]
                d = self.tags[repo].get(ref, ref)
                if d not in self.manifests:
                    return error(404, "MANIFEST_UNKNOWN", "manifest unknown")
                body = self.manifests[d]
                headers = {"Docker-Content-Digest": d, "Content-Type": self.media_types.get(d, OCI_MANIFEST)}
                return httpx.Response(200, headers=headers, content=b"" if request.method == "HEAD" else body)
            if rest.startswith("blobs/"):
                d = rest[len("blobs/"):]
                if d not in self.blobs:
                    return error(404, "BLOB_UNKNOWN", "blob unknown to registry")
                return httpx.Response(200, content=self.blobs[d])
        return error(404, "NAME_UNKNOWN", "repository name not known to registry")


def error(status: int, code: str, message: str, **headers) -> httpx.Response:
    return httpx.Response(status, headers=headers, json={"errors": [{"code": code, "message": message, "detail": None}]})


# -- over real HTTP ------------------------------------------------------------------

RawHandler = Callable[[BaseHTTPRequestHandler], None]


class FakeRegistryServer:
    """A :class:`FakeRegistry` served over HTTP/1.1 by a threaded server on 127.0.0.1.

    ``raw[path]`` takes over a path (query ignored) and writes the answer itself;
    the helpers below write the classic hostile ones. Every raw writer gives up
    when the client hangs up or ``stop`` is called, so no server thread outlives
    its test for long.
    """

    def __init__(self, fake: FakeRegistry):
        self.fake = fake
        self.raw: dict[str, RawHandler] = {}
        self.stopping = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                server._serve(self)

            do_HEAD = do_DELETE = do_GET

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def start(self) -> "FakeRegistryServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        path = h.path.split("?", 1)[0]
        raw = self.raw.get(path)
        try:
            if raw is not None:
                self.fake.hits[f"{h.command} {path}"] += 1
                raw(h)
                return
            response = self.fake.handle(httpx.Request(h.command, self.url + h.path))
            body = response.content
            h.send_response(response.status_code)
            for key, value in response.headers.items():
                if key.lower() not in ("content-length", "transfer-encoding"):
                    h.send_header(key, value)
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            if h.command != "HEAD":
                h.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            h.close_connection = True

    # -- hostile answers --------------------------------------------------------------

    def endless(self, chunk: bytes = b" " * 65536, *, content_type: str = OCI_MANIFEST) -> RawHandler:
        """A chunked body that never ends (until the client hangs up)."""
        def write(h: BaseHTTPRequestHandler) -> None:
            h.send_response(200)
            h.send_header("Content-Type", content_type)
            h.send_header("Transfer-Encoding", "chunked")
            h.end_headers()
            frame = b"%x\r\n%s\r\n" % (len(chunk), chunk)
            h.close_connection = True
            deadline = time.monotonic() + 60
            while not self.stopping.is_set() and time.monotonic() < deadline:
                h.wfile.write(frame)
        return write

    def trickle(self, every: float = 0.05, *, length: int = 1_000_000) -> RawHandler:
        """A body announced as ``length`` bytes that arrives one byte per ``every`` seconds."""
        def write(h: BaseHTTPRequestHandler) -> None:
            h.send_response(200)
            h.send_header("Content-Type", OCI_MANIFEST)
            h.send_header("Content-Length", str(length))
            h.end_headers()
            h.close_connection = True
            deadline = time.monotonic() + 60
            while not self.stopping.is_set() and time.monotonic() < deadline:
                h.wfile.write(b" ")
                h.wfile.flush()
                time.sleep(every)
        return write

    def redirect(self, location: str, status: int = 302) -> RawHandler:
        def write(h: BaseHTTPRequestHandler) -> None:
            h.send_response(status)
            h.send_header("Location", location)
            h.send_header("Content-Length", "0")
            h.end_headers()
        return write

    def short_body(self, body: bytes, *, announced: int) -> RawHandler:
        """``announced`` bytes promised, ``body`` sent, connection closed."""
        def write(h: BaseHTTPRequestHandler) -> None:
            h.send_response(200)
            h.send_header("Content-Type", OCI_MANIFEST)
            h.send_header("Content-Length", str(announced))
            h.end_headers()
            h.wfile.write(body)
            h.close_connection = True
        return write

    def answer(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> RawHandler:
        """Exactly this answer, headers written as given (no checks on their values)."""
        def write(h: BaseHTTPRequestHandler) -> None:
            h.send_response(status)
            for key, value in (headers or {}).items():
                h.send_header(key, value)
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            if h.command != "HEAD":
                h.wfile.write(body)
        return write
