"""Registry access posture (repoaudit.collect.posture) against the real Distribution registry.

Open mode, htpasswd, token auth (a real token server) and TLS with a test CA: every posture field is
checked against the configuration that produced it. The anonymous probes are checked never to carry
the collection's credentials through the registry's own log (each probe request is one access-log
line with the probes' User-Agent, and Distribution logs the authenticated user of any request that
authenticated) and through the token server's record of every token request.
"""

from __future__ import annotations

import asyncio
import ssl
from datetime import timedelta

import pytest
from pusher import Pusher, layer_bytes
from registry import RegistryServer
from tokenserver import StaticBearer, TokenServer, make_pki

import repoaudit
from repoaudit.collect.posture import USER_AGENT, _accepts, probe

USER, PASSWORD = "alice", "correct-horse-battery"


def posture_row(db) -> dict:
    with repoaudit.open(db, read_only=True) as audit:
        frame = audit.sql("SELECT * FROM registry_posture ORDER BY snapshot_id DESC LIMIT 1")
    assert len(frame) == 1
    return frame.iloc[0].to_dict()


def probe_lines(server: RegistryServer) -> list[str]:
    return [line for line in server.access_log_lines() if USER_AGENT.split("/")[0] + "/" in line]


def upload_files_on_disk(server: RegistryServer) -> list[str]:
    """Files of upload sessions, except hash states: Distribution 2.8 closes a cancelled upload's writer after
    its DELETE handler removed the session, which writes the (empty) hash state at offset 0 again; its
    upload purging removes those. The session's data and start time are what an upload leaves."""
    root = server.storage_dir / "docker" / "registry" / "v2" / "repositories"
    return sorted(str(p.relative_to(root)) for p in root.rglob("_uploads/**/*")
                  if p.is_file() and "hashstates" not in p.parts)


def test_open_registry_everything_anonymous_and_push_probe_leaves_nothing(registry, pusher, tmp_path):
    pusher.push_image("team/app", ["1.0", "latest"], layers=[layer_bytes("open", 900)])
    pusher.push_image("zeta/other", ["2.0"], layers=[layer_bytes("zeta", 700)])
    blobs_before = registry.blob_digests()
    db = tmp_path / "a.duckdb"
    with repoaudit.open(db) as audit:
        result = audit.collect(registry.url, progress=False, probe_push=True)
    assert result.status == "complete"
    row = posture_row(db)
    assert row["snapshot_id"] == result.snapshot_id and row["registry"] == registry.host
    assert row["plain_http"] and row["auth_scheme"] == "none"
    assert (row["v2_status"], row["catalog_status"], row["tags_status"], row["manifest_status"]) == (200, 200, 200, 200)
    assert row["v2_anonymous"] and row["catalog_anonymous"] and row["tags_anonymous"] and row["manifest_anonymous"]
    # The sample is the first repository collected, with a tag it served.
    assert (row["sample_repository"], row["sample_tag"]) == ("team/app", "1.0")
    assert row["push_probed"] and row["push_status"] == 202 and row["push_anonymous"] and row["push_cancelled"]
    assert row["tls_version"] is None and row["cert_trust"] is None and row["weak_tls"] is None
    # The cancelled upload is gone from storage, and no blob was added.
    assert upload_files_on_disk(registry) == []
    assert registry.blob_digests() == blobs_before
    statuses = [line.split('" ')[1].split()[0] for line in probe_lines(registry)]
    assert statuses == ["200", "200", "200", "200", "202", "204"]  # one request per probe


def test_an_upload_left_open_is_seen_on_disk(registry, pusher):
    """The check above can fail: an upload that is started and not cancelled leaves its files."""
    import httpx

    pusher.push_image("team/app", ["1.0"])
    assert httpx.post(f"{registry.url}/v2/team/app/blobs/uploads/").status_code == 202
    assert [p.rsplit("/", 1)[1] for p in upload_files_on_disk(registry)] == ["data", "startedat"]


def test_push_probe_is_opt_in(registry, pusher, tmp_path):
    pusher.push_image("team/app", ["1.0"])
    db = tmp_path / "a.duckdb"
    with repoaudit.open(db) as audit:
        audit.collect(registry.url, progress=False)
    row = posture_row(db)
    assert not row["push_probed"] and row["push_status"] is None
    assert not any('"POST ' in line for line in probe_lines(registry))


def test_no_posture_flag_records_nothing(registry, pusher, tmp_path):
    pusher.push_image("team/app", ["1.0"])
    db = tmp_path / "a.duckdb"
    with repoaudit.open(db) as audit:
        audit.collect(registry.url, progress=False, posture=False)
        assert audit.sql("SELECT count(*) AS n FROM registry_posture").n[0] == 0


