"""A registry that lies, loops, trickles or floods: every case ends, costs one repository, stores nothing invalid.

Each case below puts one hostile repository (``bad/x``) beside three good ones in
a :class:`FakeRegistryServer` (real HTTP, since a body that never ends or a
redirect loop needs a socket) and asserts, for the library and for the CLI:

* the run ends within a wall-clock bound (a hang fails the test instead of blocking it);
* the good repositories are collected, with the digests they were pushed with;
* the bad one has exactly one ``collection_errors`` row, whose reason is one line;
* nothing stored breaks the document schemas (every table is checked);
* ``repoaudit collect`` exits 0 (a ``partial`` snapshot is a success with errors recorded,
  as the README says) and prints no traceback.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import re
import threading
import tracemalloc
from dataclasses import dataclass, field
from typing import Callable

import httpx
import pytest
from click.testing import CliRunner

import repoaudit
from fakeregistry import OCI_MANIFEST, FakeRegistry, FakeRegistryServer, digest_of, error
from repoaudit.cli import EXIT_FAILED, main
from repoaudit.model.limits import Limits
from repoaudit.sources.registry import RegistryClient
from repoaudit.collect.collector import collect_source
from repoaudit.model.options import ClientOptions, parse_target
from repoaudit.model.documents import MAX_SIZE, is_valid_repository, is_valid_tag
from repoaudit.errors import PaginationError, RepoauditError, ResponseTooLarge
from repoaudit.model.retry import NO_BACKOFF
from repoaudit.store.database import connect

GOOD = ("good/a", "good/b", "good/c")
BAD = "bad/x"
TIMEOUT = 0.5  # per read; the total deadline of a response is four times this
BOUND = 60.0  # seconds any one collection may take before the test calls it a hang
MiB = 1024 * 1024
_DIGEST = re.compile(r"sha(256:[a-f0-9]{64}|384:[a-f0-9]{96}|512:[a-f0-9]{128})")
_MEDIA_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}")


@dataclass
class Expect:
    error_type: str
    fragment: str  # in the error message
    repository: str = BAD  # the collection_errors.repository of the one row
    stored_tags: set[str] = field(default_factory=set)  # bad/x tags that are valid and still stored
    status: str = "failed"  # bad/x's row in repositories; None when it never becomes a repository


def bounded(fn: Callable, seconds: float = BOUND):
    """Run ``fn`` in a thread; fail (not block) when it is still running after ``seconds``."""
    outcome: dict = {}

    def target():
        try:
            outcome["value"] = fn()
        except BaseException as exc:  # handed back to the test thread
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        pytest.fail(f"still running after {seconds:.0f} s: the registry made it hang")
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def estate() -> tuple[FakeRegistry, dict[str, str]]:
    fake = FakeRegistry()
    pushed = {repo: fake.add_image(repo, "1", f"{repo}-layer".encode()) for repo in GOOD}
    return fake, pushed


def spoil(fake: FakeRegistry, change: Callable[[dict], None], *, tag: str = "1") -> str:
    manifest, _ = fake.image_documents(b"bad-layer")
    change(manifest)
    return fake.add_manifest(BAD, tag, json.dumps(manifest).encode())


def raw_manifest(fake: FakeRegistry, server: FakeRegistryServer, handler) -> None:
    fake.tags[BAD] = {"1": "sha256:" + "0" * 64}
    server.raw[f"/v2/{BAD}/manifests/1"] = handler


def set_layer(key, value):
    def change(m):
        m["layers"][0][key] = value
    return change


def with_config(fake: FakeRegistry, config: bytes | dict) -> None:
    body = config if isinstance(config, bytes) else json.dumps(config).encode()
    manifest, _ = fake.image_documents(b"bad-layer")
    fake.blobs[digest_of(body)] = body
    manifest["config"].update(digest=digest_of(body), size=len(body))
    fake.add_manifest(BAD, "1", json.dumps(manifest).encode())


def nested_indexes(fake: FakeRegistry, depth: int) -> None:
    manifest, _ = fake.image_documents(b"leaf")
    body = json.dumps(manifest).encode()
    fake.add_manifest(BAD, None, body)
    for _ in range(depth):
        child = {"mediaType": OCI_MANIFEST if body is None or b'"layers"' in body else
                 "application/vnd.oci.image.index.v1+json", "digest": digest_of(body), "size": len(body)}
        body = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                           "manifests": [child]}).encode()
        fake.add_manifest(BAD, None, body, "application/vnd.oci.image.index.v1+json")
    fake.tags[BAD]["1"] = digest_of(body)


def tags_page(server: FakeRegistryServer, doc, headers: dict | None = None) -> None:
    body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    server.raw[f"/v2/{BAD}/tags/list"] = server.answer(200, body, {"Content-Type": "application/json",
                                                                   **(headers or {})})


def case_tag(fake, server, bad_tag):
    d = fake.add_image(BAD, "v1", b"bad-repo-layer")
    fake.tags[BAD][bad_tag] = d
    return Expect("InvalidDocument", "not a valid tag", stored_tags={"v1"}, status="partial")


CASES: dict[str, Callable[[FakeRegistry, FakeRegistryServer], Expect]] = {
    # -- documents that break their schema
    "layers is a number": lambda f, s: (spoil(f, lambda m: m.update(layers=5)),
                                        Expect("InvalidDocument", "layers must be a list, not int 5"))[1],
    "mediaType is a number": lambda f, s: (spoil(f, lambda m: m.update(mediaType=5)),
                                           Expect("InvalidDocument", "mediaType must be a media type"))[1],
    "architecture is an object": lambda f, s: (
        with_config(f, {"architecture": {"x": 1}, "os": "linux"}),
        Expect("InvalidDocument", "architecture must be a string, not dict"))[1],
    "size 2^70": lambda f, s: (spoil(f, set_layer("size", 2 ** 70)),
                               Expect("InvalidDocument", "layers[0].size must be an integer from 0 to 2^63-1"))[1],
    "negative size": lambda f, s: (spoil(f, set_layer("size", -1)),
                                   Expect("InvalidDocument", "must be an integer from 0 to 2^63-1, not int -1"))[1],
    "size true": lambda f, s: (spoil(f, set_layer("size", True)), Expect("InvalidDocument", "not true"))[1],
    "size 1.5": lambda f, s: (spoil(f, set_layer("size", 1.5)), Expect("InvalidDocument", "not float 1.5"))[1],
    "layer digest ../../etc/passwd": lambda f, s: (
        spoil(f, set_layer("digest", "../../etc/passwd")),
        Expect("InvalidDocument", "layers[0].digest must be a digest"))[1],
    "config digest sha256 too short": lambda f, s: (
        spoil(f, lambda m: m["config"].update(digest="sha256:abc")),
        Expect("InvalidDocument", "config.digest must be a digest"))[1],
    "annotation value is a list": lambda f, s: (
        spoil(f, lambda m: m.update(annotations={"a": ["b"]})),
        Expect("InvalidDocument", "annotations['a'] must be a string"))[1],
    "manifest is not JSON": lambda f, s: (f.add_manifest(BAD, "1", b"<html>proxy login</html>"),
                                          Expect("InvalidDocument", "is not JSON"))[1],
    "manifest is a JSON list": lambda f, s: (f.add_manifest(BAD, "1", b"[1, 2, 3]"),
                                             Expect("InvalidDocument", "must be a JSON object, not list"))[1],
    "manifest nested 100,000 deep": lambda f, s: (f.add_manifest(BAD, "1", b"[" * 100_000 + b"]" * 100_000),
                                                  Expect("InvalidDocument", "nested too deeply"))[1],
    "manifest with a duplicate key": lambda f, s: (
        f.add_manifest(BAD, "1", b'{"schemaVersion": 2, "layers": [], "layers": 5}'),
        Expect("InvalidDocument", "duplicate key 'layers'"))[1],
    "manifest with NaN": lambda f, s: (f.add_manifest(BAD, "1", b'{"schemaVersion": NaN}'),
                                       Expect("InvalidDocument", "NaN is not JSON"))[1],
    "config is not JSON": lambda f, s: (with_config(f, b"\xff\xfe not json"),
                                        Expect("InvalidDocument", "image config sha256:"))[1],
    "Labels value is a number": lambda f, s: (
        with_config(f, {"architecture": "amd64", "os": "linux", "config": {"Labels": {"a": 1}}}),
        Expect("InvalidDocument", "config.Labels['a'] must be a string"))[1],
    "index child platform without os": lambda f, s: (
        f.add_manifest(BAD, "1", json.dumps({"schemaVersion": 2, "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": "sha256:" + "1" * 64, "size": 1,
             "platform": {"architecture": "amd64"}}]}).encode(), "application/vnd.oci.image.index.v1+json"),
        Expect("InvalidDocument", "manifests[0].platform.os must be a string, not null"))[1],
    "indexes nested 12 deep": lambda f, s: (nested_indexes(f, 12), Expect("LimitExceeded", "nested more than 8"))[1],
    # -- headers
    "Docker-Content-Digest foo:not-a-hash": lambda f, s: (raw_manifest(f, s, s.answer(
        200, json.dumps(f.image_documents()[0]).encode(),
        {"Content-Type": OCI_MANIFEST, "Docker-Content-Digest": "foo:not-a-hash"})),
        Expect("InvalidResponse", "Docker-Content-Digest header must be a digest"))[1],
    "Content-Type garbage": lambda f, s: (raw_manifest(f, s, s.answer(
        200, json.dumps(f.image_documents()[0]).encode(), {"Content-Type": "garbage"})),
        Expect("InvalidDocument", "Content-Type must be a media type"))[1],
    # -- unbounded answers
    "64 MiB manifest": lambda f, s: (raw_manifest(f, s, s.short_body(b"{", announced=64 * MiB)),
                                     Expect("ResponseTooLarge", "more than the 4,194,304-byte cap"))[1],
    "endless chunked manifest": lambda f, s: (raw_manifest(f, s, s.endless()),
                                              Expect("ResponseTooLarge", "larger than the 4,194,304-byte cap"))[1],
    "gzip bomb": lambda f, s: (raw_manifest(f, s, s.answer(200, gzip.compress(b" " * 64 * MiB), {
        "Content-Type": OCI_MANIFEST, "Content-Encoding": "gzip"})),
        Expect("ResponseTooLarge", "larger than the 4,194,304-byte cap"))[1],
    "gzip body that is not gzip": lambda f, s: (raw_manifest(f, s, s.answer(200, b"not gzip at all", {
        "Content-Type": OCI_MANIFEST, "Content-Encoding": "gzip"})),
        Expect("InvalidResponse", "could not be decoded after 8 tries: DecodingError"))[1],
    "trickle body": lambda f, s: (raw_manifest(f, s, s.trickle()), Expect("DeadlineExceeded", "after 2 s"))[1],
    "short body then close": lambda f, s: (raw_manifest(f, s, s.short_body(b"{}", announced=1000)),
                                           Expect("RegistryUnreachable", "RemoteProtocolError"))[1],
    "401 with a 200 KB body": lambda f, s: (raw_manifest(f, s, s.answer(
        401, b"x" * 200_000, {"WWW-Authenticate": 'Basic realm="r"'})),
        Expect("AuthenticationError", "authentication required"))[1],
    # -- redirects
    "redirect loop": lambda f, s: (raw_manifest(f, s, s.redirect(f"/v2/{BAD}/manifests/1")),
                                   Expect("TooManyRedirects", "a redirect loop"))[1],
    "redirect chain of 10": lambda f, s: (
        raw_manifest(f, s, s.redirect("/r/0")),
        [s.raw.__setitem__(f"/r/{i}", s.redirect(f"/r/{i + 1}")) for i in range(10)],
        Expect("TooManyRedirects", "more than 5 redirects"))[2],
    "redirect to an invalid URL": lambda f, s: (raw_manifest(f, s, s.redirect("http://[::1")),
                                                Expect("InvalidResponse", "redirects to an invalid URL"))[1],
    "config blob redirect loop": lambda f, s: (
        f.add_image(BAD, "1", b"bad-layer"),
        s.raw.__setitem__(f"/v2/{BAD}/blobs/" + json.loads(f.manifests[f.tags[BAD]["1"]])["config"]["digest"],
                          s.redirect("/loop/a")),
        s.raw.__setitem__("/loop/a", s.redirect("/loop/b")), s.raw.__setitem__("/loop/b", s.redirect("/loop/a")),
        Expect("TooManyRedirects", "a redirect loop"))[4],
    # -- pagination
    "Link rel=next to the same page": lambda f, s: (
        f.add_image(BAD, "1", b"bad-layer"),
        tags_page(s, {"name": BAD, "tags": ["1"]}, {"Link": f'</v2/{BAD}/tags/list?n=1000>; rel="next"'}),
        Expect("PaginationError", "points back at a page already read"))[2],
    "Link rel=next serving the same page again": lambda f, s: (
        f.add_image(BAD, "1", b"bad-layer"),
        tags_page(s, {"name": BAD, "tags": ["1"]}, {"Link": f'</v2/{BAD}/tags/list?last=1&n=1000>; rel="next"'}),
        Expect("PaginationError", "repeats the last one"))[2],
    "Link rel=next into another repository": lambda f, s: (
        f.add_image(BAD, "1", b"bad-layer"),
        tags_page(s, {"name": BAD, "tags": ["1"]}, {"Link": '</v2/good/a/tags/list?n=1000>; rel="next"'}),
        Expect("PaginationError", "leaves the listing"))[2],
    "tag list is not JSON": lambda f, s: (f.add_image(BAD, "1"), tags_page(s, b"<html>"),
                                          Expect("InvalidResponse", "is not JSON"))[2],
    "tag list is a JSON list": lambda f, s: (f.add_image(BAD, "1"), tags_page(s, ["1"]),
                                             Expect("InvalidDocument", "must be a JSON object, not list"))[2],
    "tag list holds a number": lambda f, s: (f.add_image(BAD, "1"), tags_page(s, {"name": BAD, "tags": ["1", 5]}),
                                             Expect("InvalidDocument", "tags[1] must be a string, not int 5"))[2],
    "error body nested 30,000 deep": lambda f, s: (
        f.add_image(BAD, "1"), s.raw.__setitem__(f"/v2/{BAD}/tags/list", s.answer(404, b"[" * 30_000 + b"]" * 30_000)),
        Expect("NotFoundError", "HTTP 404"))[2],
    "error message with newlines": lambda f, s: (
        f.add_image(BAD, "1"), s.raw.__setitem__(f"/v2/{BAD}/tags/list", s.answer(400, json.dumps(
            {"errors": [{"code": "X\nY", "message": "line one\nline two\r\n" + "z" * 5000}]}).encode())),
        Expect("RegistryHTTPError", "X Y: line one line two"))[2],
    # -- names that must never reach a URL
    "tag v1?x=1": lambda f, s: case_tag(f, s, "v1?x=1"),
    "tag v1#frag": lambda f, s: case_tag(f, s, "v1#frag"),
    "tag with a newline": lambda f, s: case_tag(f, s, "v1\nx"),
    "tag ../v1": lambda f, s: case_tag(f, s, "../v1"),
    "tag of 129 characters": lambda f, s: case_tag(f, s, "a" * 129),
    "tag with a non-ASCII letter": lambda f, s: case_tag(f, s, "v\u00e9"),
    "catalog name good/../evil/img": lambda f, s: (
        f.add_image("evil/img", "1", b"evil"), setattr(f, "catalog", [*GOOD, "good/../evil/img"]),
        Expect("InvalidDocument", "not a valid repository name", repository="'good/../evil/img'", status=None))[2],
    "catalog name with upper case": lambda f, s: (
        setattr(f, "catalog", [*GOOD, "Bad/X"]),
        Expect("InvalidDocument", "not a valid repository name", repository="'Bad/X'", status=None))[1],
}


def collect_library(server: FakeRegistryServer, db) -> repoaudit.collect.collector.CollectResult:
    with repoaudit.open(db) as audit:
        return audit.collect(server.url, retry=NO_BACKOFF, timeout=TIMEOUT, progress=False,
                             use_credential_store=False)


def assert_nothing_invalid(audit) -> None:
    """Every stored registry value satisfies the document schemas."""
    for (tag,) in audit.sql("SELECT tag FROM tags").values.tolist():
        assert is_valid_tag(tag), tag
    for table in ("tags", "repositories"):
        for (name,) in audit.sql(f"SELECT DISTINCT repository FROM {table}").values.tolist():
            assert is_valid_repository(name), (table, name)
    checks = {
        "tags": ["digest"], "manifests": ["digest", "config_digest", "subject"],
        "layers": ["manifest_digest", "digest"], "manifest_children": ["index_digest", "child_digest"],
    }
    for table, columns in checks.items():
        for column in columns:
            for (value,) in audit.sql(f"SELECT DISTINCT {column} FROM {table} WHERE {column} IS NOT NULL").values.tolist():
                assert _DIGEST.fullmatch(value), (table, column, value)
    for table, column in (("manifests", "manifest_size"), ("manifests", "config_size"), ("layers", "size"),
                          ("manifest_children", "size")):
        bad = audit.sql(f"SELECT count(*) FROM {table} WHERE {column} < 0 OR {column} >= $max",
                        {"max": MAX_SIZE}).iloc[0, 0]
        assert bad == 0, (table, column)
    for table, column in (("manifests", "media_type"), ("layers", "media_type"), ("manifest_children", "media_type")):
        for (value,) in audit.sql(f"SELECT DISTINCT {column} FROM {table} WHERE {column} IS NOT NULL").values.tolist():
            assert _MEDIA_TYPE.fullmatch(value), (table, column, value)
    for column in ("architecture", "os", "variant"):
        for (value,) in audit.sql(f"SELECT DISTINCT {column} FROM manifests WHERE {column} IS NOT NULL").values.tolist():
            assert isinstance(value, str) and "\n" not in value, (column, value)


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_repository_costs_only_itself(name, tmp_path):
    fake, pushed = estate()
    with FakeRegistryServer(fake) as server:
        expect = CASES[name](fake, server)
        db = tmp_path / "db.duckdb"
        result = bounded(lambda: collect_library(server, db))
    assert result.status == "partial", result
    with repoaudit.open(db, read_only=True) as audit:
        tags = audit.sql("SELECT repository, tag, digest FROM tags").values.tolist()
        assert sorted(t for t in tags if t[0] in GOOD) == sorted([repo, "1", d] for repo, d in pushed.items())
        assert {t[1] for t in tags if t[0] == BAD} == expect.stored_tags
        assert not [t for t in tags if t[0] not in (*GOOD, BAD)], tags  # evil/img never arrives by a side door
        errors = audit.sql("SELECT repository, reference, error_type, error FROM collection_errors").values.tolist()
        assert len(errors) == 1, errors
        repository, reference, error_type, message = errors[0]
        assert (repository, error_type) == (expect.repository, expect.error_type), errors
        assert expect.fragment in message, message
        assert "\n" not in message and len(message) < 400, message
        if expect.status is not None:
            status = audit.sql("SELECT status FROM repositories WHERE repository = $r", {"r": BAD}).iloc[0, 0]
            assert status == expect.status
        assert_nothing_invalid(audit)


CLI_CASES = ["layers is a number", "architecture is an object", "size 2^70", "64 MiB manifest",
             "endless chunked manifest", "trickle body", "redirect loop", "Link rel=next to the same page",
             "tag with a newline", "tag v1?x=1", "catalog name good/../evil/img",
             "Docker-Content-Digest foo:not-a-hash", "manifest nested 100,000 deep"]


@pytest.mark.parametrize("name", CLI_CASES)
def test_cli_collect_gives_one_line_and_no_traceback(name, tmp_path, monkeypatch):
    monkeypatch.setenv("REPOAUDIT_DB", str(tmp_path / "cli.duckdb"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-docker-config"))
    fake, _ = estate()
    with FakeRegistryServer(fake) as server:
        CASES[name](fake, server)
        result = bounded(lambda: CliRunner().invoke(
            main, ["collect", server.url, "--no-progress", "--timeout", str(TIMEOUT)]))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output and "Traceback" not in result.stderr
    assert result.exit_code == 0, result.output
    assert ": partial (full)" in result.stdout
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and "1 error(s) recorded" in errors[0], result.stderr


@pytest.mark.parametrize("catalog, fragment", [
    ({"repositories": 5}, "repositories must be a list, not int 5"),
    ({"repositories": ["good/a", None]}, "repositories[1] must be a string, not null"),
    (["good/a"], "must be a JSON object, not list"),
])
def test_unreadable_catalog_fails_the_run_in_one_line(catalog, fragment, tmp_path, monkeypatch):
    monkeypatch.setenv("REPOAUDIT_DB", str(tmp_path / "cli.duckdb"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-docker-config"))
    fake, _ = estate()
    with FakeRegistryServer(fake) as server:
        server.raw["/v2/_catalog"] = server.answer(200, json.dumps(catalog).encode(),
                                                   {"Content-Type": "application/json"})
        result = bounded(lambda: CliRunner().invoke(main, ["collect", server.url, "--no-progress"]))
    assert result.exit_code == EXIT_FAILED and "Traceback" not in result.output  # a failed snapshot
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and fragment in lines[0], result.stderr
    with repoaudit.open(tmp_path / "cli.duckdb", read_only=True) as audit:
        assert audit.query("snapshots").iloc[0]["status"] == "failed"
        assert audit.sql("SELECT count(*) FROM tags").iloc[0, 0] == 0


def test_incremental_head_with_an_invalid_digest_header(tmp_path):
    fake, pushed = estate()
    fake.add_image(BAD, "1", b"bad-layer")
    with FakeRegistryServer(fake) as server:
        first = bounded(lambda: collect_library(server, tmp_path / "db.duckdb"))
        assert first.status == "complete"
        body = fake.manifests[fake.tags[BAD]["1"]]
        server.raw[f"/v2/{BAD}/manifests/1"] = server.answer(200, body, {
            "Content-Type": OCI_MANIFEST, "Docker-Content-Digest": "sha256:../../../team/app"})
        second = bounded(lambda: collect_library(server, tmp_path / "db.duckdb"))
    assert (second.mode, second.status, second.errors) == ("incremental", "partial", 1)
    with repoaudit.open(tmp_path / "db.duckdb", read_only=True) as audit:
        err = audit.sql("SELECT repository, reference, error_type, error FROM collection_errors").values.tolist()
        assert err[0][:3] == [BAD, "1", "InvalidResponse"] and "Docker-Content-Digest" in err[0][3]
        tags = audit.sql("SELECT repository FROM tags WHERE snapshot_id = $s", {"s": second.snapshot_id})
        assert sorted(tags["repository"]) == sorted(GOOD)
        assert_nothing_invalid(audit)


def test_endless_body_memory_stays_bounded(tmp_path):
    """The body is read against its cap: Python's peak allocation stays near it, not near the stream."""
    fake, _ = estate()
    with FakeRegistryServer(fake) as server:
        raw_manifest(fake, server, server.endless())
        # The config blob of a good image too: a second stream, against the 8 MiB config cap.
        server.raw["/v2/good/a/blobs/" + json.loads(fake.manifests[fake.tags["good/a"]["1"]])["config"]["digest"]] = \
            server.endless(content_type="application/octet-stream")
        tracemalloc.start()
        try:
            result = bounded(lambda: collect_library(server, tmp_path / "db.duckdb"))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert result.status == "partial" and result.errors == 2
    # Caps of 4 + 8 MiB, read in chunks and joined once: a few times that at most. Unbounded, the
    # same run read about a gigabyte a second until something gave.
    assert peak < 64 * MiB, f"peak {peak / MiB:.0f} MiB"


