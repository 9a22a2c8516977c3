"""Registry events without a registry: envelope validation, who pulled, the spool, ingest's all-or-nothing."""

from __future__ import annotations

import json
import os

import pytest
from click.testing import CliRunner

import repoaudit
from repoaudit.cli import main
from repoaudit.errors import ConfigError, EventError, IngestError, PolicyError
from repoaudit.events import (
    Classifier,
    Spool,
    envelope_events,
    load_rules,
    log_line_event,
    spool_lines,
)

DIGEST = "sha256:" + "ab" * 32


def dist_event(**over) -> dict:
    event = {"id": "ev-1", "timestamp": "2026-11-30T10:00:00.123456789+01:00", "action": "pull",
             "target": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 512, "digest": DIGEST,
                        "repository": "team/app", "tag": "v1",
                        "url": f"http://registry.example:5000/v2/team/app/manifests/{DIGEST}"},
             "request": {"id": "req-1", "addr": "10.1.2.3:40000", "host": "registry.example:5000",
                         "method": "GET", "useragent": "containerd/v1.7.13"},
             "actor": {"name": "ci-bot"}, "source": {"addr": "registry-0:5000"}}
    event.update(over)
    return event


HARBOR = {"type": "PULL_ARTIFACT", "occur_at": 1764496800, "operator": "robot$library+Trivy-8d1c",
          "event_data": {"resources": [{"digest": DIGEST, "tag": "v1",
                                        "resource_url": "harbor.example.com/library/nginx:v1"}],
                         "repository": {"name": "nginx", "namespace": "library", "repo_full_name": "library/nginx"}}}


def test_distribution_envelope_is_read_field_by_field():
    origin, [event] = envelope_events({"events": [dist_event()]})
    assert origin == "distribution"
    assert (event.event_id, event.action, event.kind, event.method, event.registry, event.repository,
            event.digest, event.tag, event.size, event.actor, event.source_addr, event.request_id) == (
        "ev-1", "pull", "manifest", "GET", "registry.example:5000", "team/app", DIGEST, "v1", 512, "ci-bot",
        "10.1.2.3", "req-1")
    assert event.occurred_at.isoformat() == "2026-11-30T09:00:00.123456"  # UTC, microseconds
    blob = dist_event(target={"mediaType": "application/octet-stream", "digest": DIGEST, "repository": "a",
                              "url": f"http://r/v2/a/blobs/{DIGEST}", "length": 7})
    assert envelope_events({"events": [blob]})[1][0].kind == "blob"


@pytest.mark.parametrize("body, message", [
    ([], "body is list"),
    ({"events": {}}, "events is dict"),
    ({"events": [dist_event(id="")]}, "events[0].id is missing"),
    ({"events": [dist_event(action="copy")]}, "events[0].action is 'copy'"),
    ({"events": [dist_event(timestamp="soon")]}, "events[0].timestamp is 'soon'"),
    ({"events": [dist_event(target={"repository": 7})]}, "events[0].target.repository is int"),
    ({"events": [dist_event(target={"repository": "a", "digest": "md5"})]}, "events[0].target.digest is 'md5'"),
    ({"events": [dist_event(target={"repository": "a", "size": -1})]}, "events[0].target.size is -1"),
    ({"events": [dist_event(), "x"]}, "events[1] is str"),
    ({**HARBOR, "type": "SCANNING_COMPLETED"}, "webhook.type is 'SCANNING_COMPLETED'"),
    ({**HARBOR, "occur_at": "now"}, "webhook.occur_at is 'now'"),
    ({**HARBOR, "event_data": {"resources": [], "repository": HARBOR["event_data"]["repository"]}},
     "webhook.event_data.resources is list, expected a non-empty list"),
    ({"hello": 1}, "body has neither 'events'"),
])
def test_bad_envelopes_name_what_is_wrong(body, message):
    with pytest.raises(EventError) as info:
        envelope_events(body)
    assert str(info.value).startswith(message), str(info.value)


def test_harbor_webhook_ids_are_stable_per_event():
    origin, [event] = envelope_events(HARBOR)
    assert origin == "harbor" and event.action == "pull" and event.repository == "library/nginx"
    assert event.registry == "harbor.example.com" and event.actor.startswith("robot$")
    assert envelope_events(json.loads(json.dumps(HARBOR)))[1][0].event_id == event.event_id  # a retry
    assert envelope_events({**HARBOR, "occur_at": 1764496801})[1][0].event_id != event.event_id


