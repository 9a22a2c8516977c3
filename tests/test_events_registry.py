"""Registry events end to end: the real docker-registry notifies a real `repoaudit events serve` process.

The registry's `notifications.endpoints` points at the receiver with the bearer token in its headers;
images are pushed through the push API, pulled by skopeo, by an httpx client posing as containerd (a
runtime) and as Trivy (a scanner); the spool is ingested and the pull-based retention rules run on it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pandas as pd
import pytest
from pusher import Pusher, layer_bytes
from registry import RegistryServer, free_port

import repoaudit
from repoaudit.errors import PolicyError
from repoaudit.retention.formats import load_policy

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "notify-token-never-stored"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONTAINERD = "containerd/v1.7.13"
TRIVY = "Trivy/0.50.1"


class Receiver:
    """One `repoaudit events serve` subprocess on a fixed port and spool (restartable on both)."""

    def __init__(self, workdir: Path, token: str = TOKEN, extra: tuple[str, ...] = ()):
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.spool = workdir / "spool"
        self.port = free_port()
        self.token_file = workdir / "token"
        self.token_file.write_text(token + "\n")
        self.log_path = workdir / "receiver.log"
        self.extra = extra
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "repoaudit.cli", "events", "serve", "--spool", str(self.spool), "--host",
             "127.0.0.1", "--port", str(self.port), "--token-file", str(self.token_file), *self.extra],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=ROOT)
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log_path.read_text()[-2000:]
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"receiver did not come up: {self.log_path.read_text()[-2000:]}")

    def health(self) -> dict:
        return httpx.get(f"{self.url}/healthz", timeout=5).json()

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> bool:
        """SIGTERM; True when the receiver shut down cleanly (uvicorn re-raises the signal once it has)."""
        if self.process is None or self.process.poll() is not None:
            return False
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=30)
        return code in (0, -signal.SIGTERM) and "Application shutdown complete" in self.log_path.read_text()

    def spooled(self) -> list[dict]:
        """Every spool line on disk now (open and closed files, not yet ingested)."""
        lines = []
        for path in sorted(self.spool.glob("events-*")):
            lines.extend(json.loads(line) for line in path.read_bytes().splitlines() if line.strip())
        return lines


def notifying_registry(workdir: Path, receiver: Receiver, **extra) -> RegistryServer:
    return RegistryServer(workdir, extra={
        "log": {"formatter": "json"},
        "notifications": {"endpoints": [{
            "name": "repoaudit", "url": f"{receiver.url}/events",
            "headers": {"Authorization": [f"Bearer {TOKEN}"]},
            "timeout": "1s", "threshold": 3, "backoff": "100ms"}]},
        **extra})


def wait_for(predicate, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def pull(registry: RegistryServer, repo: str, tag: str, user_agent: str) -> str:
    """A runtime-style pull: HEAD the tag for its digest, then GET the manifest by digest."""
    with httpx.Client(headers={"User-Agent": user_agent, "Accept": OCI_MANIFEST}) as client:
        head = client.head(f"{registry.url}/v2/{repo}/manifests/{tag}")
        head.raise_for_status()
        digest = head.headers["docker-content-digest"]
        client.get(f"{registry.url}/v2/{repo}/manifests/{digest}").raise_for_status()
    return digest


def manifest_pulls(lines: list[dict]) -> list[dict]:
    return [x["body"] for x in lines if x["body"]["action"] == "pull" and "/manifests/" in x["body"]["target"]["url"]]


@pytest.fixture
def receiver(tmp_path: Path):
    server = Receiver(tmp_path / "receiver")
    server.start()
    yield server
    server.stop()


def test_push_and_pull_history_from_notifications(tmp_path, receiver, skopeo):
    # Before notifications: an image the events never saw pushed, in its own repository.
    registry = RegistryServer(tmp_path / "registry", extra={"log": {"formatter": "json"}})
    registry.start()
    with Pusher(registry.url) as pusher:
        pusher.push_image("legacy/base", ["v1"], layers=[layer_bytes("legacy", 300)])
    db = tmp_path / "audit.duckdb"
    with repoaudit.open(db) as audit:
        audit.collect(registry.url, progress=False)
    registry.stop()
    # The same registry, now notifying the receiver.
    registry.extra = notifying_registry(tmp_path / "unused", receiver).extra
    registry.start()
    try:
        before_push = datetime.now(timezone.utc).replace(tzinfo=None)
        with Pusher(registry.url) as pusher:
            app1 = pusher.push_image("team/app", ["v1"], layers=[layer_bytes("app1", 400)])
            app2 = pusher.push_image("team/app", ["v2"], layers=[layer_bytes("app2", 500)])
            old = pusher.push_image("team/old", ["v1"], layers=[layer_bytes("old", 600)])
        after_push = datetime.now(timezone.utc).replace(tzinfo=None)
        skopeo("inspect", f"docker://{registry.host}/team/app:v2")
        assert pull(registry, "team/app", "v1", CONTAINERD) == app1.digest
        pull(registry, "team/app", "v2", TRIVY)
        pull(registry, "team/old", "v1", TRIVY)
        # Events of one endpoint are delivered in order: the last pull spooled means all are.
        wait_for(lambda: any(p["target"]["repository"] == "team/old" and p["request"]["method"] == "GET"
                             for p in manifest_pulls(receiver.spooled())), "the last pull to be spooled")
        with repoaudit.open(db) as audit:
            audit.collect(registry.url, progress=False)
    finally:
        registry.stop()
    assert receiver.stop()  # SIGTERM: a clean exit, the spool file closed
    assert not list(receiver.spool.glob("*.part")) and list(receiver.spool.glob("*.jsonl"))
    assert TOKEN not in "".join(p.read_text() for p in receiver.spool.iterdir() if p.is_file())

    with repoaudit.open(db) as audit:
        result = audit.ingest_events([receiver.spool])
        assert result.new == result.read > 0 and result.moved
        classes = result.pulls_by_class
        # containerd's HEAD and GET; Trivy's two; skopeo's GET and repoaudit's own collection (tools: ci).
        assert (classes["workload"], classes["scanner"], set(classes)) == (2, 4, {"workload", "scanner", "ci"}), \
            result.summary()
        again = audit.ingest_events([receiver.spool / "ingested"])
        assert again.new == 0 and again.read == result.read
        registry_name = audit.sql("SELECT DISTINCT registry FROM snapshots")["registry"].tolist()
        assert audit.sql("SELECT DISTINCT registry FROM registry_events")["registry"].tolist() == registry_name

        pushes = audit.sql("SELECT repository, digest, pushed_at FROM event_push_times ORDER BY pushed_at")
        assert pushes["digest"].tolist() == [app1.digest, app2.digest, old.digest]
        assert all(before_push <= t.to_pydatetime() <= after_push for t in pushes["pushed_at"])
        lifecycle = audit.sql("SELECT repository, pushed_source FROM image_push_times ORDER BY repository")
        assert lifecycle.to_dict("list") == {"repository": ["legacy/base", "team/app", "team/app", "team/old"],
                                             "pushed_source": ["first_seen", "event", "event", "event"]}

        last = audit.sql("SELECT repository, digest, pulls, last_client FROM last_pull")
        # Only the runtime's pulls (its HEAD and GET); skopeo (CI) and Trivy (scanner) are not use.
        assert last.to_dict("records") == [{"repository": "team/app", "digest": app1.digest, "pulls": 2,
                                            "last_client": "containerd"}]
        by_day = audit.sql("SELECT client_class, sum(pulls)::INT AS pulls, sum(checks)::INT AS checks "
                           "FROM pulls_by_day GROUP BY 1 ORDER BY 1").set_index("client_class")
        assert by_day.loc["workload"].tolist() == [1, 1] and by_day.loc["scanner"].tolist() == [2, 2]
        skopeo_pulls = audit.sql("SELECT count(*) AS n FROM registry_events WHERE client_rule = 'skopeo' "
                                 "AND action = 'pull' AND kind = 'manifest'")["n"][0]
        assert skopeo_pulls == 1
        coverage = audit.sql("SELECT * FROM event_coverage")
        assert len(coverage) == 1 and before_push - (after_push - before_push) < coverage["events_since"][0]

        # Pull-based retention on that estate: v2 and team/old were only ever pulled by a scanner.
        native = {"name": "pulled", "rules": [{"name": "used", "keep": {"pulled_within": "30d"}}]}
        harbor = {"algorithm": "or", "rules": [{"template": "nDaysSinceLastPull", "action": "retain",
                                                "params": {"nDaysSinceLastPull": 30},
                                                "tag_selectors": [{"kind": "doublestar", "decoration": "matches",
                                                                   "pattern": "**"}],
                                                "scope_selectors": {"repository": [{
                                                    "kind": "doublestar", "decoration": "repoMatches",
                                                    "pattern": "**"}]}}]}
        latest = json.loads(json.dumps(harbor).replace("nDaysSinceLastPull", "latestPulledN")
                            .replace(": 30", ": 1"))
        plan = audit.retention(native, load_policy(harbor, name="days"), load_policy(latest, name="latest"),
                               include=["team/**"])
        cands = plan.candidates
        chosen = {name: sorted(cands[cands["policy"] == name]["digest"]) for name in ("pulled", "days", "latest")}
        assert chosen["pulled"] == sorted([app2.digest, old.digest])
        assert chosen["days"] == chosen["pulled"]
        # latestPulledN: 1 keeps the most recently pulled of each repository, and team/old's only image too.
        assert chosen["latest"] == [app2.digest]
        assert any("pull times from registry events, complete since" in w for w in plan.warnings)
        assert set(cands["pushed_source"]) == {"event"}

        # stale_images: "not pulled by a runtime in N days" where events cover it; legacy/base predates them.
        stale = audit.query("stale_images", older_than_days=-1, keep_newest=0, not_pulled_days=1)
        assert sorted(stale["digest"]) == sorted([app2.digest, old.digest])
        assert stale["events_since"].notna().all() and stale["last_pulled_at"].isna().all()
        everything = audit.query("stale_images", older_than_days=-1, keep_newest=0)
        assert len(everything) == 4 and everything.set_index("digest").loc[app1.digest, "last_pulled_at"] is not None

        unpulled = audit.query("unpulled_images", days=30).set_index("digest")
        assert unpulled.loc[app1.digest, "pulled_recently"] and unpulled.loc[app1.digest, "known"]
        assert not unpulled.loc[app2.digest, "pulled_recently"] and unpulled.loc[app2.digest, "known"]
        assert not unpulled["known"][unpulled["repository"] == "legacy/base"].any()
        report = audit.report(fmt="html")
        assert "<h2>Pull history</h2>" in report and "2 images not pulled by a runtime in 30 days" in report

        # Without the include, legacy/base was pushed before events began: refused, saying since when.
        with pytest.raises(PolicyError, match=r"events of registry .* are complete only since \d{4}-"):
            audit.retention(native)


def test_a_killed_receiver_loses_no_event(tmp_path, receiver):
    registry = notifying_registry(tmp_path / "registry", receiver)
    registry.start()
    pushed: list[str] = []
    try:
        def push_all():
            with Pusher(registry.url) as pusher:
                for i in range(40):
                    pushed.append(pusher.push_image(f"load/r{i % 4}", [f"t{i}"],
                                                    layers=[layer_bytes(f"k{i}", 64)]).digest)

        worker = threading.Thread(target=push_all)
        worker.start()
        wait_for(lambda: receiver.health()["accepted_events"] >= 20, "events before the kill")
        receiver.kill()  # SIGKILL mid-stream: the registry's queue holds whatever was not acknowledged
        spooled_at_kill = len(receiver.spooled())
        time.sleep(1.0)  # the registry fails and backs off meanwhile
        receiver.start()
        worker.join(timeout=120)
        assert not worker.is_alive() and len(pushed) == 40
        last = pushed[-1]
        wait_for(lambda: any(x["body"]["target"].get("digest") == last and x["body"]["action"] == "push"
                             for x in receiver.spooled()), "the last push to be spooled")
    finally:
        registry.stop()
    assert receiver.stop()
    assert spooled_at_kill > 0
    # The killed receiver's open file was closed by the next one (a torn last line dropped: never acknowledged).
    assert "closed a spool file a previous receiver left open" in receiver.log_path.read_text()
    lines = receiver.spooled()
    ids = [x["body"]["id"] for x in lines]
    db = tmp_path / "kill.duckdb"
    with repoaudit.open(db) as audit:
        result = audit.ingest_events([receiver.spool])
        stored = audit.sql("SELECT event_id, action, kind, digest FROM registry_events")
    # Exactly once: one row per distinct id the registry sent, whatever the spool repeated.
    assert result.new == len(set(ids)) == len(stored)
    manifests = stored[(stored["kind"] == "manifest") & (stored["action"] == "push")]
    assert sorted(manifests["digest"]) == sorted(pushed)
    # Every blob the pushes uploaded (a layer and a config each) has its push event too.
    assert (stored["kind"] == "blob").sum() == 80
    # What the registry's own log says it answered matches: one event per manifest PUT it accepted.
    log = [json.loads(line) for line in registry.log_path.read_text().splitlines() if line.startswith("{")]
    puts = [x for x in log if x.get("msg") == "response completed" and x.get("http.request.method") == "PUT"
            and "/manifests/" in x.get("http.request.uri", "") and x.get("http.response.status") == 201]
    assert len(puts) == len(manifests) == 40


def test_receiver_refuses_what_it_must_not_spool(tmp_path, receiver):
    event = {"events": [{"id": "e1", "timestamp": "2026-01-01T00:00:00Z", "action": "pull",
                         "target": {"repository": "a/b", "digest": "sha256:" + "a" * 64,
                                    "url": "http://r.example/v2/a/b/manifests/sha256:" + "a" * 64},
                         "request": {"useragent": CONTAINERD, "method": "GET"}}]}
    url = f"{receiver.url}/events"
    ctype = {"Content-Type": "application/vnd.docker.distribution.events.v1+json"}
    with httpx.Client(timeout=30) as client:
        assert client.post(url, json=event, headers=ctype).status_code == 401
        assert client.post(url, json=event, headers={**ctype, "Authorization": "Bearer guess-4711"}).status_code == 401
        assert client.post(url, json=event, headers={**ctype, "Authorization": f"Basic {TOKEN}"}).status_code == 401
        assert not receiver.spooled()
        good = {**ctype, "Authorization": f"Bearer {TOKEN}"}
        for body in (b"{not json", b"[]", json.dumps({"events": [{"id": "x"}]}).encode(),
                     json.dumps({"events": [{**event["events"][0], "action": "steal"}]}).encode(),
                     json.dumps({"events": [{**event["events"][0], "timestamp": "yesterday"}]}).encode()):
            response = client.post(url, content=body, headers=good)
            assert response.status_code == 400, body
        assert not receiver.spooled()
        big = b'{"events": [' + b" " * (10 << 20) + b"]}"
        assert client.post(url, content=big, headers=good).status_code == 413
        assert client.post(url, json=event, headers={**good, "Content-Type": "text/plain"}).status_code == 415
        assert client.get(url, headers=good).status_code == 405
        assert not receiver.spooled()
        assert client.post(url, json=event, headers=good).json() == {"accepted": 1}
    assert len(receiver.spooled()) == 1
    log = receiver.log_path.read_text()
    assert "400 from 127.0.0.1" in log and "events[0].action is 'steal'" in log
    assert TOKEN not in log and "guess-4711" not in log


def test_access_log_lines_fill_in_without_duplicates(tmp_path, receiver):
    """A registry's JSON log gives the same pulls; with the spool, each request is stored once."""
    registry = notifying_registry(tmp_path / "registry", receiver)
    registry.start()
    try:
        with Pusher(registry.url) as pusher:
            image = pusher.push_image("team/logged", ["v1"], layers=[layer_bytes("logged", 100)])
        pull(registry, "team/logged", "v1", CONTAINERD)
        wait_for(lambda: len(manifest_pulls(receiver.spooled())) == 2, "both pulls spooled")
    finally:
        registry.stop()
    receiver.stop()
    log_copy = tmp_path / "registry.json.log"
    log_copy.write_bytes(registry.log_path.read_bytes())
    with repoaudit.open(tmp_path / "log-only.duckdb") as audit:
        result = audit.ingest_events([log_copy])
        assert result.skipped_lines > 0 and not result.moved
        rows = audit.sql("SELECT action, method, digest, tag, client_class, origin FROM registry_events "
                         "ORDER BY occurred_at").to_dict("records")
        assert [(r["action"], r["method"], r["client_class"]) for r in rows] == [
            ("push", "PUT", "human"), ("pull", "HEAD", "workload"), ("pull", "GET", "workload")]
        assert rows[2]["digest"] == image.digest and rows[1]["tag"] == "v1" and pd.isna(rows[1]["digest"])
        assert {r["origin"] for r in rows} == {"accesslog"}
    with repoaudit.open(tmp_path / "both.duckdb") as audit:
        first = audit.ingest_events([receiver.spool])
        second = audit.ingest_events([log_copy])
        # The log's manifest requests are the same requests the notifications named (same request id).
        assert second.new == 0, second.summary()
        assert audit.sql("SELECT count(*) AS n FROM registry_events WHERE kind = 'manifest'")["n"][0] == 3
        assert first.new > 3  # blob events come from notifications only