def test_htpasswd_registry_refuses_the_anonymous_probes_and_credentials_are_never_sent(tmp_path):
    server = RegistryServer(tmp_path / "registry", htpasswd={USER: PASSWORD})
    server.start()
    try:
        with Pusher(server.url, auth=(USER, PASSWORD)) as pusher:
            pusher.push_image("team/app", ["1.0"], layers=[layer_bytes("basic", 800)])
        db = tmp_path / "a.duckdb"
        with repoaudit.open(db) as audit:
            result = audit.collect(server.url, username=USER, password=PASSWORD, progress=False, probe_push=True,
                                   use_credential_store=False)
        assert result.status == "complete"  # the collection itself authenticated
        row = posture_row(db)
        assert row["auth_scheme"] == "basic"
        assert (row["v2_status"], row["catalog_status"], row["tags_status"], row["manifest_status"],
                row["push_status"]) == (401, 401, 401, 401, 401)
        assert not (row["v2_anonymous"] or row["catalog_anonymous"] or row["tags_anonymous"]
                    or row["manifest_anonymous"] or row["push_anonymous"])
        assert row["push_cancelled"] is None
        lines = probe_lines(server)
        assert len(lines) == 5 and all('" 401 ' in line for line in lines)
        # Distribution names the user of every request that authenticated; none of the probes' did.
        log = server.log_text().splitlines()
        probe_log = [line for line in log if "useragent=" + USER_AGENT.split("/")[0] + "/" in line.replace('"', "")]
        assert probe_log and not [line for line in probe_log if "auth.user.name" in line]
        assert any("auth.user.name" in line and USER in line for line in log)  # the collection's did
    finally:
        server.stop()


def start_token_registry(tmp_path, **options):
    tokens = TokenServer(tmp_path / "tokens", users={USER: PASSWORD}, **options)
    tokens.start()
    server = RegistryServer(tmp_path / "registry", token=tokens.registry_config())
    server.start()
    token = tokens.issue("pusher", [("repository", "public/app", ["pull", "push"])])
    with Pusher(server.url, auth=StaticBearer(token)) as pusher:
        pusher.push_image("public/app", ["1.0"], layers=[layer_bytes("token", 600)])
    tokens.clear()
    return tokens, server


@pytest.mark.parametrize("anonymous", [False, True], ids=["closed", "anonymous-pull"])
def test_token_registry_probes_use_anonymous_tokens_only(tmp_path, anonymous):
    tokens, server = start_token_registry(tmp_path, anonymous=anonymous)
    try:
        db = tmp_path / "a.duckdb"
        with repoaudit.open(db) as audit:
            result = audit.collect(server.url, username=USER, password=PASSWORD, progress=False,
                                   use_credential_store=False)
        assert result.status == "complete"
        row = posture_row(db)
        assert row["auth_scheme"] == "bearer" and row["v2_status"] == 401 and not row["v2_anonymous"]
        # An anonymous token never carries catalog access.
        assert row["catalog_status"] == 401 and not row["catalog_anonymous"]
        assert bool(row["tags_anonymous"]) is anonymous and bool(row["manifest_anonymous"]) is anonymous
        assert row["tags_status"] == (200 if anonymous else 401)
        anonymous_asks = [r for r in tokens.requests if not r.authorization]
        collector_asks = [r for r in tokens.requests if r.authorization]
        assert collector_asks and all(r.user == USER for r in collector_asks)
        # The probes' token requests: catalog, then the sample's pull scope (once: tags and manifest share it,
        # or both refused), and none of them with credentials.
        scopes = [r.scopes for r in anonymous_asks]
        assert scopes[0] == ("registry:catalog:*",)
        assert set(scopes[1:]) == {("repository:public/app:pull",)}
        assert all(r.user is None for r in anonymous_asks)
    finally:
        server.stop()
        tokens.stop()


def tls_registry(tmp_path, valid_for=timedelta(days=30), **extra):
    pki = make_pki(tmp_path / "pki", server_valid_for=valid_for)
    server = RegistryServer(tmp_path / "registry", tls=pki.server, extra=extra or None)
    server.start()
    trust = ssl.create_default_context(cafile=str(pki.ca_cert))
    with Pusher(server.url, verify=trust) as pusher:
        pusher.push_image("team/app", ["1.0"], layers=[layer_bytes("tls", 500)])
    return pki, server


def test_tls_registry_with_private_ca_and_certificate_expiring_in_ten_days(tmp_path):
    pki, server = tls_registry(tmp_path, valid_for=timedelta(days=10, hours=1))
    try:
        db = tmp_path / "a.duckdb"
        with repoaudit.open(db) as audit:
            audit.collect(server.url, ca_file=str(pki.ca_cert), progress=False)
        row = posture_row(db)
        assert not row["plain_http"] and row["v2_anonymous"] and row["tags_anonymous"]
        assert row["tls_version"] in ("TLSv1.2", "TLSv1.3") and row["tls_cipher"]
        assert row["cert_subject"] == "CN=127.0.0.1" and row["cert_issuer"] == "CN=repoaudit test CA"
        assert sorted(row["cert_sans"]) == ["DNS:localhost", "IP:127.0.0.1"]
        assert row["cert_days_left"] == 10
        # Chains to the CA the collection was given, not to the system roots.
        assert row["cert_trust"] == "private-ca" and "issuer" in row["cert_error"]
    finally:
        server.stop()


