"""The supply-chain step of a collection: what refers to each image, and offline verdicts on its signatures.

The collector hands every manifest it stores to :meth:`SupplyChain.stored`, which classifies referrers
(signatures, attestations, SBOMs: :mod:`repoaudit.model.supply`) and labels those the manifest itself does
not mark as artifacts, so inventory queries never count them as images; their blobs still count in storage
like any manifest's. After each repository's tags are resolved, :meth:`SupplyChain.repository`

- asks the OCI 1.1 referrers API about each digest first stored by this run (not on Distribution 2.8,
  which answers 404: then the registry is never asked again in the run), and stores what it lists;
- verifies every cosign signature (``sha256-<hex>.sig``, or a cosign signature the API listed) against the
  trusted keys it has no verdict for yet: signature manifests are content-addressed, so an unchanged one is
  verified once per key, and a key added later is checked against signatures stored before.

The links themselves (which subject each referrer refers to, per snapshot) are written at commit from the
snapshot's own tags (``link_referrers`` in referrers.sql): a new signature changes the ``.sig`` or fallback
tag's digest, which the incremental HEAD already sees.
"""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import duckdb

from repoaudit.collect.digests import DigestSet
from repoaudit.errors import InvalidDocument, LimitExceeded, RepoauditError
from repoaudit.model.manifest import Manifest, parse_manifest
from repoaudit.model.signatures import MAX_PAYLOAD, TrustedKey, TrustRule, verify_layer
from repoaudit.model.supply import (
    COSIGN_SIMPLESIGNING,
    Classified,
    classify,
    subject_of_tag,
)
from repoaudit.model.timestamps import utc_naive
from repoaudit.sources.base import Source
from repoaudit.store.database import to_json
from repoaudit.store.sql import statements
from repoaudit.store.writer import SnapshotWriter

SQL = statements(__package__, "referrers.sql")

def _verdict_key(signature: str, subject: str, fingerprint: str | None) -> str:
    """One verdict's identity as one string, for a DigestSet: digests and fingerprints hold no space."""
    return f"{signature} {subject} {fingerprint or ''}"


# The artifact_type given to a fallback tag's index, which marks nothing itself: it is no image.
REFERRERS_INDEX = "(referrers index)"


