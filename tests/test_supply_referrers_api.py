"""The OCI 1.1 referrers API, which Distribution 2.8 lacks: spoken by ``httpx.MockTransport`` per the spec."""
from __future__ import annotations

import asyncio
import base64
import json
from urllib.parse import quote

import httpx
from fakeregistry import FakeRegistry, digest_of
from supplychain import SIMPLESIGNING, new_key, payload_for, public_pem, sign_bytes

import repoaudit
from repoaudit.model.options import ClientOptions, parse_target
from repoaudit.model.retry import NO_BACKOFF
from repoaudit.model.signatures import load_public_key
from repoaudit.sources.registry import RegistryClient

URL = "https://registry.test"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
SIG_TYPE = "application/vnd.dev.cosign.artifact.sig.v1+json"
SPDX = "application/spdx+json"


def estate(private):
    """An image and two untagged referrers: a cosign signature (OCI 1.1 mode) and an SPDX SBOM."""
    fake = FakeRegistry()
    subject = fake.add_image("team/app", "v1")
    subject_desc = {"mediaType": OCI_MANIFEST, "digest": subject, "size": len(fake.manifests[subject])}
    fake.blobs[digest_of(b"{}")] = b"{}"
    empty = {"mediaType": "application/vnd.oci.empty.v1+json", "digest": digest_of(b"{}"), "size": 2}
    payload = payload_for("team/app", subject)
    fake.blobs[digest_of(payload)] = payload
    sig = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": SIG_TYPE, "config": empty,
                      "layers": [{"mediaType": SIMPLESIGNING, "digest": digest_of(payload), "size": len(payload),
                                  "annotations": {"dev.cosignproject.cosign/signature":
                                                  base64.b64encode(sign_bytes(private, payload)).decode()}}],
                      "subject": subject_desc}).encode()
    sbom_doc = b'{"spdxVersion": "SPDX-2.3"}'
    fake.blobs[digest_of(sbom_doc)] = sbom_doc
    sbom = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": SPDX, "config": empty,
                       "layers": [{"mediaType": SPDX, "digest": digest_of(sbom_doc), "size": len(sbom_doc)}],
                       "subject": subject_desc}).encode()
    referrers = [{"mediaType": OCI_MANIFEST, "digest": fake.add_manifest("team/app", None, body), "size": len(body),
                  "artifactType": kind} for body, kind in ((sig, SIG_TYPE), (sbom, SPDX))]
    return fake, subject, referrers


def serve_referrers(fake, subject, referrers, *, apply_filter=True, seen=None):
    """Two pages linked by ``Link: rel="next"``; the artifactType filter applied and announced, or ignored."""
    path = f"/v2/team/app/referrers/{subject}"

    def fault(request: httpx.Request):
        if request.url.path.startswith("/v2/team/app/referrers/"):
            if seen is not None:
                seen.append(str(request.url))
            if request.url.path != path:
                return httpx.Response(200, json={"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                                                 "manifests": []})
            wanted = request.url.params.get("artifactType")
            page = [referrers[1]] if request.url.params.get("last") else [referrers[0]]
            headers = {"Content-Type": "application/vnd.oci.image.index.v1+json"}
            if wanted and apply_filter:
                page = [d for d in page if d["artifactType"] == wanted]
                headers["OCI-Filters-Applied"] = "artifactType"
            if not request.url.params.get("last"):
                query = "last=1" + (f"&artifactType={quote(wanted, safe='')}" if wanted else "")
                headers["Link"] = f'<{path}?{query}>; rel="next"'
            return httpx.Response(200, headers=headers,
                                  json={"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                                        "manifests": page})
        return None

    fake.fault = fault


def client(fake):
    return RegistryClient(parse_target(URL), ClientOptions(retry=NO_BACKOFF), transport=fake.transport())


def list_referrers(fake, subject, artifact_type=None):
    async def go():
        c = client(fake)
        try:
            return await c.list_referrers("team/app", subject, artifact_type)
        finally:
            await c.aclose()
    return asyncio.run(go())


def test_referrers_api_pages_and_filters():
    fake, subject, referrers = estate(new_key())
    serve_referrers(fake, subject, referrers)
    assert [d.digest for d in list_referrers(fake, subject)] == [r["digest"] for r in referrers]
    assert [d.artifact_type for d in list_referrers(fake, subject)] == [SIG_TYPE, SPDX]
    assert [d.digest for d in list_referrers(fake, subject, SPDX)] == [referrers[1]["digest"]]
    # A registry that ignores the filter says so by not sending OCI-Filters-Applied: filtered here.
    serve_referrers(fake, subject, referrers, apply_filter=False)
    assert [d.digest for d in list_referrers(fake, subject, SPDX)] == [referrers[1]["digest"]]


def test_no_referrers_api_is_none():
    fake, subject, _ = estate(new_key())
    assert list_referrers(fake, subject) is None  # the fake answers 404, as Distribution 2.8 does


def test_collector_stores_and_verifies_api_referrers(tmp_path):
    private = new_key()
    fake, subject, referrers = estate(private)
    seen: list[str] = []
    serve_referrers(fake, subject, referrers, seen=seen)
    key = load_public_key(public_pem(private))
    with repoaudit.open(tmp_path / "api.duckdb") as audit:
        first = audit.collect(URL, transport=fake.transport(), retry=NO_BACKOFF, progress=False, verify_keys=[key])
        assert first.status == "complete"
        links = audit.con.execute("SELECT subject_digest, referrer_digest, via FROM referrer_links "
                                  "ORDER BY referrer_digest").fetchall()
        assert links == sorted((subject, r["digest"], "api") for r in referrers)
        verdict = audit.con.execute("SELECT status, subject_digest FROM signature_verifications").fetchall()
        assert verdict == [("valid", subject)]
        assert audit.query("sbom_coverage")["with_sbom"].tolist() == [1]
        asked = len(seen)
        assert asked == 2  # two pages for the one image; referrers themselves are not asked about

        # Incremental: nothing new, so the API is not asked again, and the links carry over.
        second = audit.collect(URL, transport=fake.transport(), retry=NO_BACKOFF, progress=False, verify_keys=[key])
        assert len(seen) == asked
        carried = audit.con.execute("SELECT count(*) FROM referrer_links WHERE snapshot_id = ? AND via = 'api'",
                                    [second.snapshot_id]).fetchone()[0]
        assert carried == 2
        assert audit.query("signature_coverage")["verified"].tolist() == [1]


def test_a_registry_without_the_api_is_asked_once_however_many_repositories_resolve_meanwhile(tmp_path):
    # Far away, every repository's tags resolve before the first 404 comes back: each used to ask too.
    fake = FakeRegistry()
    for n in range(12):
        fake.add_image(f"team/app{n}", "v1", layer=f"layer {n}".encode())

    async def far(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.02)
        return fake.handle(request)

    with repoaudit.open(tmp_path / "far.duckdb") as audit:
        result = audit.collect(URL, transport=httpx.MockTransport(far), retry=NO_BACKOFF, progress=False,
                               concurrency=16, max_concurrency=16)
    assert result.status == "complete" and result.tags == 12
    asked = [hit for hit in fake.hits.elements() if "/referrers/" in hit]
    assert len(asked) == 1, asked