def test_tls_registry_reached_insecurely_is_untrusted(tmp_path):
    pki, server = tls_registry(tmp_path)
    try:
        db = tmp_path / "a.duckdb"
        with repoaudit.open(db) as audit:
            audit.collect(server.url, insecure=True, progress=False)
        row = posture_row(db)
        assert row["cert_trust"] == "untrusted" and row["cert_days_left"] in (29, 30)
        assert row["v2_anonymous"]  # --insecure reaches it, so the probes do too
    finally:
        server.stop()


@pytest.mark.parametrize("minimum", ["tls1.0", "tls1.2"])
def test_weak_tls_detected_where_local_openssl_allows(tmp_path, minimum):
    # Distribution's default suites are TLS 1.2's AEAD ones only; a CBC suite lets an old client in.
    suites = ["TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "TLS_AES_128_GCM_SHA256"]
    pki, server = tls_registry(tmp_path, http={"tls": {"minimumtls": minimum, "ciphersuites": suites}})
    try:
        if _accepts("127.0.0.1", server.port, ssl.TLSVersion.TLSv1, 5) is None:
            pytest.skip(f"this host's OpenSSL ({ssl.OPENSSL_VERSION}) will not offer TLS 1.0")
        row = asyncio.run(probe(server.url, server.host, verify=str(pki.ca_cert)))
        if minimum == "tls1.0":
            assert row.weak_tls is True and row.weak_tls_versions == ["TLSv1", "TLSv1.1"]
        else:
            assert row.weak_tls is False and row.weak_tls_versions == []
    finally:
        server.stop()


def test_unreachable_registry_is_a_recorded_value(tmp_path):
    from registry import free_port

    row = asyncio.run(probe(f"https://127.0.0.1:{free_port()}", "gone", timeout=2))
    assert row.v2_status is None and "ConnectError" in row.errors["v2"]
    assert row.errors["tls"] == "not probed: the registry could not be reached"
    assert row.row(7)[0] == 7 and '"v2"' in row.row(7)[-1]  # the errors go to the table as JSON


def test_failed_collection_still_records_posture(tmp_path):
    """Credentials refused: the snapshot fails, and its posture says what anyone could do anyway."""
    server = RegistryServer(tmp_path / "registry", htpasswd={USER: PASSWORD})
    server.start()
    try:
        db = tmp_path / "a.duckdb"
        with repoaudit.open(db) as audit:
            with pytest.raises(repoaudit.RepoauditError):
                audit.collect(server.url, username=USER, password="wrong-" + PASSWORD, progress=False,
                              use_credential_store=False)
            status = audit.sql("SELECT status FROM snapshots")["status"].tolist()
        row = posture_row(db)
        assert status == ["failed"] and row["v2_status"] == 401 and row["sample_repository"] is None
        assert "no repository" in row["errors"]
    finally:
        server.stop()


def test_cli_collect_probe_push_and_posture_command(registry, pusher, tmp_path):
    import json

    from click.testing import CliRunner

    from repoaudit.cli import main

    pusher.push_image("team/app", ["1.0"])
    db = str(tmp_path / "cli.duckdb")
    runner = CliRunner()
    done = runner.invoke(main, ["collect", registry.url, "--db", db, "--no-progress", "--probe-push"])
    assert done.exit_code == 0, done.output
    shown = runner.invoke(main, ["posture", "--db", db, "--format", "json"])
    assert shown.exit_code == 0, shown.output
    (row,) = json.loads(shown.stdout)
    assert row["registry"] == registry.host and row["anonymous_push"] is True and row["plain_http"] is True
    assert row["findings"] == ["anonymous read", "anonymous catalog", "anonymous push", "plain HTTP"]
    assert row["changes"] == "first probe"
    # A second collection without the push probe: what changed is said, against the previous probe.
    again = runner.invoke(main, ["collect", registry.url, "--db", db, "--no-progress"])
    assert again.exit_code == 0, again.output
    (row,) = json.loads(runner.invoke(main, ["posture", "--db", db, "--format", "json"]).stdout)
    assert row["anonymous_push"] is None and row["previous_snapshot"] == 1
    assert row["changes"] == ""  # not probing push is not a change of posture
    skipped = runner.invoke(main, ["collect", registry.url, "--db", db, "--no-progress", "--no-posture"])
    assert skipped.exit_code == 0, skipped.output
    with repoaudit.open(db, read_only=True) as audit:
        assert audit.sql("SELECT count(*) AS n FROM registry_posture").n[0] == 2