def test_log_lines_become_manifest_events_only():
    base = {"msg": "response completed", "time": "2026-11-30T10:00:00Z", "http.request.id": "r1",
            "http.request.host": "reg:5000", "http.request.remoteaddr": "[::1]:5555",
            "http.request.useragent": "cri-o/1.28.1"}
    pull = log_line_event({**base, "http.request.method": "GET", "http.request.uri": "/v2/a/b/manifests/v2",
                           "http.response.status": 200}, None)
    assert (pull.action, pull.tag, pull.digest, pull.source_addr, pull.registry) == ("pull", "v2", None, "::1",
                                                                                      "reg:5000")
    assert log_line_event({**base, "http.request.method": "GET", "http.request.uri": f"/v2/a/blobs/{DIGEST}",
                           "http.response.status": 200}, None) is None
    assert log_line_event({**base, "http.request.method": "GET", "http.request.uri": "/v2/a/manifests/x",
                           "http.response.status": 404}, None) is None
    assert log_line_event({"msg": "listening on [::]:5000"}, None) is None
    with pytest.raises(EventError, match="without http.request.method"):
        log_line_event({"msg": "response completed"}, None)


@pytest.mark.parametrize("user_agent, actor, expected", [
    ("containerd/v1.7.13", None, ("workload", "containerd")),
    ("cri-o/1.28.1 go/go1.20.10 os/linux arch/amd64", None, ("workload", "cri-o")),
    ("docker/24.0.7 go/go1.20.10 git-commit/311b9ff kernel/6.5.0 os/linux arch/amd64", None, ("workload", "docker")),
    ("Trivy/0.50.1", None, ("scanner", "trivy")),
    ("go-containerregistry/v0.19.0 trivy", None, ("scanner", "trivy")),  # scanners before the tools they wrap
    ("Go-http-client/1.1", "robot$library+Trivy-8d1c", ("scanner", "harbor scan job")),
    ("grype/0.74.0", None, ("scanner", "grype")),
    ("skopeo/1.13.3", None, ("ci", "skopeo")),
    ("crane/v0.19.0", None, ("ci", "crane")),
    ("regclient/regctl (v0.5.6)", None, ("ci", "regctl")),
    ("harbor-registry-client", None, ("replication", "harbor replication")),
    ("curl/8.5.0", None, ("human", None)),
    (None, None, ("human", None)),
])
def test_default_rules_know_the_common_clients(user_agent, actor, expected):
    assert Classifier().classify(user_agent, actor, None) == expected


def test_a_rules_file_comes_before_the_defaults(tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - {class: workload, name: nodes, address: '^10\\.42\\.'}\n"
                     "  - {class: scanner, name: in-house, user_agent: '^acme-scan/', actor: '^svc-'}\n")
    classifier = load_rules(rules)
    assert classifier.classify("curl/8", None, "10.42.0.9") == ("workload", "nodes")
    assert classifier.classify("acme-scan/2", "svc-x", None) == ("scanner", "in-house")
    assert classifier.classify("acme-scan/2", "alice", None) == ("human", None)  # every test of a rule must match
    assert classifier.classify("Trivy/0.50", None, None) == ("scanner", "trivy")  # defaults follow
    for text, message in (("rules: [{class: robot, user_agent: x}]", "rules[0].class: 'robot'"),
                          ("rules: [{class: ci}]", "rules[0]: needs at least one of"),
                          ("rules: [{class: ci, user_agent: '('}]", "is not a regular expression"),
                          ("rules: [{class: ci, agent: x}]", "unknown key 'agent'"),
                          ("rules: {}", "expected a mapping with a 'rules' list")):
        rules.write_text(text)
        with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")):
            load_rules(rules)


def test_spool_rotates_by_size_and_age_and_recovers_a_torn_file(tmp_path):
    spool = Spool(tmp_path, max_bytes=1000, max_age=3600)
    line = spool_lines("distribution", [dist_event()])
    assert len(line) < 1000 < 2 * len(line)
    spool.append(line)
    spool.append(line)  # over 1000 bytes: a new file
    assert len(list(tmp_path.glob("*.jsonl"))) == 1 and spool.current.name.endswith(".jsonl.part")
    spool.max_age = 0
    assert spool.rotate_if_old() is not None and spool.current is None
    assert len(list(tmp_path.glob("*.jsonl"))) == 2
    # A receiver killed mid-write: its .part ends in half a line, which was never acknowledged.
    torn = tmp_path / "events-20260101T000000000000Z-1-000001.jsonl.part"
    torn.write_bytes(line + line[:40])
    recovered = Spool(tmp_path).recovered
    assert [p.name for p in recovered] == [torn.name[:-len(".part")]]
    assert recovered[0].read_bytes() == line


