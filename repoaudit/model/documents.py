"""One schema per registry document type, checked where the bytes come in.

Every value repoaudit stores from a registry (or an OCI layout) passes through
this module first: manifests (OCI and Docker schema 2, and schema 1's layer
list), indexes and manifest lists, image configs, catalog pages and tag-list
pages, and the ``Docker-Content-Digest`` header. A document that breaks its
schema raises :class:`~repoaudit.errors.InvalidDocument` with one line naming
the document, the field and what was wrong; nothing of it is stored.

The rules, after the OCI image spec and distribution/reference (the name, tag and digest grammars
themselves live in :mod:`repoaudit.model.reference`):

* digests are ``algorithm:hex`` with a registered algorithm and its exact hex
  length (sha256: 64, sha384: 96, sha512: 128), so a digest can never be a path;
* sizes are integers (JSON ``true`` is not one) with ``0 <= size < 2**63``;
* media types are RFC 6838 ``type/subtype`` strings;
* repository names follow the distribution name grammar (lowercase path
  components joined by ``.``, ``_``, ``__`` or dashes, ``/`` between components,
  at most 255 characters), so ``..`` or ``?`` can never reach a URL;
* tags are ``[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`` (ASCII, as in distribution);
* optional fields may be absent or ``null``; present, they must have their type.

One deliberate leniency: an image config's ``created`` must be a string, but a
string that is not an RFC 3339 timestamp is stored as NULL (unknown age), the
way the zero time and the reproducible-builds epoch already are, and is logged
rather than failing the image: an image whose age is unknown is still storage
to account for.
"""

from __future__ import annotations

import json
import re
from typing import Any

from repoaudit.errors import InvalidDocument, first_line
from repoaudit.model.reference import is_valid_digest, is_valid_repository, is_valid_tag

__all__ = [
    "MAX_SIZE", "catalog_page", "check_digest", "check_media_type", "check_repository", "check_tag",
    "image_config", "is_valid_repository", "is_valid_tag", "load_json", "manifest", "printable",
    "tag_list_page",
]

MAX_SIZE = 2 ** 63  # sizes are int64 in every registry and in the database

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
IMAGE_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
SCHEMA1_TYPES = frozenset({DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED})

# RFC 6838 section 4.2 restricted-name, for type and subtype.
_MEDIA_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}")


def printable(value: Any, limit: int = 60) -> str:
    """A value as it may appear in a one-line message: escaped, quoted, shortened."""
    if isinstance(value, str):
        text = ascii(value)
    elif value is None or isinstance(value, bool):
        text = json.dumps(value)
    elif isinstance(value, (int, float)):
        text = f"{type(value).__name__} {value!r}"
    else:
        text = type(value).__name__  # a list or an object: its type says what was wrong
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _fail(what: str, path: str, expected: str, value: Any) -> InvalidDocument:
    where = f"{what}: {path}" if path else what
    return InvalidDocument(f"{where} must be {expected}, not {printable(value)}")


