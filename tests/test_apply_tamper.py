"""Tampered plans on the real registry: each is refused whole, before any request, and nothing is deleted.

A plan file is the input of the one destructive command. Every case here edits a
plan the way an attacker (or a careless hand) would, mostly recomputing
``plan_sha256`` so the check under test is the one that has to catch it, and then
asserts three things: a one-line error naming what was wrong, no new line in the
registry's access log, and every tag still there.
"""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

import repoaudit
from pusher import layer_bytes
from registry import RegistryServer
from repoaudit.cli import main
from repoaudit.errors import AuthenticationError, PlanVerificationError
from repoaudit.retention.signing import plan_digest

KEEP_NEWEST = {"name": "keep-newest", "rules": [{"keep": {"most_recent": 1}}]}


def seed(pusher) -> dict:
    old = pusher.push_image("svc", ["old"], layers=[layer_bytes("t-old", 2_000)], created="2024-01-01T00:00:00Z")
    mid = pusher.push_image("svc", ["mid"], layers=[layer_bytes("t-mid", 2_100)], created="2024-06-01T00:00:00Z")
    latest = pusher.push_image("svc", ["latest", "v3"], layers=[layer_bytes("t-new", 2_200)],
                               created="2025-01-01T00:00:00Z")
    kept = pusher.push_image("team0/svc-0000", ["keep"], layers=[layer_bytes("t-keep", 2_300)],
                             created="2023-01-01T00:00:00Z")
    return {"old": old, "mid": mid, "latest": latest, "kept": kept}


@pytest.fixture
def planned(registry, pusher, tmp_path):
    """(images, database path, plan path) of a collected registry and a plan deleting svc:old and svc:mid."""
    images = seed(pusher)
    db = tmp_path / "audit.duckdb"
    with repoaudit.open(db) as audit:
        audit.collect(registry.url, progress=False)
        plan = audit.retention(KEEP_NEWEST)
        assert sorted(plan.candidates["digest"]) == sorted([images["old"].digest, images["mid"].digest])
        path = plan.write_json(tmp_path / "plan.json")
    return images, db, path


def rewrite(path: Path, edit, *, rehash: bool = True) -> Path:
    """Edit the plan; with ``rehash`` the attacker also recomputes plan_sha256, as anyone can."""
    doc = json.loads(path.read_text())
    edit(doc)
    if rehash:
        doc["plan_sha256"] = plan_digest(doc)
    out = path.with_name("tampered.json")
    out.write_text(json.dumps(doc, indent=2))
    return out


def all_tags(pusher) -> dict[str, list[str]]:
    return {repo: sorted(pusher.tags(repo)) for repo in ("svc", "team0/svc-0000")}


UNTOUCHED = {"svc": ["latest", "mid", "old", "v3"], "team0/svc-0000": ["keep"]}


def cand(doc: dict, i: int = 0) -> dict:
    return doc["plans"][0]["candidates"][i]


def swap_to_latest(images):
    def edit(doc):
        cand(doc)["digest"], cand(doc)["tags"] = images["latest"].digest, ["latest", "v3"]
    return edit, r"candidate 1 \(svc@sha256:\w+…\): policy keep-newest does not select it on snapshot 1 of "


def traversal_digest(images):
    def edit(doc):
        cand(doc)["digest"] = f"../../../team0/svc-0000/manifests/{images['kept'].digest}"
        cand(doc)["tags"] = []
    return edit, r"candidate 1 \('svc'\): digest '\.\./\.\./\.\./team0/svc-0000/manifests/sha256:\w+' refused: "


def dot_segment_repository(images):
    def edit(doc):
        cand(doc)["repository"] = "svc/../team0/svc-0000"
        cand(doc)["digest"], cand(doc)["tags"] = images["kept"].digest, ["keep"]
    return edit, r"candidate 1 \('svc/\.\./team0/svc-0000'\): repository 'svc/\.\./team0/svc-0000' is not a repo"


def other_source(images):
    def edit(doc):
        doc["snapshots"][0]["source"] = "http://127.0.0.1:9"
    return edit, r"snapshots\[0\]: source 'http://127\.0\.0\.1:9' is not http://127\.0\.0\.1:\d+, where snapshot 1"


def unknown_snapshot(images):
    def edit(doc):
        doc["snapshots"][0]["snapshot_id"] = 999
    return edit, r"snapshots\[0\]: snapshot 999 is not in this database"


