"""Faults a real registry will not produce on demand, through ``httpx.MockTransport``."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

import repoaudit
from fakeregistry import FakeRegistry, error
from repoaudit.sources.registry import RegistryClient, error_summary
from repoaudit.model.options import ClientOptions, parse_target
from repoaudit.errors import (ConfigError, DigestMismatch, InvalidResponse, NotFoundError, RegistryHTTPError,
                              RegistryUnreachable)
from repoaudit.sources.pagination import next_link
from repoaudit.model.retry import NO_BACKOFF, RetryPolicy, parse_retry_after

URL = "https://registry.test"


def make_client(fake: FakeRegistry, retry: RetryPolicy = NO_BACKOFF, sleeps: list | None = None) -> RegistryClient:
    async def sleep(seconds):
        if sleeps is not None:
            sleeps.append(seconds)

    return RegistryClient(parse_target(URL), ClientOptions(retry=retry), transport=fake.transport(), sleep=sleep)


def run(coro):
    return asyncio.run(coro)


@pytest.fixture
def fake():
    f = FakeRegistry()
    f.add_image("team/a", "1", b"a-layer")
    f.add_image("team/b", "1", b"b-layer")
    f.add_image("team/c", "1", b"c-layer")
    return f


def test_429_honours_retry_after(fake):
    calls = {"n": 0}

    def fault(request):
        if request.url.path.endswith("/tags/list") and calls["n"] < 2:
            calls["n"] += 1
            return error(429, "TOOMANYREQUESTS", "slow down", **{"Retry-After": "7"})
        return None

    fake.fault = fault
    sleeps: list[float] = []
    policy = RetryPolicy(backoff=0.1, max_retry_after=30)

    async def go():
        client = make_client(fake, policy, sleeps)
        try:
            return await client.list_tags("team/a")
        finally:
            await client.aclose()

    assert run(go()) == ["1"]
    assert sleeps == [7.0, 7.0]


def test_503_then_success(fake):
    state = {"n": 0}

    def fault(request):
        if "/manifests/" in request.url.path and state["n"] == 0:
            state["n"] += 1
            return error(503, "UNAVAILABLE", "try later")
        return None

    fake.fault = fault

    async def go():
        client = make_client(fake)
        try:
            return await client.get_manifest("team/a", "1")
        finally:
            await client.aclose()

    fetched = run(go())
    assert fetched.digest == fake.tags["team/a"]["1"]
    assert fake.hits["GET /v2/team/a/manifests/1"] == 2


def test_backoff_grows_and_is_bounded():
    policy = RetryPolicy(backoff=1.0, max_backoff=5.0, jitter=0.0)
    assert [policy.delay(n) for n in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    jittered = RetryPolicy(backoff=1.0, jitter=0.5)
    assert all(0.5 <= jittered.delay(1) <= 1.5 for _ in range(50))
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert parse_retry_after("garbage") is None


def test_one_repository_failing_forever_gives_partial_snapshot(fake, tmp_path):
    fake.fault = lambda r: error(500, "UNKNOWN", "boom") if r.url.path.startswith("/v2/team/b/") else None
    with repoaudit.open(tmp_path / "db.duckdb") as audit:
        result = audit.collect(URL, transport=fake.transport(), retry=NO_BACKOFF, progress=False)
        assert result.status == "partial"
        repos = audit.sql("SELECT repository, status, error FROM repositories ORDER BY repository")
        assert list(repos["status"]) == ["ok", "failed", "ok"]
        assert "HTTP 500" in repos["error"][1] and "UNKNOWN: boom" in repos["error"][1]
        assert f"after {NO_BACKOFF.attempts} tries" in repos["error"][1]
        errors = audit.sql("SELECT repository, error_type FROM collection_errors")
        assert errors.values.tolist() == [["team/b", "RegistryHTTPError"]]
        assert sorted(audit.sql("SELECT repository FROM images")["repository"]) == ["team/a", "team/c"]
        snap = audit.query("snapshots").iloc[0]
        assert snap["status"] == "partial" and snap["error_count"] == 1


def test_body_that_is_not_json(fake):
    fake.fault = lambda r: httpx.Response(200, content=b"<html>proxy login</html>") \
        if r.url.path == "/v2/_catalog" else None

    async def go():
        client = make_client(fake)
        try:
            await client.list_repositories()
        finally:
            await client.aclose()

    with pytest.raises(InvalidResponse, match=r"catalog /v2/_catalog is not JSON \(starts '<html>proxy login"):
        run(go())


def test_digest_mismatch_is_recorded_against_the_tag(fake, tmp_path):
    wrong = "sha256:" + "0" * 64

    def fault(request):
        if request.url.path == "/v2/team/a/manifests/1":
            body = fake.manifests[fake.tags["team/a"]["1"]]
            return httpx.Response(200, headers={"Docker-Content-Digest": wrong}, content=body)
        return None

    fake.fault = fault
    with repoaudit.open(tmp_path / "db.duckdb") as audit:
        result = audit.collect(URL, transport=fake.transport(), retry=NO_BACKOFF, progress=False)
        assert result.status == "partial"
        err = audit.sql("SELECT reference, error_type, error FROM collection_errors").iloc[0]
        assert err["reference"] == "1" and err["error_type"] == "DigestMismatch"
        assert wrong in err["error"]
        assert audit.sql("SELECT count(*) FROM manifests").iloc[0, 0] == 2


def test_blob_digest_mismatch(fake):
    d = next(iter(fake.blobs))
    fake.blobs[d] = b"tampered"

    async def go():
        client = make_client(fake)
        try:
            await client.get_blob("team/a", d)
        finally:
            await client.aclose()

    with pytest.raises(DigestMismatch):
        run(go())


def test_error_envelope_in_message(fake):
    async def go():
        client = make_client(fake)
        try:
            await client.get_manifest("team/a", "nope")
        finally:
            await client.aclose()

    with pytest.raises(NotFoundError) as info:
        run(go())
    assert str(info.value) == ("registry.test/team/a: manifest /v2/team/a/manifests/nope failed: "
                               "HTTP 404 Not Found: MANIFEST_UNKNOWN: manifest unknown")
    assert info.value.codes == ("MANIFEST_UNKNOWN",)


def test_error_summary_reads_detail_and_caps_body():
    resp = httpx.Response(400, json={"errors": [{"code": "PAGINATION_NUMBER_INVALID", "message": "invalid number",
                                                 "detail": {"n": 5000}}]})
    assert error_summary(resp) == ('HTTP 400 Bad Request: PAGINATION_NUMBER_INVALID: invalid number ({"n":5000})',
                                   ("PAGINATION_NUMBER_INVALID",))
    huge = httpx.Response(502, content=b"x" * 200_000)
    assert error_summary(huge) == ("HTTP 502 Bad Gateway", ())


def test_5xx_storm_gives_up_with_one_line(fake, tmp_path):
    fake.fault = lambda r: error(503, "UNAVAILABLE", "maintenance")
    with repoaudit.open(tmp_path / "db.duckdb") as audit:
        with pytest.raises(RegistryHTTPError, match=f"ping /v2/ failed after {NO_BACKOFF.attempts} tries: HTTP 503"):
            audit.collect(URL, transport=fake.transport(), retry=NO_BACKOFF, progress=False)
        snap = audit.query("snapshots").iloc[0]
        assert snap["status"] == "failed" and "HTTP 503" in snap["error"]
        assert audit.sql("SELECT count(*) FROM tags").iloc[0, 0] == 0


def test_unreachable_host_is_retried_then_reported():
    attempts = {"n": 0}

    def refuse(request):
        attempts["n"] += 1
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    async def go():
        client = RegistryClient(parse_target(URL), ClientOptions(retry=NO_BACKOFF),
                                transport=httpx.MockTransport(refuse))
        try:
            await client.ping()
        finally:
            await client.aclose()

    with pytest.raises(RegistryUnreachable, match=r"cannot reach https://registry.test: ConnectError: "
                                                  r"\[Errno 111\] Connection refused"):
        run(go())
    # A registry that never answered gets three tries, not the policy's eight: a wrong URL fails in seconds.
    assert attempts["n"] == 3 < NO_BACKOFF.attempts


def test_connection_errors_after_an_answer_get_every_try():
    attempts = {"n": 0}

    def flaky(request):
        if request.url.path == "/v2/":
            return httpx.Response(200)
        attempts["n"] += 1
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    async def go():
        client = RegistryClient(parse_target(URL), ClientOptions(retry=NO_BACKOFF),
                                transport=httpx.MockTransport(flaky))
        try:
            await client.ping()
            await client.list_tags("app")
        finally:
            await client.aclose()

    with pytest.raises(RegistryUnreachable):
        run(go())
    assert attempts["n"] == NO_BACKOFF.attempts


def test_link_header_relative_to_request():
    req = httpx.Request("GET", "https://r.test/v2/_catalog?n=2")
    resp = httpx.Response(200, request=req, headers={"Link": '</v2/_catalog?last=b&n=2>; rel="next"'})
    assert str(next_link(resp)) == "https://r.test/v2/_catalog?last=b&n=2"
    absolute = httpx.Response(200, request=req, headers={"Link": '<https://other.test/v2/_catalog?last=c>; rel=next'})
    assert str(next_link(absolute)) == "https://other.test/v2/_catalog?last=c"
    assert next_link(httpx.Response(200, request=req)) is None


@pytest.mark.parametrize("text, message", [
    ("ftp://host", "unsupported scheme 'ftp'"),
    ("https://", "no host"),
    ("https://host/v2/", "give the registry root"),
    ("oci:", "oci: needs a directory path"),
])
def test_bad_targets(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_target(text)


def test_targets_normalise():
    assert parse_target("registry.example.com").url == "https://registry.example.com"
    assert parse_target("http://127.0.0.1:5000").name == "127.0.0.1:5000"
    assert parse_target("oci:/tmp/x").kind == "oci-layout"


def test_docker_hub_rate_limit_headers_are_recorded(fake, tmp_path):
    def with_quota(request):
        response = fake.handle(request)
        response.headers["ratelimit-limit"] = "100;w=21600"
        response.headers["ratelimit-remaining"] = "76;w=21600"
        return response

    with repoaudit.open(tmp_path / "db.duckdb") as audit:
        audit.collect(URL, transport=httpx.MockTransport(with_quota), retry=NO_BACKOFF, progress=False,
                      use_credential_store=False)
        recorded = json.loads(audit.sql("SELECT rate_limit FROM snapshots").iloc[0, 0])
    assert recorded == {"ratelimit-limit": "100;w=21600", "ratelimit-remaining": "76;w=21600"}