# -- bounds on a run, through the in-memory fake ----------------------------------------


def _client(fake: FakeRegistry, limits: Limits | None = None, **options) -> RegistryClient:
    return RegistryClient(parse_target("https://registry.test"), ClientOptions(retry=NO_BACKOFF, **options),
                          transport=fake.transport(), limits=limits)


def _collect(tmp_path, client: RegistryClient):
    async def go():
        try:
            return await collect_source(con, client)
        finally:
            await client.aclose()

    con = connect(tmp_path / "db.duckdb")
    try:
        result = asyncio.run(go())
        errors = con.execute("SELECT repository, error_type, error FROM collection_errors").fetchall()
        snapshot = con.execute("SELECT status, error FROM snapshots").fetchall()
    finally:
        con.close()
    return result, errors, snapshot


def test_pagination_stops_at_the_page_cap():
    fake, _ = estate()
    pages = {"n": 0}

    def endless_distinct_pages(request):
        if request.url.path == "/v2/_catalog":
            pages["n"] += 1
            k = pages["n"]
            return httpx.Response(200, json={"repositories": [f"r/{k}"]},
                                  headers={"Link": f'</v2/_catalog?last=r/{k}&n=1000>; rel="next"'})
        return None

    fake.fault = endless_distinct_pages

    async def go():
        client = _client(fake, Limits(max_pages=50))
        try:
            await client.list_repositories()
        finally:
            await client.aclose()

    with pytest.raises(PaginationError, match="catalog has more than 50 pages; stopped"):
        asyncio.run(go())
    assert pages["n"] == 50


