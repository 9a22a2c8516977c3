"""An in-memory distribution API for ``httpx.MockTransport``: only for faults a real registry won't produce.

Behaviour tests use the real registry (``registry.py``); this serves a tiny
catalog of images and lets a test wrap the handler to inject 429s, 5xx storms,
garbage bodies or wrong digests at exact points.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
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

    def add_image(self, repo: str, tag: str, layer: bytes = b"layer", created: str = "2024-01-01T00:00:00Z") -> str:
        config = json.dumps({"created": created, "architecture": "amd64", "os": "linux",
                             "rootfs": {"type": "layers", "diff_ids": [digest_of(layer)]}}).encode()
        self.blobs[digest_of(config)] = config
        self.blobs[digest_of(layer)] = layer
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest_of(config),
                       "size": len(config)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest_of(layer),
                        "size": len(layer)}],
        }).encode()
        d = digest_of(manifest)
        self.manifests[d] = manifest
        self.tags.setdefault(repo, {})[tag] = d
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
            return httpx.Response(200, json={"repositories": sorted(self.tags)})
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
                headers = {"Docker-Content-Digest": d, "Content-Type": OCI_MANIFEST}
                return httpx.Response(200, headers=headers, content=b"" if request.method == "HEAD" else body)
            if rest.startswith("blobs/"):
                d = rest[len("blobs/"):]
                if d not in self.blobs:
                    return error(404, "BLOB_UNKNOWN", "blob unknown to registry")
                return httpx.Response(200, content=self.blobs[d])
        return error(404, "NAME_UNKNOWN", "repository name not known to registry")


def error(status: int, code: str, message: str, **headers) -> httpx.Response:
    return httpx.Response(status, headers=headers, json={"errors": [{"code": code, "message": message, "detail": None}]})