def no_longer_selected(images):
    def edit(doc):
        extra = dict(cand(doc), repository="team0/svc-0000", digest=images["kept"].digest, tags=["keep"],
                     children=[])
        doc["plans"][0]["candidates"].append(extra)
    return edit, r"candidate 3 \(team0/svc-0000@sha256:\w+…\): policy keep-newest does not select it"


def tags_edited(images):
    def edit(doc):
        cand(doc)["tags"] = []  # an untagged candidate skips the live tag comparison's "tags changed" guard
    return edit, r"candidate 1 \(svc@sha256:\w+…\): tags none are not the digest's tags in snapshot 1 of .* \(old\)"


def child_added(images):
    def edit(doc):
        cand(doc)["children"] = [images["latest"].digest]
    return edit, r"candidate 1 \(svc@sha256:\w+…\): index child sha256:\w+… does not die with it on snapshot 1"


def sha512_too_short(images):
    def edit(doc):
        cand(doc)["digest"] = "sha512:" + "a" * 64
    return edit, r"digest 'sha512:a{64}' refused: sha512 digest must have 128 hex characters, not 64"


def non_ascii_repository(images):
    def edit(doc):
        cand(doc)["repository"] = "sv\u0441"  # a Cyrillic letter that looks like "c"
    return edit, r"candidate 1 \('svс'\): repository 'svс' is not a repository name \(lowercase components"


def long_repository(images):
    def edit(doc):
        cand(doc)["repository"] = "/".join(["a" * 50] * 6)
    return edit, r"repository 'a{50}/.*' is longer than 255 characters"


def non_ascii_tag(images):
    def edit(doc):
        cand(doc)["tags"] = ["v\u00e9"]
    return edit, r"candidate 1 \('svc'\): tag 'vé' is not a valid tag"


CASES = [swap_to_latest, traversal_digest, dot_segment_repository, other_source, unknown_snapshot,
         no_longer_selected, tags_edited, child_added, sha512_too_short, non_ascii_repository, long_repository,
         non_ascii_tag]


@pytest.mark.parametrize("case", CASES, ids=[c.__name__ for c in CASES])
@pytest.mark.parametrize("yes", [False, True], ids=["dry-run", "yes"])
def test_tampered_plan_is_refused_before_any_request(case, yes, registry, pusher, planned):
    images, db, path = planned
    edit, message = case(images)
    tampered = rewrite(path, edit)
    requests_before = len(registry.access_log_lines())
    with repoaudit.open(db) as audit:
        with pytest.raises(PlanVerificationError, match=message):
            audit.retention_apply(tampered, yes=yes)
        assert audit.sql("SELECT count(*) FROM deletions").iloc[0, 0] == 0
    assert len(registry.access_log_lines()) == requests_before
    assert all_tags(pusher) == UNTOUCHED


def test_plan_edited_after_hashing_is_refused(registry, pusher, planned):
    images, db, path = planned
    tampered = rewrite(path, swap_to_latest(images)[0], rehash=False)
    requests_before = len(registry.access_log_lines())
    with repoaudit.open(db) as audit:
        with pytest.raises(PlanVerificationError, match="plan_sha256 does not match the plan's content: it was "
                                                        "edited after it was written"):
            audit.retention_apply(tampered, yes=True)
        stripped = rewrite(path, lambda doc: doc.pop("plan_sha256"), rehash=False)
        with pytest.raises(PlanVerificationError, match="no plan_sha256"):
            audit.retention_apply(stripped, yes=True)
    assert len(registry.access_log_lines()) == requests_before
    assert all_tags(pusher) == UNTOUCHED


def test_snapshot_of_another_registry_is_refused(registry, pusher, planned):
    images, db, path = planned
    with repoaudit.open(db) as audit:
        # The same registry collected under another name: a real snapshot, of registry "elsewhere".
        other = audit.collect(registry.url, name="elsewhere", progress=False).snapshot_id
        tampered = rewrite(path, lambda doc: doc["snapshots"][0].update(snapshot_id=other))
        requests_before = len(registry.access_log_lines())
        with pytest.raises(PlanVerificationError, match=rf"snapshots\[0\]: snapshot {other} is of registry "
                                                        rf"elsewhere, not {registry.host}"):
            audit.retention_apply(tampered, yes=True)
    assert len(registry.access_log_lines()) == requests_before
    assert all_tags(pusher) == UNTOUCHED