def test_harbor_webhooks_with_basic_credentials(tmp_path):
    """Harbor's "Auth header" is sent verbatim; basic credentials work as well as a token."""
    basic = tmp_path / "basic"
    basic.write_text("harbor:webhook-pass\n")
    receiver = Receiver(tmp_path / "receiver", extra=("--basic-file", str(basic)))
    receiver.start()
    digest = "sha256:" + "cd" * 32
    webhook = {"type": "PULL_ARTIFACT", "occur_at": 1764496800, "operator": "robot$library+Trivy-8d1c",
               "event_data": {"resources": [{"digest": digest, "tag": "1.25",
                                             "resource_url": "harbor.example.com/library/nginx:1.25"}],
                              "repository": {"name": "nginx", "namespace": "library",
                                             "repo_full_name": "library/nginx"}}}
    try:
        with httpx.Client(timeout=30) as client:
            assert client.post(f"{receiver.url}/hook", json=webhook,
                               auth=("harbor", "not-the-password")).status_code == 401
            for _ in range(2):  # Harbor retried: same fields, same event
                assert client.post(f"{receiver.url}/hook", json=webhook,
                                   auth=("harbor", "webhook-pass")).json() == {"accepted": 1}
            runtime = {**webhook, "operator": "k8s-puller", "occur_at": 1764496900}
            assert client.post(f"{receiver.url}/hook", json=runtime, auth=("harbor", "webhook-pass")).status_code == 200
    finally:
        assert receiver.stop()
    with repoaudit.open(tmp_path / "h.duckdb") as audit:
        result = audit.ingest_events([receiver.spool])
        assert (result.read, result.new) == (2, 2)
        rows = audit.sql("SELECT registry, repository, digest, tag, actor, client_class, origin "
                         "FROM registry_events ORDER BY occurred_at").to_dict("records")
    assert rows[0] == {"registry": "harbor.example.com", "repository": "library/nginx", "digest": digest,
                       "tag": "1.25", "actor": "robot$library+Trivy-8d1c", "client_class": "scanner",
                       "origin": "harbor"}
    assert rows[1]["client_class"] == "human"  # no user agent in a webhook: a rule on the operator decides


def test_a_quiet_receiver_closes_its_file_by_age(tmp_path):
    """Rotation by age runs on the writer's timer too, so a registry that goes quiet still gets ingested."""
    receiver = Receiver(tmp_path / "receiver", extra=("--rotate-age", "1s"))
    receiver.start()
    event = {"events": [{"id": "quiet-1", "timestamp": "2026-01-01T00:00:00Z", "action": "push",
                         "target": {"repository": "a/b", "digest": "sha256:" + "e" * 64}}]}
    try:
        response = httpx.post(f"{receiver.url}/events", json=event, headers={"Authorization": f"Bearer {TOKEN}"})
        assert response.status_code == 200
        assert list(receiver.spool.glob("*.jsonl.part"))
        wait_for(lambda: list(receiver.spool.glob("*.jsonl")) and not list(receiver.spool.glob("*.part")),
                 "the file to be closed by age", timeout=30)
    finally:
        assert receiver.stop()