def test_request_budget_ends_the_repository_not_the_run(tmp_path):
    fake, pushed = estate()
    children = []
    for i in range(100):  # one tag, an index of 100 images: 200 requests for work the budget puts at 60
        manifest, _ = fake.image_documents(f"child-{i}".encode())
        body = json.dumps(manifest).encode()
        fake.add_manifest(BAD, None, body)
        children.append({"mediaType": OCI_MANIFEST, "digest": digest_of(body), "size": len(body)})
    fake.add_manifest(BAD, "1", json.dumps({"schemaVersion": 2, "manifests": children}).encode(),
                      "application/vnd.oci.image.index.v1+json")
    client = _client(fake, Limits(requests_per_repository=50, requests_per_tag=10), concurrency=1)
    result, errors, _ = _collect(tmp_path, client)
    assert result.status == "partial" and result.tags == 3
    assert [(r, t) for r, t, _ in errors] == [(BAD, "RequestBudgetExceeded")]
    assert "took more than 61 requests" in errors[0][2]
    assert sum(n for key, n in fake.hits.items() if f"/{BAD}/" in key) == 61


def test_circuit_breaker_stops_a_run_whose_registry_went_down(tmp_path):
    fake = FakeRegistry()
    for i in range(80):
        fake.add_image(f"team/r{i:02d}", "1", f"layer-{i}".encode())
    fake.fault = lambda r: error(503, "UNAVAILABLE", "down") if r.url.path.endswith("/tags/list") else None
    client = _client(fake, concurrency=4)
    result, errors, snapshot = _collect(tmp_path, client)
    assert snapshot[0][0] == "failed"
    assert "stopped after 20 requests in a row failed after all their retries" in snapshot[0][1]
    assert "repositories not attempted" in snapshot[0][1]
    tried = sum(n for key, n in fake.hits.items() if key.endswith("/tags/list"))
    # Twenty exhausted requests and the few in flight, not 80 repositories times 8 tries.
    assert tried <= (20 + 4) * NO_BACKOFF.attempts
    assert any(t == "CircuitOpen" for _, t, _ in errors)
    assert all("\n" not in e for _, _, e in errors)


