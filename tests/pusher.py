"""Push real images to a registry through its push API, the way a build tool would.

Tests need registries whose contents they know byte for byte: which blobs exist,
how large each is, which manifests share which layers, what each tag points at.
Building images here (instead of copying from the internet, which tests cannot
reach) gives exactly that, and every ``Pushed*`` value keeps the raw manifest bytes
so a test can compare what repoaudit recorded with what was actually sent.

Images are small but real: a config blob with ``created``/``architecture``/``os``/
labels/``rootfs.diff_ids``/``history`` that skopeo and other clients parse, layers
of pseudo-random bytes (incompressible, so sizes are what they say), and manifests
in OCI or Docker schema 2 form. Layer bytes are not tarballs; registries never look
inside layers, and each diff_id is the layer's own digest as if it were uncompressed.

Docker-style manifests are indented with three spaces, as ``docker push`` writes
them, and OCI ones are compact: a client that re-serialises JSON instead of keeping
the bytes computes a different digest on one style or the other.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import httpx

__all__ = [
    "DOCKER_CONFIG",
    "DOCKER_LAYER",
    "DOCKER_MANIFEST",
    "DOCKER_MANIFEST_LIST",
    "OCI_CONFIG",
    "OCI_INDEX",
    "OCI_LAYER",
    "OCI_MANIFEST",
    "PUSHER_USER_AGENT",
    "Blob",
    "PushedImage",
    "PushedIndex",
    "Pusher",
    "layer_bytes",
    "sha256_digest",
]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"

_STYLES = {
    "oci": {"manifest": OCI_MANIFEST, "index": OCI_INDEX, "config": OCI_CONFIG, "layer": OCI_LAYER},
    "docker": {
        "manifest": DOCKER_MANIFEST,
        "index": DOCKER_MANIFEST_LIST,
        "config": DOCKER_CONFIG,
        "layer": DOCKER_LAYER,
    },
}

#: Sent on every pusher request, so a test counting its own client's requests in
#: ``RegistryServer.access_log_lines()`` can leave the set-up traffic out.
PUSHER_USER_AGENT = "repoaudit-tests-pusher"


@dataclass(frozen=True)
class Blob:
    digest: str
    size: int
    media_type: str


@dataclass(frozen=True)
class PushedImage:
    repository: str
    digest: str
    media_type: str
    manifest: bytes
    config: Blob
    layers: tuple[Blob, ...]
    created: str
    architecture: str
    os: str

    @property
    def size(self) -> int:
        """Length of the manifest bytes: the ``size`` a descriptor of this image carries."""
        return len(self.manifest)

    @property
    def blobs(self) -> tuple[Blob, ...]:
        """Config and layers, the blobs this manifest references."""
        return (self.config, *self.layers)


@dataclass(frozen=True)
class PushedIndex:
    repository: str
    digest: str
    media_type: str
    manifest: bytes
    children: tuple[PushedImage, ...]

    @property
    def size(self) -> int:
        return len(self.manifest)


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer_bytes(seed: str, size: int) -> bytes:
    """``size`` bytes that depend only on ``seed``.

    Same seed, same bytes (and digest) in every run, so tests can share a layer
    between images on purpose; pseudo-random, so a gzip somewhere in the pipeline
    cannot shrink them and sizes stay exact. SHAKE-256 makes a few MiB in milliseconds.
    """
    if size < 0:
        raise ValueError(f"layer_bytes: size must be >= 0, got {size}")
    return hashlib.shake_256(seed.encode()).digest(size)


def _raise_for(response: httpx.Response, expected: Iterable[int], what: str) -> None:
    expected = tuple(expected)
    if response.status_code in expected:
        return
    body = response.read()[:4000].decode("utf-8", "replace")
    request = response.request
    raise AssertionError(
        f"{what}: {request.method} {request.url} answered {response.status_code} "
        f"(expected {' or '.join(map(str, expected))}): {body}"
    )


class Pusher:
    """A synchronous push client for one registry.

    Deliberately independent of repoaudit's own client: set-up code that shared the
    library's HTTP layer would hide the library's bugs from the tests it serves.
    ``client`` is a plain ``httpx.Client`` on the registry's URL, for tests that need
    a raw request (tags/list, HEAD, catalog) without going through repoaudit.
    """

    def __init__(
        self,
        base_url: str,
        *,
        auth: httpx.Auth | tuple[str, str] | None = None,
        verify: bool | str = True,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.client = httpx.Client(
            base_url=self.base_url,
            auth=auth,
            verify=verify,
            timeout=30.0,
            headers={"User-Agent": PUSHER_USER_AGENT},
        )
        # Only for layers=None in push_image: distinct default layers per call keep two
        # otherwise identical push_image calls from silently producing one image.
        self._default_layer_counter = itertools.count()

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> Pusher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- blobs -------------------------------------------------------------------

    def blob_exists(self, repo: str, digest: str) -> bool:
        response = self.client.head(f"/v2/{repo}/blobs/{digest}")
        _raise_for(response, (200, 404), f"HEAD blob {digest} in {repo}")
        return response.status_code == 200

    def push_blob(self, repo: str, data: bytes, media_type: str = OCI_LAYER) -> Blob:
        """Upload ``data`` monolithically (POST, then one PUT with the digest).

        ``media_type`` only labels the returned ``Blob``: registries store blobs untyped,
        the type lives in the manifest descriptor that references the blob.
        """
        blob = Blob(digest=sha256_digest(data), size=len(data), media_type=media_type)
        if self.blob_exists(repo, blob.digest):
            return blob
        started = self.client.post(f"/v2/{repo}/blobs/uploads/")
        _raise_for(started, (202,), f"start upload in {repo}")
        location = self._location(started)
        finished = self.client.put(
            location.copy_merge_params({"digest": blob.digest}),
            content=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        _raise_for(finished, (201,), f"finish upload of {blob.digest} to {repo}")
        return blob

    def mount_blob(self, repo: str, digest: str, from_repo: str) -> bool:
        """Cross-repository mount; False when the registry declined and opened an upload instead."""
        response = self.client.post(
            f"/v2/{repo}/blobs/uploads/", params={"mount": digest, "from": from_repo}
        )
        _raise_for(response, (201, 202), f"mount {digest} from {from_repo} into {repo}")
        if response.status_code == 201:
            return True
        # A 202 leaves an upload session behind; cancel it so storage only holds what
        # the test meant to create.
        cancel = self.client.delete(self._location(response))
        _raise_for(cancel, (204, 404), f"cancel upload after refused mount into {repo}")
        return False

    def _location(self, response: httpx.Response) -> httpx.URL:
        location = response.headers.get("Location")
        if not location:
            raise AssertionError(f"{response.request.method} {response.request.url}: no Location header")
        # The spec allows a relative Location; Distribution sends an absolute one.
        return response.request.url.join(location)

    # -- manifests ---------------------------------------------------------------

    def push_manifest(self, repo: str, ref: str, body: bytes, media_type: str) -> str:
        response = self.client.put(
            f"/v2/{repo}/manifests/{ref}", content=body, headers={"Content-Type": media_type}
        )
        _raise_for(response, (201,), f"push manifest {repo}:{ref}")
        digest = response.headers.get("Docker-Content-Digest", "")
        expected = sha256_digest(body)
        assert digest == expected, (
            f"push manifest {repo}:{ref}: registry says {digest or 'nothing'}, sha256 of the body is {expected}"
        )
        return digest

    def _push_manifest_tags(self, repo: str, tags: Sequence[str], body: bytes, media_type: str) -> str:
        if not tags:
            return self.push_manifest(repo, sha256_digest(body), body, media_type)
        digest = self.push_manifest(repo, tags[0], body, media_type)
        for tag in tags[1:]:
            self.push_manifest(repo, tag, body, media_type)
        return digest

    def push_image(
        self,
        repo: str,
        tags: Sequence[str] = (),
        *,
        layers: Sequence[bytes] | None = None,
        shared_layers: Sequence[Blob] = (),
        mount_from: str | None = None,
        created: str = "2024-01-01T00:00:00Z",
        architecture: str = "amd64",
        os: str = "linux",
        labels: dict[str, str] | None = None,
        style: str = "oci",
    ) -> PushedImage:
        """Push config, layers and manifest; tag it with every tag in ``tags``, or none.

        Layer order is ``shared_layers`` then ``layers``, the way a base image's layers
        come first. ``shared_layers`` must already be in ``repo`` unless ``mount_from``
        names the repository to mount them from. ``layers=None`` means one fresh 1 KiB
        layer; ``layers=[]`` means no new layer at all.
        """
        kinds = _style(style)
        tags = _tags(tags)
        if layers is None:
            seed = f"default-layer/{repo}/{next(self._default_layer_counter)}/{created}/{os}/{architecture}"
            layers = [layer_bytes(seed, 1024)]

        blobs: list[Blob] = []
        for shared in shared_layers:
            if mount_from is not None and not self.mount_blob(repo, shared.digest, mount_from):
                raise AssertionError(f"push_image: {shared.digest} could not be mounted from {mount_from} into {repo}")
            blobs.append(Blob(shared.digest, shared.size, kinds["layer"]))
        for data in layers:
            blobs.append(self.push_blob(repo, data, kinds["layer"]))

        config_doc = {
            "created": created,
            "architecture": architecture,
            "os": os,
            "config": {"Labels": dict(labels or {})},
            "rootfs": {"type": "layers", "diff_ids": [blob.digest for blob in blobs]},
            "history": [
                {"created": created, "created_by": f"repoaudit-tests layer {index}"}
                for index in range(len(blobs))
            ],
        }
        config = self.push_blob(repo, _dump(config_doc, "oci"), kinds["config"])  # configs are compact in both worlds

        manifest_doc = {
            "schemaVersion": 2,
            "mediaType": kinds["manifest"],
            "config": _descriptor(config),
            "layers": [_descriptor(blob) for blob in blobs],
        }
        body = _dump(manifest_doc, style)
        digest = self._push_manifest_tags(repo, tags, body, kinds["manifest"])
        return PushedImage(
            repository=repo,
            digest=digest,
            media_type=kinds["manifest"],
            manifest=body,
            config=config,
            layers=tuple(blobs),
            created=created,
            architecture=architecture,
            os=os,
        )

    def push_index(
        self,
        repo: str,
        tags: Sequence[str] = (),
        children: Sequence[PushedImage] = (),
        style: str = "oci",
    ) -> PushedIndex:
        """An OCI image index (``style="oci"``) or Docker manifest list (``"docker"``).

        Distribution refuses an index whose children are not in the same repository,
        so children must have been pushed to ``repo`` already (untagged is fine).
        """
        kinds = _style(style)
        tags = _tags(tags)
        for child in children:
            if child.repository != repo:
                raise ValueError(f"push_index: child {child.digest} was pushed to {child.repository}, not {repo}")
        index_doc = {
            "schemaVersion": 2,
            "mediaType": kinds["index"],
            "manifests": [
                {
                    "mediaType": child.media_type,
                    "digest": child.digest,
                    "size": child.size,
                    "platform": {"architecture": child.architecture, "os": child.os},
                }
                for child in children
            ],
        }
        body = _dump(index_doc, style)
        digest = self._push_manifest_tags(repo, tags, body, kinds["index"])
        return PushedIndex(
            repository=repo, digest=digest, media_type=kinds["index"], manifest=body, children=tuple(children)
        )

    def tag(self, repo: str, tag: str, image: PushedImage | PushedIndex) -> None:
        """Point ``tag`` at already pushed content; moves the tag if it pointed elsewhere."""
        self.push_manifest(repo, tag, image.manifest, image.media_type)

    def delete_manifest(self, repo: str, digest: str) -> None:
        """Delete a manifest by digest; Distribution also drops every tag that pointed at it."""
        response = self.client.delete(f"/v2/{repo}/manifests/{digest}")
        _raise_for(response, (202,), f"delete manifest {digest} in {repo}")

    def tags(self, repo: str) -> list[str]:
        """The tags/list answer, in the registry's order.

        Distribution 2.8 returns every tag in one answer, in directory order (not
        sorted), and ignores ``n``/``last``; only ``/v2/_catalog`` is sorted and paged.
        """
        response = self.client.get(f"/v2/{repo}/tags/list")
        _raise_for(response, (200,), f"list tags of {repo}")
        return response.json().get("tags") or []


def _style(style: str) -> dict[str, str]:
    try:
        return _STYLES[style]
    except KeyError:
        raise ValueError(f"style must be 'oci' or 'docker', got {style!r}") from None


def _tags(tags: Sequence[str] | str) -> tuple[str, ...]:
    # A bare string would otherwise be pushed as one tag per character.
    return (tags,) if isinstance(tags, str) else tuple(tags)


def _descriptor(blob: Blob) -> dict[str, object]:
    return {"mediaType": blob.media_type, "digest": blob.digest, "size": blob.size}


def _dump(document: dict, style: str) -> bytes:
    if style == "docker":
        return json.dumps(document, indent=3).encode()
    return json.dumps(document, separators=(",", ":")).encode()
