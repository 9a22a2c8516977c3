"""Container image references, parsed the way Docker and Flux parse them.

The grammar is distribution/reference's (the one ``docker pull`` uses)::

    reference  := name [ ":" tag ] [ "@" digest ]
    name       := [ domain "/" ] path-component ( "/" path-component )*
    domain     := host [ ":" port ]
    tag        := [\\w][\\w.-]{0,127}
    digest     := algorithm ":" hex

Names are normalised the way Flux's image-reflector-controller does it (it uses
go-containerregistry, whose Docker Hub host is ``index.docker.io``): ``nginx`` has
the canonical name ``index.docker.io/library/nginx``. Every Docker Hub alias
(``docker.io``, ``registry-1.docker.io``, ``index.docker.io``) becomes
``index.docker.io``, so one image has one name whichever spelling a pod spec,
a scanner or a registry snapshot used.

Kubernetes reports what actually ran in ``status.containerStatuses[].imageID``;
:func:`parse_image_id` reads its three real-world forms.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from repoaudit.errors import ConfigError

__all__ = [
    "DOCKER_HUB",
    "DOCKER_HUB_ALIASES",
    "DIGEST_HEX_LENGTHS",
    "NAME_TOTAL_LENGTH_MAX",
    "ImageReference",
    "is_docker_hub",
    "is_valid_digest",
    "is_valid_repository",
    "is_valid_tag",
    "parse_image_id",
    "parse_reference",
    "validate_digest",
]

DOCKER_HUB = "index.docker.io"
DOCKER_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})

# distribution/reference caps a repository's path (the name without its domain) at 255 characters.
NAME_TOTAL_LENGTH_MAX = 255

_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_RE = re.compile(
    rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?"
)
# The one home of the name, tag and digest grammars (model.documents, the collector and retention
# apply use these). distribution's \w is ASCII; Python's would accept any Unicode letter.
_PATH_COMPONENT_RE = re.compile(r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*", re.ASCII)
_TAG_RE = re.compile(r"[\w][\w.-]{0,127}", re.ASCII)
_IDENTIFIER_RE = re.compile(r"[a-f0-9]{64}")
# go-digest only registers these; anything else is ErrDigestUnsupported in Docker.
DIGEST_HEX_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}
_HEX_RE = re.compile(r"[a-f0-9]+")


def is_valid_repository(value: object) -> bool:
    """A repository name (no registry host): lowercase path components joined by ``/``, at most 255 characters."""
    return (isinstance(value, str) and 0 < len(value) <= NAME_TOTAL_LENGTH_MAX
            and all(_PATH_COMPONENT_RE.fullmatch(c) for c in value.split("/")))


def is_valid_tag(value: object) -> bool:
    """A tag: ``[A-Za-z0-9_][A-Za-z0-9_.-]``, at most 128 characters."""
    return isinstance(value, str) and _TAG_RE.fullmatch(value) is not None


def is_valid_digest(value: object) -> bool:
    """``algorithm:hex`` with a registered algorithm and its exact hex length (:func:`validate_digest` says why not)."""
    if not isinstance(value, str):
        return False
    algorithm, sep, hex_part = value.partition(":")
    return bool(sep) and DIGEST_HEX_LENGTHS.get(algorithm) == len(hex_part) and _HEX_RE.fullmatch(hex_part) is not None


@dataclass(frozen=True)
class ImageReference:
    """A parsed image reference; ``registry`` is already normalised (Docker Hub → ``index.docker.io``)."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """``registry/repository`` without tag or digest."""
        return f"{self.registry}/{self.repository}"

    @property
    def canonical(self) -> str:
        """Flux's ``canonicalImageName``: ``nginx`` → ``index.docker.io/library/nginx``."""
        return f"{self.registry}/{self.repository}"

    @property
    def effective_tag(self) -> str | None:
        """The tag a runtime pulls: None when there is a digest, else the given tag or ``latest``.

        ``name:tag@digest`` keeps its tag when parsed (distribution/reference's Parse returns
        both), but Docker and the kubelet pull it by digest alone and drop the tag (Docker's
        ``TagNameOnly`` only adds ``latest`` to a reference with neither), so the tag names
        nothing that ran.
        """
        if self.digest is not None:
            return None
        return self.tag if self.tag is not None else "latest"

    @property
    def pulled(self) -> str:
        """The reference as a runtime resolves it: ``name@digest`` when there is a digest (the
        tag dropped), else ``name:tag`` (``latest`` when none was given)."""
        if self.digest is not None:
            return f"{self.name}@{self.digest}"
        return f"{self.name}:{self.effective_tag}"

    def __str__(self) -> str:
        text = self.name
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text


