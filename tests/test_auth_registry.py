"""Authentication against the real Distribution registry: htpasswd, token auth, TLS, and redirects.

Token mode runs a real token server (``tokenserver.py``) whose JWTs the registry
verifies against its ``rootcertbundle``, so these tests fail if repoaudit's token
handshake differs from what Docker's clients do. Faults a real registry will not
produce (a blob redirect to another host) use ``httpx.MockTransport``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import ssl

import httpx
import pytest

from pusher import Pusher, layer_bytes
from registry import RegistryServer
from repoaudit.sources.auth import scope_for
from repoaudit.sources.registry import RegistryClient
from repoaudit.model.options import ClientOptions, parse_target
from repoaudit.errors import AuthenticationError, RegistryUnreachable
from repoaudit.jobs.flux import load_flux
from repoaudit.model.retry import NO_BACKOFF
from tokenserver import StaticBearer, TokenServer, make_pki

USER, PASSWORD = "alice", "correct-horse-battery"
WRONG = "wrong-password-never-printed"


def client_for(url: str, **options) -> RegistryClient:
    return RegistryClient(parse_target(url), ClientOptions(retry=NO_BACKOFF, **options))


def run(client: RegistryClient, steps):
    """Run ``await steps(client)`` on a fresh event loop and close the client."""
    async def main():
        try:
            return await steps(client)
        finally:
            await client.aclose()
    return asyncio.run(main())


def client_lines(server: RegistryServer, status: int | None = None) -> list[str]:
    """Access-log lines of repoaudit's own requests (the pusher and probe send other User-Agents)."""
    lines = [line for line in server.access_log_lines() if '"repoaudit/' in line]
    return [line for line in lines if f'" {status} ' in line] if status is not None else lines


# -- htpasswd ------------------------------------------------------------------------


@pytest.fixture
def basic_registry(tmp_path):
    server = RegistryServer(tmp_path / "registry", htpasswd={USER: PASSWORD})
    server.start()
    try:
        with Pusher(server.url, auth=(USER, PASSWORD)) as pusher:
            image = pusher.push_image("team/app", ["1.0", "latest"], layers=[layer_bytes("basic", 1500)])
        yield server, image
    finally:
        server.stop()


def test_htpasswd_catalog_tags_manifest_blob(basic_registry):
    server, image = basic_registry

    async def steps(client):
        return (await client.list_repositories(), sorted(await client.list_tags("team/app")),
                await client.get_manifest("team/app", "1.0"), await client.head_manifest("team/app", "latest"),
                await client.get_blob("team/app", image.config.digest))

    repositories, tags, manifest, head, config = run(client_for(server.url, username=USER, password=PASSWORD), steps)
    assert repositories == ["team/app"] and tags == ["1.0", "latest"]
    assert manifest.body == image.manifest and manifest.digest == image.digest
    assert head == image.digest
    assert len(config) == image.config.size
    # One challenge, then Basic is sent up front to that host.
    assert len(client_lines(server, 401)) == 1
    assert len(client_lines(server)) == 6


def test_htpasswd_wrong_password(basic_registry):
    server, _ = basic_registry
    with pytest.raises(AuthenticationError) as info:
        run(client_for(server.url, username=USER, password=WRONG), lambda c: c.list_tags("team/app"))
    assert "credentials refused" in str(info.value)
    assert WRONG not in str(info.value) and WRONG not in repr(info.value)


def test_htpasswd_without_credentials(basic_registry):
    server, _ = basic_registry
    with pytest.raises(AuthenticationError, match="authentication required"):
        run(client_for(server.url), lambda c: c.list_repositories())


# -- token auth ------------------------------------------------------------------------


def start_token_registry(tmp_path, **token_options):
    tokens = TokenServer(tmp_path / "tokens", **token_options)
    tokens.start()
    server = RegistryServer(tmp_path / "registry", token=tokens.registry_config())
    server.start()
    return tokens, server


def push_with_token(tokens: TokenServer, server: RegistryServer, repository: str, tags=("1.0",)):
    token = tokens.issue("pusher", [("repository", repository, ["pull", "push"])])
    with Pusher(server.url, auth=StaticBearer(token)) as pusher:
        return pusher.push_image(repository, list(tags), layers=[layer_bytes(repository, 800)])