def test_no_exception_but_repoauditerror_for_random_document_damage():
    """Random type swaps anywhere in a manifest or config: parsed, or a RepoauditError, never anything else."""
    import random

    from repoaudit.model.manifest import parse_config, parse_manifest

    fake = FakeRegistry()
    manifest, config = fake.image_documents(b"x")
    manifest["subject"] = dict(manifest["layers"][0])
    manifest["annotations"] = {"a": "b"}
    config_doc = json.loads(config) | {"config": {"Labels": {"l": "v"}}, "variant": "v8"}
    rng = random.Random(12)
    values = [None, True, -1, 2 ** 70, 1.5, "", "x", "../../etc/passwd", [], {}, [1], {"a": 1}, "sha256:" + "0" * 64]

    def paths(doc, prefix=()):
        yield prefix
        if isinstance(doc, dict):
            for k, v in doc.items():
                yield from paths(v, prefix + (k,))
        elif isinstance(doc, list):
            for i, v in enumerate(doc):
                yield from paths(v, prefix + (i,))

    for original, parse in ((manifest, lambda b: parse_manifest(b, digest_of(b))),
                            (config_doc, lambda b: parse_config(b, digest_of(b)))):
        every = list(paths(original))
        for _ in range(1500):
            doc = json.loads(json.dumps(original))
            path = rng.choice(every[1:])
            target = doc
            for step in path[:-1]:
                target = target[step]
            target[path[-1]] = rng.choice(values)
            try:
                parse(json.dumps(doc).encode())
            except RepoauditError as exc:
                assert "\n" not in str(exc)