def test_cli_refusal_is_one_line(registry, pusher, planned):
    images, db, path = planned
    tampered = rewrite(path, traversal_digest(images)[0])
    result = CliRunner().invoke(main, ["retention", "apply", str(tampered), "--db", str(db), "--yes"])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "refused" in lines[0], result.stderr
    assert "Traceback" not in result.output
    assert all_tags(pusher) == UNTOUCHED


def test_untampered_plan_still_applies_after_a_newer_snapshot(registry, pusher, planned):
    images, db, path = planned
    newer = pusher.push_image("svc", ["v4"], layers=[layer_bytes("t-v4", 2_400)], created="2025-06-01T00:00:00Z")
    with repoaudit.open(db) as audit:
        audit.collect(registry.url, progress=False)
        result = audit.retention_apply(path, yes=True)
        assert result.counts() == {"deleted": 2}
        recorded = audit.sql("SELECT DISTINCT plan_sha256, plan_snapshot_id FROM deletions")
    assert recorded.values.tolist() == [[json.loads(path.read_text())["plan_sha256"], 1]]
    assert sorted(pusher.tags("svc")) == ["latest", "v3", "v4"]
    assert newer.digest


# -- signatures --------------------------------------------------------------------------------------------


def _ed25519_keys(tmp_path: Path) -> tuple[Path, Path]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate()
    private, public = tmp_path / "plan.key", tmp_path / "plan.pub"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public


@pytest.mark.parametrize("kind", ["ed25519", "hmac"])
def test_signed_plan(kind, registry, pusher, planned, tmp_path):
    images, db, _path = planned
    if kind == "ed25519":
        sign_key, verify_key = _ed25519_keys(tmp_path)
    else:
        sign_key = verify_key = tmp_path / "secret"
        sign_key.write_bytes(b"0123456789abcdef0123456789abcdef")
    policy = tmp_path / "keep-newest.yaml"
    policy.write_text("rules:\n  - keep: {most_recent: 1}\n")
    runner = CliRunner()

    def cli(*args):
        return runner.invoke(main, [str(a) for a in args])

    plan = tmp_path / "signed.json"
    out = cli("retention", "plan", "--policy", policy, "--db", db, "-o", plan, "--sign", sign_key)
    assert out.exit_code == 0, out.output
    assert json.loads(plan.read_text())["signature"]["algorithm"] == ("ed25519" if kind == "ed25519"
                                                                       else "hmac-sha256")

    dry = cli("retention", "apply", plan, "--db", db, "--verify-key", verify_key)
    assert dry.exit_code == 0, dry.output
    assert "2 would delete" in dry.stderr

    # A knowing attacker rewrites the embedded policy to select everything and recomputes plan_sha256:
    # only the signature can tell.
    def widen(doc):
        doc["plans"][0]["policy"]["document"] = {"rules": [{"keep": {"tags": ["nothing-*"]}}]}
        cand(doc)["digest"], cand(doc)["tags"] = images["latest"].digest, ["latest", "v3"]

    tampered = rewrite(plan, widen)
    refused = cli("retention", "apply", tampered, "--db", db, "--verify-key", verify_key, "--yes")
    assert refused.exit_code == 1
    assert "signature does not verify" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1

    unsigned = tmp_path / "unsigned.json"
    assert cli("retention", "plan", "--policy", policy, "--db", db, "-o", unsigned).exit_code == 0
    refused = cli("retention", "apply", unsigned, "--db", db, "--verify-key", verify_key, "--yes")
    assert refused.exit_code == 1 and "the plan is not signed" in refused.stderr

    other = tmp_path / "other-secret"
    other.write_bytes(b"another secret entirely, 32 bytes")
    if kind == "hmac":
        refused = cli("retention", "apply", plan, "--db", db, "--verify-key", other)
        assert refused.exit_code == 1 and "signature does not verify" in refused.stderr
    else:
        refused = cli("retention", "apply", plan, "--db", db, "--verify-key", other)
        assert refused.exit_code == 1 and "is an hmac-sha256 key" in refused.stderr
    assert all_tags(pusher) == UNTOUCHED


def test_sign_needs_an_output(registry, planned, tmp_path):
    _images, db, _path = planned
    key = tmp_path / "k"
    key.write_bytes(b"secret")
    result = CliRunner().invoke(main, ["retention", "plan", "--policy", str(tmp_path / "nope.yaml"), "--db",
                                       str(db), "--sign", str(key)])
    assert result.exit_code == 1 and "--sign signs the plan JSON" in result.stderr