@pytest.fixture
def token_registry(tmp_path):
    tokens, server = start_token_registry(tmp_path, users={USER: PASSWORD})
    try:
        image = push_with_token(tokens, server, "team/app")
        push_with_token(tokens, server, "team/api")
        yield tokens, server, image
    finally:
        server.stop()
        tokens.stop()


def test_token_per_scope_and_cached(token_registry):
    tokens, server, image = token_registry

    async def steps(client):
        await client.ping()
        catalog = await client.list_repositories()
        tags = await client.list_tags("team/app")
        manifest = await client.get_manifest("team/app", "1.0")
        blob = await client.get_blob("team/app", image.layers[0].digest)
        await client.list_tags("team/app")
        await client.list_repositories()
        return catalog, tags, manifest, blob

    catalog, tags, manifest, blob = run(client_for(server.url, username=USER, password=PASSWORD), steps)
    assert sorted(catalog) == ["team/api", "team/app"] and tags == ["1.0"]
    assert manifest.body == image.manifest and len(blob) == image.layers[0].size
    # One token per scope; the ping's token has no scope. Later requests reuse them.
    assert tokens.scopes_requested() == [(), ("registry:catalog:*",), ("repository:team/app:pull",)]
    assert all(r.authorization and r.user == USER and r.status == 200 for r in tokens.requests)
    # Only the ping meets a challenge: once the host is known to want tokens, the
    # client fetches a new scope's token before asking, instead of after a 401.
    assert len(client_lines(server, 401)) == 1


def test_concurrent_requests_share_one_token_fetch(token_registry):
    tokens, server, _ = token_registry

    async def steps(client):
        await client.ping()
        await asyncio.gather(*(client.get_manifest("team/app", "1.0") for _ in range(8)))

    run(client_for(server.url, username=USER, password=PASSWORD), steps)
    # The collector fetches many manifests of one repository at once; each must not
    # fetch its own copy of the same token.
    assert tokens.scopes_requested() == [(), ("repository:team/app:pull",)]


def test_unreachable_token_endpoint_is_named(tmp_path):
    tokens, server = start_token_registry(tmp_path, users={USER: PASSWORD})
    try:
        push_with_token(tokens, server, "team/app")
        realm = httpx.URL(tokens.realm)
        tokens.stop()
        with pytest.raises(RegistryUnreachable) as info:
            run(client_for(server.url, username=USER, password=PASSWORD), lambda c: c.list_tags("team/app"))
        # The registry answered; it is the token endpoint that cannot be reached.
        assert f"{realm.host}:{realm.port}" in str(info.value)
    finally:
        server.stop()
        tokens.stop()


def test_token_scope_from_challenge_without_ping(token_registry):
    tokens, server, _ = token_registry

    async def steps(client):
        await client.list_tags("team/app")
        await client.list_tags("team/api")
        await client.list_tags("team/app")

    run(client_for(server.url, username=USER, password=PASSWORD), steps)
    assert tokens.scopes_requested() == [("repository:team/app:pull",), ("repository:team/api:pull",)]


def test_token_wrong_password(token_registry):
    tokens, server, _ = token_registry
    with pytest.raises(AuthenticationError) as info:
        run(client_for(server.url, username=USER, password=WRONG), lambda c: c.list_tags("team/app"))
    assert "refused the credentials" in str(info.value) and "HTTP 401" in str(info.value)
    assert WRONG not in str(info.value)
    assert [(r.authorization, r.status) for r in tokens.requests] == [(True, 401)]


def test_token_without_credentials_when_anonymous_is_refused(token_registry):
    tokens, server, _ = token_registry
    with pytest.raises(AuthenticationError):
        run(client_for(server.url), lambda c: c.list_tags("team/app"))
    assert [(r.authorization, r.status) for r in tokens.requests] == [(False, 401)]


def test_anonymous_tokens(tmp_path):
    tokens, server = start_token_registry(tmp_path, anonymous=True)
    try:
        image = push_with_token(tokens, server, "public/app")

        async def steps(client):
            tags = await client.list_tags("public/app")
            manifest = await client.get_manifest("public/app", "1.0")
            return tags, manifest

        tags, manifest = run(client_for(server.url), steps)
        assert tags == ["1.0"] and manifest.digest == image.digest
        assert [(r.scopes, r.authorization, r.user) for r in tokens.requests] == [
            (("repository:public/app:pull",), False, None)]

        # An anonymous token carries no catalog access: the registry refuses it.
        with pytest.raises(AuthenticationError, match="authentication required"):
            run(client_for(server.url), lambda c: c.list_repositories())
    finally:
        server.stop()
        tokens.stop()