# -- JSON ------------------------------------------------------------------------------


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict:
    doc = dict(pairs)
    if len(doc) != len(pairs):
        # Two parsers taking different copies of a key is how a document says one thing
        # to the registry and another to us.
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise ValueError(f"duplicate key {printable(dup)}")
    return doc


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def load_json(body: bytes, what: str) -> Any:
    """Parse ``body`` strictly: UTF-8 JSON, no NaN/Infinity, no duplicate keys, bounded nesting."""
    try:
        return json.loads(body, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except RecursionError:
        raise InvalidDocument(f"{what} is nested too deeply to be a registry document") from None
    except (ValueError, UnicodeDecodeError) as exc:
        snippet = body[:40].decode("utf-8", "replace")
        reason = first_line(exc)
        raise InvalidDocument(f"{what} is not JSON (starts {snippet!r}; {reason})") from None


# -- scalars -----------------------------------------------------------------------


def check_digest(value: Any, what: str, path: str = "digest") -> str:
    if not isinstance(value, str):
        raise _fail(what, path, "a digest string", value)
    if not is_valid_digest(value):
        raise _fail(what, path, "a digest (sha256:<64 hex>, sha384:<96 hex> or sha512:<128 hex>)", value)
    return value


def check_size(value: Any, what: str, path: str = "size") -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < MAX_SIZE:
        raise _fail(what, path, "an integer from 0 to 2^63-1", value)
    return value


def check_media_type(value: Any, what: str, path: str = "mediaType") -> str:
    if not isinstance(value, str) or not _MEDIA_TYPE.fullmatch(value):
        raise _fail(what, path, "a media type (type/subtype)", value)
    return value


def check_tag(value: Any, what: str = "tag", path: str = "") -> str:
    if not is_valid_tag(value):
        raise _fail(what, path, "a tag ([A-Za-z0-9_][A-Za-z0-9_.-], at most 128 characters)", value)
    return value


def check_repository(value: Any, what: str = "repository name", path: str = "") -> str:
    if not is_valid_repository(value):
        raise _fail(what, path, "a repository name (lowercase components joined by '/', at most 255 "
                                "characters)", value)
    return value


def _string(doc: dict, key: str, what: str, prefix: str = "", *, required: bool = False) -> str | None:
    value = doc.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise _fail(what, prefix + key, "a string", value)
    return value


def _object(value: Any, what: str, path: str, *, required: bool = False) -> dict | None:
    if value is None and not required:
        return None
    if not isinstance(value, dict):
        raise _fail(what, path, "an object", value)
    return value


def _list(value: Any, what: str, path: str, *, required: bool = False) -> list | None:
    if value is None and not required:
        return None
    if not isinstance(value, list):
        raise _fail(what, path, "a list", value)
    return value


def _string_map(value: Any, what: str, path: str) -> dict[str, str] | None:
    mapping = _object(value, what, path)
    if mapping is not None:
        for k, v in mapping.items():
            if not isinstance(v, str):
                raise _fail(what, f"{path}[{printable(k, 40)}]", "a string", v)
    return mapping


def _string_list(value: Any, what: str, path: str) -> list[str] | None:
    items = _list(value, what, path)
    for i, item in enumerate(items or ()):
        if not isinstance(item, str):
            raise _fail(what, f"{path}[{i}]", "a string", item)
    return items


# -- descriptors -------------------------------------------------------------------


def _platform(value: Any, what: str, path: str) -> dict | None:
    platform = _object(value, what, path)
    if platform is not None:
        for key in ("architecture", "os"):
            _string(platform, key, what, f"{path}.", required=True)
        for key in ("variant", "os.version"):
            _string(platform, key, what, f"{path}.")
        for key in ("os.features", "features"):
            _string_list(platform.get(key), what, f"{path}.{key}")
    return platform


def descriptor(value: Any, what: str, path: str) -> dict:
    """An OCI content descriptor: mediaType, digest and size required; the rest typed when present."""
    desc = _object(value, what, path, required=True)
    check_media_type(desc.get("mediaType"), what, f"{path}.mediaType")
    check_digest(desc.get("digest"), what, f"{path}.digest")
    check_size(desc.get("size"), what, f"{path}.size")
    if desc.get("artifactType") is not None:
        check_media_type(desc["artifactType"], what, f"{path}.artifactType")
    _string_map(desc.get("annotations"), what, f"{path}.annotations")
    _platform(desc.get("platform"), what, f"{path}.platform")
    _string_list(desc.get("urls"), what, f"{path}.urls")
    _string(desc, "data", what, f"{path}.")
    return desc


def _descriptors(value: Any, what: str, path: str) -> list[dict]:
    return [descriptor(item, what, f"{path}[{i}]") for i, item in enumerate(_list(value, what, path, required=True))]


# -- documents ---------------------------------------------------------------------


def manifest(doc: Any, what: str, content_type: str | None = None) -> str:
    """Check a manifest or index document; return the media type it is parsed as.

    The body's own ``mediaType`` wins over the Content-Type, because static file
    servers and some proxies send ``application/json`` for everything; without
    either, the shape tells image from index (OCI allows an absent mediaType).
    Schema 1 and unknown artifact types are accepted with the fields they have.
    """
    if not isinstance(doc, dict):
        raise _fail(what, "", "a JSON object", doc)
    if doc.get("schemaVersion") is not None and (not isinstance(doc["schemaVersion"], int)
                                                 or isinstance(doc["schemaVersion"], bool)):
        raise _fail(what, "schemaVersion", "an integer", doc["schemaVersion"])
    declared = check_media_type(doc["mediaType"], what) if doc.get("mediaType") is not None else None
    header = (content_type or "").split(";")[0].strip() or None
    if header is not None and not _MEDIA_TYPE.fullmatch(header):
        raise _fail(what, "Content-Type", "a media type", header)
    mt = declared or header
    if mt is None or mt == "application/json":
        if "manifests" in doc:
            mt = OCI_INDEX
        elif "config" in doc and "layers" in doc:
            mt = OCI_MANIFEST
        elif doc.get("schemaVersion") == 1:
            mt = DOCKER_SCHEMA1_SIGNED if "signatures" in doc else DOCKER_SCHEMA1
        else:
            mt = mt or "application/octet-stream"
    if doc.get("artifactType") is not None:
        check_media_type(doc["artifactType"], what, "artifactType")
    _string_map(doc.get("annotations"), what, "annotations")
    if doc.get("subject") is not None:
        descriptor(doc["subject"], what, "subject")
    if mt in INDEX_TYPES:
        _descriptors(doc.get("manifests"), what, "manifests")
    elif mt in IMAGE_TYPES:
        descriptor(doc.get("config"), what, "config")
        _descriptors(doc.get("layers"), what, "layers")
    elif mt in SCHEMA1_TYPES:
        for i, layer in enumerate(_list(doc.get("fsLayers"), what, "fsLayers") or ()):
            _object(layer, what, f"fsLayers[{i}]", required=True)
            check_digest(layer.get("blobSum"), what, f"fsLayers[{i}].blobSum")
    return mt


def image_config(doc: Any, what: str) -> dict:
    """Check an image config (OCI or Docker): the fields repoaudit stores, typed."""
    if not isinstance(doc, dict):
        raise _fail(what, "", "a JSON object", doc)
    for key in ("created", "architecture", "os", "variant", "os.version", "author"):
        _string(doc, key, what)
    inner = _object(doc.get("config"), what, "config")
    if inner is not None:
        _string_map(inner.get("Labels"), what, "config.Labels")
    rootfs = _object(doc.get("rootfs"), what, "rootfs")
    if rootfs is not None:
        for i, d in enumerate(_list(rootfs.get("diff_ids"), what, "rootfs.diff_ids") or ()):
            check_digest(d, what, f"rootfs.diff_ids[{i}]")
    return doc


def _names_page(doc: Any, key: str, what: str) -> list[str]:
    if not isinstance(doc, dict):
        raise _fail(what, "", "a JSON object", doc)
    if key not in doc:
        raise InvalidDocument(f"{what} has no {key!r} list")
    items = doc[key]
    if items is None:
        return []  # Distribution answers "tags": null for a repository without tags
    return _string_list(items, what, key)


def catalog_page(doc: Any, what: str) -> list[str]:
    """A ``/v2/_catalog`` page: ``{"repositories": [str, ...]}``. Names are checked one by one by the caller,
    so that one bad name costs that name, not the catalog."""
    return _names_page(doc, "repositories", what)


def tag_list_page(doc: Any, what: str) -> list[str]:
    """A ``/v2/<name>/tags/list`` page: ``{"name": str, "tags": [str, ...] | null}``; tags checked by the caller."""
    page = _names_page(doc, "tags", what)
    _string(doc, "name", what)
    return page


def referrers_page(doc: Any, what: str) -> dict:
    """A ``/v2/<name>/referrers/<digest>`` page: an OCI image index whose ``manifests`` are descriptors."""
    if not isinstance(doc, dict):
        raise _fail(what, "", "a JSON object", doc)
    _descriptors(doc.get("manifests"), what, "manifests")
    return doc