def is_docker_hub(registry: str | None) -> bool:
    """True when ``registry`` is one of Docker Hub's host names (case-insensitive)."""
    return bool(registry) and registry.lower() in DOCKER_HUB_ALIASES


def _invalid(text: str, why: str) -> ConfigError:
    error = ConfigError(f"invalid reference {text!r}: {why}")
    # Kept apart from the message so parse_image_id can restate it for an imageID.
    error.reason = why
    return error


def validate_digest(digest: str, *, text: str | None = None) -> str:
    """Return ``digest`` if it is ``algorithm:hex`` with a supported algorithm, else raise ConfigError."""
    where = digest if text is None else text
    algorithm, sep, hex_part = digest.partition(":")
    if not sep or not algorithm or not hex_part:
        raise _invalid(where, f"digest {digest!r} is not of the form algorithm:hex")
    expected = DIGEST_HEX_LENGTHS.get(algorithm)
    if expected is None:
        raise _invalid(where, f"unsupported digest algorithm {algorithm!r} (expected sha256, sha384 or sha512)")
    if not _HEX_RE.fullmatch(hex_part):
        raise _invalid(where, f"{algorithm} digest must be lowercase hexadecimal")
    if len(hex_part) != expected:
        raise _invalid(where, f"{algorithm} digest must have {expected} hex characters, not {len(hex_part)}")
    return digest


def _split_domain(text: str, name: str, docker: bool) -> tuple[str, str]:
    slash = name.find("/")
    if slash == -1:
        return DOCKER_HUB, name
    first = name[:slash]
    # distribution/reference's splitDockerDomain (Docker, the kubelet) also takes an upper-case
    # first component as a host ("LOCALDOMAIN/debian"); go-containerregistry (Flux) does not, and
    # its repository must then be lowercase. Both take "localhost".
    if "." in first or ":" in first or first == "localhost" or (docker and first.lower() != first):
        if not _DOMAIN_RE.fullmatch(first):
            raise _invalid(text, f"registry host {first!r} is not a valid host[:port]")
        return first, name[slash + 1 :]
    return DOCKER_HUB, name