def test_expired_token_is_fetched_again(tmp_path):
    # expires_in 11 leaves the client one second of use (it renews 10 s early);
    # the registry would still accept the old token for a minute (60 s leeway).
    tokens, server = start_token_registry(tmp_path, users={USER: PASSWORD}, expires_in=11)
    try:
        push_with_token(tokens, server, "team/app")

        async def steps(client):
            await client.list_tags("team/app")
            await client.list_tags("team/app")
            assert len(tokens.requests) == 1
            await asyncio.sleep(1.3)
            await client.list_tags("team/app")

        run(client_for(server.url, username=USER, password=PASSWORD), steps)
        assert tokens.scopes_requested() == [("repository:team/app:pull",)] * 2
        assert len(client_lines(server, 401)) == 1  # the renewal happened before the request, not after a 401
    finally:
        server.stop()
        tokens.stop()


def test_missing_expires_in_means_60_seconds(tmp_path):
    tokens, server = start_token_registry(tmp_path, users={USER: PASSWORD}, reported_expires_in=False)
    try:
        push_with_token(tokens, server, "team/app")

        async def steps(client):
            for _ in range(3):
                await client.list_tags("team/app")

        run(client_for(server.url, username=USER, password=PASSWORD), steps)
        assert len(tokens.requests) == 1
    finally:
        server.stop()
        tokens.stop()


def test_identity_token_uses_oauth2_refresh_grant(tmp_path):
    tokens, server = start_token_registry(tmp_path, refresh_tokens={"refresh-123": USER})
    try:
        push_with_token(tokens, server, "team/app")
        tags = run(client_for(server.url, identity_token="refresh-123"), lambda c: c.list_tags("team/app"))
        assert tags == ["1.0"]
        assert [(r.method, r.grant_type, r.user, r.scopes) for r in tokens.requests] == [
            ("POST", "refresh_token", USER, ("repository:team/app:pull",))]

        with pytest.raises(AuthenticationError):
            run(client_for(server.url, identity_token="revoked"), lambda c: c.list_tags("team/app"))
    finally:
        server.stop()
        tokens.stop()


@pytest.mark.parametrize("algorithm, key_header", [("ES256", "x5c"), ("ES256", "kid"), ("RS256", "kid")])
def test_token_signing_variants_accepted_by_registry(tmp_path, algorithm, key_header):
    tokens, server = start_token_registry(tmp_path, users={USER: PASSWORD}, algorithm=algorithm,
                                          key_header=key_header)
    try:
        push_with_token(tokens, server, "team/app")
        assert run(client_for(server.url, username=USER, password=PASSWORD),
                   lambda c: c.list_tags("team/app")) == ["1.0"]
    finally:
        server.stop()
        tokens.stop()


# -- scope of repositories whose names contain an endpoint word ------------------------


@pytest.mark.parametrize("path, scope", [
    ("/v2/team/tags/app/tags/list", "repository:team/tags/app:pull"),
    ("/v2/team/manifests/app/manifests/latest", "repository:team/manifests/app:pull"),
    ("/v2/blobs/store/blobs/sha256:abc", "repository:blobs/store:pull"),
    ("/v2/team/app/tags/list", "repository:team/app:pull"),
    ("/v2/_catalog", "registry:catalog:*"),
    ("/v2/", None),
])
def test_scope_for_repository_paths(path, scope):
    assert scope_for(httpx.URL(f"https://registry.example.test{path}")) == scope


def test_repository_named_tags_gets_one_token(tmp_path):
    tokens, server = start_token_registry(tmp_path, users={USER: PASSWORD})
    try:
        push_with_token(tokens, server, "team/tags/app")

        async def steps(client):
            await client.ping()
            await client.list_tags("team/tags/app")
            await client.list_tags("team/tags/app")

        run(client_for(server.url, username=USER, password=PASSWORD), steps)
        assert tokens.scopes_requested() == [(), ("repository:team/tags/app:pull",)]
    finally:
        server.stop()
        tokens.stop()


# -- TLS, configured the Flux way ------------------------------------------------------