class SupplyChain:
    """The supply-chain state of one collection. Its rows (referrer facts, API links, verdicts) go to the
    snapshot writer as they are found, staged like the snapshot's other rows; what it remembers across
    repositories is kept as 64-bit keys (:class:`DigestSet`), so that a registry where every image is signed
    costs it no more memory per tag than one where none is."""

    def __init__(self, writer: SnapshotWriter, keys: tuple[TrustedKey, ...] = (), trust: tuple[TrustRule, ...] = ()):
        self.writer = writer
        self.registry = writer.registry
        self.snapshot_id = writer.snapshot_id
        self.keys = keys
        self.trust = trust
        self.referrer_indexes: set[str] = set()  # fallback tags' indexes: a few per signed repository
        self.new_images = DigestSet()  # images first stored by this run: the referrers API is asked about these
        # Cosign signature manifests stored and not yet verified; each is dropped once its repository's
        # verification has read it (another repository needing it again fetches it again).
        self._signatures: dict[str, Manifest] = {}
        # (signature, subject, key fingerprint or "" for keyless) verdicts made, before this run or in it.
        self._verified = DigestSet()
        cursor = writer.con.execute(SQL["known_verifications"], {"registry": self.registry})
        while rows := cursor.fetchmany(10_000):
            for row in rows:
                self._verified.add(_verdict_key(*row))
        # Per source: whether it has a referrers API (False: it answered 404), or the first ask, still in flight:
        # repositories resolved meanwhile wait for its answer instead of each asking a registry without one.
        self._api: dict[int, bool | asyncio.Future] = {}

    # -- while manifests are stored ------------------------------------------------------------------------
    def stored(self, m: Manifest) -> Classified | None:
        """Classify a manifest being stored; a referrer gets a ``referrers`` row and an artifact type."""
        if m.is_index and m.digest in self.referrer_indexes:
            m.artifact_type = m.artifact_type or REFERRERS_INDEX
            return None
        found = classify(m)
        if found is None:
            if m.kind in ("image", "index"):
                self.new_images.add(m.digest)
            return None
        if m.artifact_type is None:
            # e.g. cosign's .att and .sbom manifests carry an ordinary image config type: still no image.
            m.artifact_type = next((l.media_type for l in m.layers if l.media_type), found.category)
        if found.category == "signature" and found.scheme == "cosign":
            self._signatures[m.digest] = m
        self.writer.add("referrers", (self.registry, m.digest, found.category, found.scheme, found.predicate_type,
                           found.predicate, m.artifact_type, to_json([l.media_type for l in m.layers]),
                           to_json(m.annotations), utc_naive(m.annotations.get("org.opencontainers.image.created")),
                           self.snapshot_id))
        return found

    def tag_seen(self, tag: str, digest: str) -> None:
        """Called before a tag's manifest is stored: a fallback tag's index is marked as no image."""
        found = subject_of_tag(tag)
        if found is not None and found[1] is None:
            self.referrer_indexes.add(digest)

    async def _ask(self, source: Source, lister, repository: str, digest: str):
        """The referrers of ``digest``, or None where the source has no referrers API; a source's first ask
        goes alone (one that fails leaves the question open for the next)."""
        key = id(source)
        while isinstance(state := self._api.get(key), asyncio.Future):
            await state
        if state is False:
            return None
        if state is True:
            return await lister(repository, digest)
        first = asyncio.get_running_loop().create_future()
        self._api[key] = first
        try:
            listed = await lister(repository, digest)
            self._api[key] = listed is not None
            return listed
        finally:
            if self._api.get(key) is first:
                del self._api[key]
            first.set_result(None)

    # -- after a repository's tags are resolved -----------------------------------------------------------
    async def repository(self, source: Source, repository: str, tagged: list[tuple[str, str]],
                         ensure: Callable[[str, str], Awaitable[None]],
                         error: Callable[[str | None, str | None, BaseException], None]) -> None:
        signatures: list[tuple[str, str]] = []  # (subject, signature manifest)
        for tag, digest in tagged:
            found = subject_of_tag(tag)
            if found is not None and found[1] == "sig":
                signatures.append((found[0], digest))
        lister = getattr(source, "list_referrers", None)
        asked: set[str] = set()  # two tags of one image: the API is asked once
        for tag, digest in tagged:
            if lister is None or self._api.get(id(source)) is False:
                break
            if digest in asked or digest not in self.new_images or subject_of_tag(tag) is not None:
                continue
            asked.add(digest)
            try:
                listed = await self._ask(source, lister, repository, digest)
            except RepoauditError as exc:
                error(repository, digest, exc)
                continue
            if listed is None:
                break
            for d in listed:
                try:
                    await ensure(repository, d.digest)
                except RepoauditError as exc:
                    error(repository, d.digest, exc)
                    continue
                self.writer.add("referrer_links", (self.snapshot_id, self.registry, repository, digest, d.digest, "api"))
                if d.digest in self._signatures:
                    signatures.append((digest, d.digest))
        for subject, signature in dict.fromkeys(signatures):
            await self._verify(source, repository, subject, signature, error)
        for _, signature in signatures:
            self._signatures.pop(signature, None)

    async def _verify(self, source: Source, repository: str, subject: str, signature: str,
                      error: Callable[[str | None, str | None, BaseException], None]) -> None:
        keys = dict.fromkeys([*self.keys, *(r.key for r in self.trust if r.covers(repository))])
        wanted = [k for k in keys if _verdict_key(signature, subject, k.fingerprint) not in self._verified]
        keyless_done = _verdict_key(signature, subject, "") in self._verified
        # Keyless signatures are read when their manifest is first stored; keys, whenever one lacks a verdict.
        if not wanted and (keyless_done or signature not in self._signatures):
            return
        m = self._signatures.get(signature)
        try:
            if m is None:
                fetched = await source.get_manifest(repository, signature)
                m = parse_manifest(fetched.body, fetched.digest, fetched.media_type)
        except InvalidDocument as exc:
            self._record(repository, subject, signature, 0, [(k.fingerprint, f"signature manifest: {exc}")
                                                              for k in wanted])
            return
        except RepoauditError as exc:
            error(repository, signature, exc)  # not a verdict: the next run tries again
            return
        for position, layer in enumerate(m.layers):
            if layer.media_type != COSIGN_SIMPLESIGNING:
                continue
            payload, payload_error = None, None
            try:
                payload = await source.get_blob(repository, layer.digest)
                if len(payload) > MAX_PAYLOAD:
                    payload, payload_error = None, f"payload larger than {MAX_PAYLOAD:,} bytes"
            except (InvalidDocument, LimitExceeded) as exc:
                payload_error = f"payload unreadable: {exc}"
            except RepoauditError as exc:
                error(repository, layer.digest, exc)
                continue
            for v in verify_layer(position, layer.annotations, payload, payload_error, subject, tuple(wanted)):
                if v.key_fingerprint is None and keyless_done:
                    continue
                self.writer.add("signature_verifications", (
                    self.registry, repository, subject, signature, v.position, v.key_fingerprint, v.status, v.reason,
                    v.signed_digest, v.identity, v.issuer, self.snapshot_id))
        for k in wanted:
            self._verified.add(_verdict_key(signature, subject, k.fingerprint))
        self._verified.add(_verdict_key(signature, subject, ""))

    def _record(self, repository: str, subject: str, signature: str, position: int,
                verdicts: list[tuple[str, str]]) -> None:
        for fingerprint, reason in verdicts:
            self.writer.add("signature_verifications", (self.registry, repository, subject, signature, position,
                                                        fingerprint, "invalid", reason, None, None, None,
                                                        self.snapshot_id))
            self._verified.add(_verdict_key(signature, subject, fingerprint))

    # -- at commit, inside the snapshot's transaction -----------------------------------------------------
    def commit(self, con: duckdb.DuckDBPyConnection) -> None:
        """The snapshot's own links; its facts, API links and verdicts came in with its staged rows."""
        con.execute(SQL["link_referrers"], {"snapshot": self.snapshot_id, "registry": self.registry})
