"""One interface for "a place images live", after regclient's ``scheme.API``.

:class:`~repoaudit.sources.registry.RegistryClient` and :class:`~repoaudit.sources.ocilayout.OCILayoutSource`
both implement it; the collector only ever sees a :class:`Source`. Both hand out
only values checked by :mod:`repoaudit.model.documents` (or raw strings the collector
checks: catalog names, tags), and raise nothing but :class:`~repoaudit.errors.RepoauditError`.
"""
from __future__ import annotations

from collections import Counter
from typing import Protocol

from repoaudit.errors import RegistryError
from repoaudit.model.manifest import FetchedManifest
from repoaudit.model.options import Target


class Source(Protocol):
    kind: str
    name: str  # the value of the ``registry`` column
    concurrency: int  # how many repositories the collector works on at once
    target: Target
    requests: Counter[str]
    rate_limit: dict[str, str]
    halted: RegistryError | None  # set once the source has stopped answering (the circuit breaker)

    async def ping(self) -> None: ...
    async def list_repositories(self) -> list[str]: ...
    async def list_tags(self, repository: str) -> list[str]: ...
    async def get_manifest(self, repository: str, reference: str) -> FetchedManifest: ...
    async def head_manifest(self, repository: str, reference: str) -> str | None: ...
    async def get_blob(self, repository: str, digest: str) -> bytes: ...
    async def delete_manifest(self, repository: str, digest: str) -> None: ...
    def set_request_budget(self, repository: str, tags: int) -> None: ...
    async def aclose(self) -> None: ...



class LocalSource:
    """What a source on this machine's disk (an OCI layout, a registry's storage) has nothing to close for."""

    async def aclose(self) -> None:
        pass

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.aclose()