# -- where requests go, and with which credentials ------------------------------------------------------


class Recorder:
    """A tiny HTTP server that records every request and answers each with a Basic challenge.

    A client holding credentials for this host would resend with an Authorization
    header, so the recorded headers show exactly what would have leaked.
    """

    def __init__(self):
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                recorder.requests.append((self.command, self.path, dict(self.headers)))
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="recorder"')
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_HEAD = do_DELETE = _answer

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        self.url = f"http://{self.host}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def recorder():
    server = Recorder()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def docker_config(tmp_path, monkeypatch):
    """Point Docker's config.json at a temporary one; returns a function adding ``auths`` for a host."""
    for name in ("REPOAUDIT_USERNAME", "REPOAUDIT_PASSWORD", "REPOAUDIT_IDENTITY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    directory = tmp_path / "docker"
    directory.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(directory))
    auths: dict[str, dict] = {}

    def add(host: str, user: str, password: str) -> None:
        auths[host] = {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}
        (directory / "config.json").write_text(json.dumps({"auths": auths}))

    return add


def test_edited_source_sends_no_request_and_no_credential(registry, pusher, planned, recorder, docker_config):
    images, db, path = planned
    docker_config(registry.host, "alice", "planned-registry-secret")
    tampered = rewrite(path, lambda doc: doc["snapshots"][0].update(source=recorder.url))
    for yes in (False, True):  # the dry run too
        with repoaudit.open(db) as audit:
            with pytest.raises(PlanVerificationError, match=rf"source '{recorder.url}' is not {registry.url}"):
                audit.retention_apply(tampered, yes=yes)
    assert recorder.requests == []
    assert all_tags(pusher) == UNTOUCHED


def test_explicit_url_gets_only_its_own_hosts_credentials(registry, pusher, planned, recorder, docker_config):
    images, db, path = planned
    docker_config(registry.host, "alice", "planned-registry-secret")
    with repoaudit.open(db) as audit:
        with pytest.raises(AuthenticationError):
            audit.retention_apply(path, registry_urls={"": recorder.url})
    assert recorder.requests, "the explicit URL is where apply goes"
    assert [(m, p) for m, p, _h in recorder.requests] == [("GET", "/v2/_catalog?n=1000")] * len(recorder.requests)
    assert not any("authorization" in {k.lower() for k in h} for _m, _p, h in recorder.requests)

    # The control: with credentials for the recorder's own host, they are sent (so the check above can fail).
    recorder.requests.clear()
    docker_config(recorder.host, "bob", "recorder-secret")
    with repoaudit.open(db) as audit:
        with pytest.raises(AuthenticationError):
            audit.retention_apply(path, registry_urls={"": recorder.url})
    sent = {h.get("Authorization") for _m, _p, h in recorder.requests} - {None}
    assert sent == {"Basic " + base64.b64encode(b"bob:recorder-secret").decode()}
    assert all_tags(pusher) == UNTOUCHED


def test_explicit_url_is_checked_against_its_catalog(registry, pusher, planned, tmp_path):
    images, db, path = planned
    with RegistryServer(tmp_path / "empty") as empty:
        with repoaudit.open(db) as audit:
            with pytest.raises(PlanVerificationError, match=rf"{empty.url}: repository svc of the plan is not in "
                                                            r"its catalog"):
                audit.retention_apply(path, yes=True, registry_urls={registry.host: empty.url})
        paths = [line.split('"')[1] for line in empty.access_log_lines()]
    assert paths and all(p.startswith("GET /v2/_catalog") for p in paths)
    assert all_tags(pusher) == UNTOUCHED


def test_explicit_url_applies_there(registry, pusher, planned, tmp_path):
    """A plan made from one registry applied to a mirror holding the same images: deleted there, not here."""
    from pusher import Pusher

    images, db, path = planned
    with RegistryServer(tmp_path / "mirror") as mirror, Pusher(mirror.url) as mirror_pusher:
        assert seed(mirror_pusher)["old"].digest == images["old"].digest
        result = CliRunner().invoke(main, ["retention", "apply", str(path), "--db", str(db), "--yes",
                                           "--registry-url", mirror.url])
        assert result.exit_code == 0, result.output
        assert "keep-newest: applied: 2 deleted" in result.stderr
        assert sorted(mirror_pusher.tags("svc")) == ["latest", "v3"]
    assert all_tags(pusher) == UNTOUCHED