def parse_reference(text: str, *, flux: bool = False) -> ImageReference:
    """Parse an image reference such as ``nginx``, ``ghcr.io/org/app:1.2`` or ``repo:tag@sha256:…``.

    Docker Hub names are normalised to ``index.docker.io`` with the ``library/`` prefix
    for single-component names. A missing tag stays ``None`` (see
    :attr:`ImageReference.effective_tag`). Raises :class:`ConfigError` saying why the
    reference is invalid. ``flux=True`` reads the host as go-containerregistry does (Flux's
    ImageRepository): an upper-case first component is no host, so ``MyOrg/app`` is refused,
    where Docker and the kubelet read ``MyOrg`` as a registry host.
    """
    if not isinstance(text, str):
        raise ConfigError(f"invalid reference {text!r}: expected a string, got {type(text).__name__}")
    if not text:
        raise _invalid(text, "reference is empty")
    if text != text.strip() or any(c.isspace() for c in text):
        raise _invalid(text, "reference contains whitespace")
    if "://" in text:
        raise _invalid(text, "reference must not contain a URL scheme")
    if _IDENTIFIER_RE.fullmatch(text):
        raise _invalid(text, "a 64-character hex string is an image ID, not a repository name")

    name, at, digest = text.partition("@")
    if at:
        if "@" in digest:
            raise _invalid(text, "more than one '@'")
        validate_digest(digest, text=text)
    else:
        digest = None

    tag: str | None = None
    colon = name.rfind(":")
    if colon > name.rfind("/"):
        name, tag = name[:colon], name[colon + 1 :]
        if not tag:
            raise _invalid(text, "tag is empty")
        if len(tag) > 128:
            raise _invalid(text, f"tag is {len(tag)} characters long (at most 128)")
        if not _TAG_RE.fullmatch(tag):
            raise _invalid(text, f"tag {tag!r} must match [A-Za-z0-9_][A-Za-z0-9_.-]*")

    if not name:
        raise _invalid(text, "repository name is empty")
    registry, repository = _split_domain(text, name, docker=not flux)
    if not repository:
        raise _invalid(text, "repository name is empty")
    if repository.lower() != repository:
        raise _invalid(text, "repository name must be lowercase")
    for component in repository.split("/"):
        if not component:
            raise _invalid(text, "repository name has an empty path component ('//' or a trailing '/')")
        if not _PATH_COMPONENT_RE.fullmatch(component):
            raise _invalid(
                text,
                f"path component {component!r} must be lowercase letters and digits"
                " joined by '.', '_', '__' or '-'",
            )
    if is_docker_hub(registry):
        registry = DOCKER_HUB
        if "/" not in repository:
            repository = f"library/{repository}"
    # distribution/reference's Parse caps the path, not the domain (RepositoryNameTotalLengthMax), and
    # ParseNormalizedNamed checks it after "library/" is added.
    if len(repository) > NAME_TOTAL_LENGTH_MAX:
        raise _invalid(text, f"repository path is {len(repository)} characters long "
                             f"(at most {NAME_TOTAL_LENGTH_MAX})")
    return ImageReference(registry=registry, repository=repository, tag=tag, digest=digest)


# Legacy dockershim prefixes; containerd and CRI-O report the bare forms.
_IMAGE_ID_PREFIXES = ("docker-pullable://", "docker://")


def parse_image_id(text: str | None) -> tuple[ImageReference | None, str | None, str]:
    """Read a Kubernetes ``containerStatuses[].imageID``.

    Returns ``(reference, digest, kind)``:

    * ``docker.io/x@sha256:…`` or ``docker-pullable://x@sha256:…`` →
      ``(ImageReference with digest, digest, "repo-digest")``: a registry manifest
      (or index) digest that can be joined with registry snapshots;
    * ``sha256:…`` or ``docker://sha256:…`` → ``(None, digest, "image-id")``: the local
      image ID, i.e. the *config* digest, which is not a manifest digest;
    * ``""`` / ``None`` (container not started yet) → ``(None, None, "empty")``.

    Anything else raises :class:`ConfigError`.
    """
    if not text:
        return None, None, "empty"
    if not isinstance(text, str):
        raise ConfigError(f"invalid imageID {text!r}: expected a string, got {type(text).__name__}")
    value = text
    for prefix in _IMAGE_ID_PREFIXES:
        if value.startswith(prefix):
            value = value[len(prefix) :]
            break
    algorithm = value.partition(":")[0]
    try:
        if algorithm in DIGEST_HEX_LENGTHS and "/" not in value and "@" not in value:
            return None, validate_digest(value), "image-id"
        ref = parse_reference(value)
    except ConfigError as exc:
        raise ConfigError(f"invalid imageID {text!r}: {getattr(exc, 'reason', exc)}") from None
    if ref.digest is None:
        raise ConfigError(f"invalid imageID {text!r}: no @digest")
    return ref, ref.digest, "repo-digest"