def test_tls_registry_with_flux_secret_and_cert_secret(tmp_path):
    pki = make_pki(tmp_path / "pki")
    server = RegistryServer(tmp_path / "registry", tls=pki.server, htpasswd={USER: PASSWORD})
    server.start()
    try:
        trust = ssl.create_default_context(cafile=str(pki.ca_cert))
        with Pusher(server.url, auth=(USER, PASSWORD), verify=trust) as pusher:
            pusher.push_image("team/app", ["2.0"])
        dockerconfig = {"auths": {server.host: {"auth": base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}}}
        manifests = [
            {"apiVersion": "image.toolkit.fluxcd.io/v1", "kind": "ImageRepository",
             "metadata": {"name": "app", "namespace": "team"},
             "spec": {"image": f"{server.host}/team/app", "interval": "5m", "timeout": "20s",
                      "secretRef": {"name": "regcred"}, "certSecretRef": {"name": "registry-ca"}}},
            {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
             "metadata": {"name": "regcred", "namespace": "team"},
             "data": {".dockerconfigjson": base64.b64encode(json.dumps(dockerconfig).encode()).decode()}},
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "registry-ca", "namespace": "team"},
             "stringData": {"ca.crt": pki.ca_cert.read_text()}},
        ]
        path = tmp_path / "flux.yaml"
        path.write_text("---\n".join(json.dumps(doc) + "\n" for doc in manifests))
        (job,) = load_flux([path])
        assert job.registry_url == server.url

        client = RegistryClient(job.target, job.client_options(ClientOptions(retry=NO_BACKOFF)))
        assert run(client, lambda c: c.list_tags("team/app")) == ["2.0"]

        # Without the CA the certificate cannot be verified.
        with pytest.raises(RegistryUnreachable):
            run(client_for(server.url, username=USER, password=PASSWORD), lambda c: c.list_tags("team/app"))
    finally:
        server.stop()


# -- credentials never follow a redirect to another host -------------------------------

BLOB = b"blob bytes served from object storage"
BLOB_DIGEST = "sha256:" + hashlib.sha256(BLOB).hexdigest()


def redirecting_registry(scheme: str, seen: list[httpx.Request]):
    """A registry whose blob GET answers 307 to a storage host, as S3/GCS-backed registries do."""
    token = "registry-token"
    basic = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        host = request.url.host
        if host == "auth.example.test":
            if request.headers.get("authorization") != basic:
                return httpx.Response(401)
            return httpx.Response(200, json={"token": token, "expires_in": 300})
        if host == "storage.example.test":
            return httpx.Response(200, content=BLOB)
        expected = f"Bearer {token}" if scheme == "bearer" else basic
        if request.headers.get("authorization") != expected:
            challenge = ('Bearer realm="https://auth.example.test/token",service="registry.example.test"'
                         if scheme == "bearer" else 'Basic realm="registry"')
            return httpx.Response(401, headers={"WWW-Authenticate": challenge})
        if request.url.path.startswith("/v2/team/app/blobs/"):
            return httpx.Response(307, headers={"Location": "https://storage.example.test/b/1?sig=abc"})
        return httpx.Response(200, json={})

    return handler


@pytest.mark.parametrize("scheme", ["bearer", "basic"])
def test_authorization_is_not_sent_to_redirect_host(scheme):
    seen: list[httpx.Request] = []
    client = RegistryClient(parse_target("https://registry.example.test"),
                            ClientOptions(username=USER, password=PASSWORD, retry=NO_BACKOFF),
                            transport=httpx.MockTransport(redirecting_registry(scheme, seen)))
    assert run(client, lambda c: c.get_blob("team/app", BLOB_DIGEST)) == BLOB

    storage = [r for r in seen if r.url.host == "storage.example.test"]
    assert len(storage) == 1
    assert "authorization" not in storage[0].headers
    registry = [r for r in seen if r.url.host == "registry.example.test"]
    assert registry[-1].headers.get("authorization", "").startswith("Bearer " if scheme == "bearer" else "Basic ")
    # The password only ever goes to the registry (basic) or its token realm (bearer).
    password_hosts = {r.url.host for r in seen if r.headers.get("authorization", "").startswith("Basic ")}
    assert password_hosts == ({"auth.example.test"} if scheme == "bearer" else {"registry.example.test"})