@pytest.mark.parametrize("token_body, fails", [
    (b'{"token": "t", "expires_in": 1' + b"0" * 400 + b"}", True),
    (b'{"token": ' + b"[" * 200_000 + b"]" * 200_000 + b"}", True),
    (b"x" * (2 * MiB), True),
    (b'{"token": "t", "expires_in": "soon"}', False),  # falls back to 60 s, as auth.py intends
])
def test_hostile_token_endpoint_is_an_authentication_error(token_body, fails):
    from repoaudit.errors import AuthenticationError

    def handler(request):
        if request.url.host == "auth.test":
            return httpx.Response(200, content=token_body)
        if "authorization" not in request.headers:
            return httpx.Response(401, headers={"WWW-Authenticate": 'Bearer realm="https://auth.test/token"'})
        return httpx.Response(200, json={"name": "a/b", "tags": ["1"]})

    async def go():
        client = RegistryClient(parse_target("https://registry.test"), ClientOptions(retry=NO_BACKOFF),
                                transport=httpx.MockTransport(handler))
        try:
            return await client.list_tags("a/b")
        finally:
            await client.aclose()

    if not fails:
        assert asyncio.run(go()) == ["1"]
        return
    with pytest.raises((AuthenticationError, ResponseTooLarge)) as info:
        asyncio.run(go())
    assert "\n" not in str(info.value)
