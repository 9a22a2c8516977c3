"""A source for a target: the one place that knows both implementations (they never import each other)."""

from __future__ import annotations

from repoaudit.model.options import ClientOptions, Target, parse_target
from repoaudit.sources.base import Source
from repoaudit.sources.ocilayout import OCILayoutSource
from repoaudit.sources.registry import RegistryClient
from repoaudit.sources.storage import RegistryStorageSource


def open_source(target: Target | str, options: ClientOptions | None = None, **client_kw) -> Source:
    """A source for a URL (``https://…``, ``http://…``, ``oci:PATH``, ``registry-storage:PATH``) or a parsed
    :class:`Target`."""
    if isinstance(target, str):
        target = parse_target(target)
    if target.kind == "oci-layout":
        return OCILayoutSource(target)
    if target.kind == "registry-storage":
        return RegistryStorageSource(target)
    return RegistryClient(target, options, **client_kw)