def _spool_file(tmp_path, events, name="events-1.jsonl"):
    path = tmp_path / name
    path.write_bytes(spool_lines("distribution", events))
    return path


def test_ingest_is_all_or_nothing_and_idempotent(tmp_path):
    good = _spool_file(tmp_path, [dist_event(id="a"), dist_event(id="b", action="push")])
    dupe = _spool_file(tmp_path, [dist_event(id="a")], "events-2.jsonl")
    bad = tmp_path / "events-3.jsonl"
    bad.write_bytes(spool_lines("distribution", [dist_event(id="c")]) + b'{"v": 1, "origin": "distribution", '
                    b'"body": {"id": "d", "action": "pull"}}\n')
    db = tmp_path / "a.duckdb"
    with repoaudit.open(db) as audit:
        with pytest.raises(IngestError, match=r"events-3.jsonl:2: event.target.repository is missing"):
            audit.ingest_events([tmp_path])
        assert audit.sql("SELECT count(*) AS n FROM registry_events")["n"][0] == 0
        assert good.exists() and dupe.exists()  # nothing moved when nothing was stored
        bad.unlink()
        result = audit.ingest_events([tmp_path])
        assert (result.read, result.new, len(result.moved)) == (2, 2, 2)
        assert not good.exists() and (tmp_path / "ingested" / good.name).exists()
        again = audit.ingest_events([tmp_path / "ingested"])
        assert again.new == 0
        with pytest.raises(IngestError, match="still being written"):
            audit.ingest_events([tmp_path / "x.jsonl.part"])


def test_reclassify_applies_new_rules_to_stored_events(tmp_path):
    _spool_file(tmp_path, [dist_event(id="a", request={"useragent": "acme-runtime/1", "method": "GET"})])
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules: [{class: workload, name: acme, user_agent: '^acme-runtime/'}]\n")
    with repoaudit.open(tmp_path / "a.duckdb") as audit:
        audit.ingest_events([tmp_path])
        assert audit.sql("SELECT client_class FROM registry_events")["client_class"][0] == "human"
        result = audit.ingest_events([tmp_path / "ingested"], rules=rules, reclassify=True)
        assert result.reclassified == 1
        assert audit.sql("SELECT client_class FROM registry_events")["client_class"][0] == "workload"
        assert audit.sql("SELECT count(*) AS n FROM last_pull")["n"][0] == 1


def test_cli_ingest_events_fails_in_one_line(tmp_path):
    runner = CliRunner()
    db = str(tmp_path / "c.duckdb")
    result = runner.invoke(main, ["ingest", "events", str(tmp_path / "missing.jsonl"), "--db", db])
    assert result.exit_code == 1 and result.output.strip().count("\n") == 0 and "no such file" in result.output
    path = _spool_file(tmp_path, [dist_event()])
    result = runner.invoke(main, ["ingest", "events", str(path), "--db", db])
    assert result.exit_code == 0 and "1 new" in result.output, result.output
    result = runner.invoke(main, ["events", "serve", "--spool", str(tmp_path / "s")],
                           env={"REPOAUDIT_EVENTS_TOKEN": "", "REPOAUDIT_EVENTS_BASIC": ""})
    assert result.exit_code == 1 and "give a bearer token or basic credentials" in result.output
    assert not os.path.exists(tmp_path / "s") or not list((tmp_path / "s").iterdir())


def test_a_text_format_log_is_refused_with_the_fix(tmp_path):
    log = tmp_path / "registry.log"
    log.write_text('time="2026-12-01T00:00:00Z" level=info msg="response completed" http.request.method=GET\n'
                   '127.0.0.1 - - [01/Dec/2026:00:00:00 +0000] "GET /v2/ HTTP/1.1" 200 2 "" "curl/8"\n')
    with repoaudit.open(tmp_path / "a.duckdb") as audit:
        with pytest.raises(IngestError, match="log.formatter: json"):
            audit.ingest_events([log])


def test_pull_rules_are_refused_where_a_registry_has_no_events(demo_db):
    with repoaudit.open(demo_db, read_only=True) as audit:
        with pytest.raises(PolicyError, match=r"used: keep pulled within 30d: needs pull times, and registry .* "
                                              r"has no events"):
            audit.retention({"name": "p", "rules": [{"name": "used", "keep": {"pulled_within": "30d"}}]})
        plan = audit.retention({"name": "q", "rules": [{"keep": {"most_recent": 3}}]})  # no pull rule: as before
        assert not any("registry events" in w for w in plan.warnings)
