"""Signatures, attestations and SBOMs on the real registry: found, classified, verified offline, left dangling."""
from __future__ import annotations

import base64
import json

import pytest
from supplychain import (
    DSSE,
    new_key,
    payload_for,
    public_pem,
    push_artifact,
    push_fallback_index,
    push_signature,
)

import repoaudit
from repoaudit.model.signatures import load_public_key


def supply(audit, repository=None):
    rows = audit.con.execute("SELECT s.* FROM image_supply s JOIN latest_snapshot USING (snapshot_id)").df()
    return {r["repository"]: r for r in rows.to_dict("records") if repository in (None, r["repository"])}


@pytest.fixture
def keys():
    return {"trusted": new_key("ecdsa"), "rsa": new_key("rsa"), "other": new_key("ed25519")}


def test_signatures_verified_offline_on_the_real_registry(registry, pusher, tmp_path, keys):
    trusted, other = keys["trusted"], keys["other"]
    images = {name: pusher.push_image(f"team/{name}", ["v1"]) for name in
              ("good", "rsa", "otherkey", "tampered", "wrongdigest", "badbase64", "notjson", "unsigned")}
    push_signature(pusher, "team/good", images["good"].digest, trusted)
    push_signature(pusher, "team/rsa", images["rsa"].digest, keys["rsa"])
    push_signature(pusher, "team/otherkey", images["otherkey"].digest, other)
    # Signed, then the payload changed: the signature no longer matches the bytes.
    push_signature(pusher, "team/tampered", images["tampered"].digest, trusted,
                   signed_payload=payload_for("team/tampered", images["good"].digest))
    # A valid signature of another image's payload, copied next to this one.
    push_signature(pusher, "team/wrongdigest", images["wrongdigest"].digest, trusted,
                   payload=payload_for("team/wrongdigest", images["good"].digest))
    push_signature(pusher, "team/badbase64", images["badbase64"].digest, trusted, signature="%%%not base64")
    push_signature(pusher, "team/notjson", images["notjson"].digest, trusted, payload=b"{not json")

    key_file = tmp_path / "cosign.pub"
    key_file.write_bytes(public_pem(trusted))
    rsa_key = load_public_key(public_pem(keys["rsa"]))
    with repoaudit.open(tmp_path / "a.duckdb") as audit:
        result = audit.collect(registry.url, progress=False, verify_keys=[str(key_file), rsa_key])
        assert result.status == "complete", audit.con.execute("SELECT * FROM collection_errors")
        status = {name.split("/")[1]: row["signature_status"] for name, row in supply(audit).items()}
        assert status == {"good": "valid", "rsa": "valid", "otherkey": "invalid", "tampered": "invalid",
                          "wrongdigest": "invalid", "badbase64": "invalid", "notjson": "invalid",
                          "unsigned": "missing"}
        reasons = dict(audit.con.execute(
            "SELECT split_part(repository, '/', 2), string_agg(DISTINCT reason, '; ') "
            "FROM signature_verifications WHERE status = 'invalid' GROUP BY ALL").fetchall())
        assert "does not verify" in reasons["otherkey"]
        assert "does not verify" in reasons["tampered"]
        assert f"names {images['good'].digest}, not the subject" in reasons["wrongdigest"]
        assert "not base64" in reasons["badbase64"]
        assert "not JSON" in reasons["notjson"]
        fingerprints = {r[0] for r in audit.con.execute(
            "SELECT DISTINCT key_fingerprint FROM signature_verifications").fetchall()}
        assert fingerprints == {load_public_key(public_pem(trusted)).fingerprint, rsa_key.fingerprint}
        # Signatures are no images: the inventory counts eight, the storage counts the signatures' blobs.
        assert audit.con.execute("SELECT count(*) FROM images WHERE artifact_type IS NULL").fetchone()[0] == 8
        signatures = audit.con.execute("SELECT count(*) FROM referrers WHERE category = 'signature'").fetchone()[0]
        assert signatures == 7

        # A second run verifies nothing again; a signature added meanwhile is found by the tag's HEAD.
        push_signature(pusher, "team/unsigned", images["unsigned"].digest, trusted)
        audit.collect(registry.url, progress=False, verify_keys=[str(key_file), rsa_key])
        assert supply(audit)["team/unsigned"]["signature_status"] == "valid"
        per_signature = audit.con.execute(
            "SELECT signature_digest, subject_digest, key_fingerprint, count(*) FROM signature_verifications "
            "GROUP BY ALL HAVING count(*) > 1").fetchall()
        assert per_signature == []

        # A key given later is checked against the signatures stored before it.
        other_key = load_public_key(public_pem(other))
        audit.collect(registry.url, progress=False, verify_keys=[other_key])
        assert supply(audit)["team/otherkey"]["signature_status"] == "valid"
        running = audit.query("signature_coverage")
        assert running[["images", "signed", "verified"]].sum().tolist() == [8, 8, 4]  # verdicts stay: good, rsa, unsigned, otherkey


def test_keyless_signature_recorded_unverified_with_identity(registry, pusher, tmp_path):
    from datetime import datetime, timedelta, timezone

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    ephemeral = new_key("ecdsa")
    now = datetime.now(timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(x509.Name([]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sigstore-intermediate")]))
            .public_key(ephemeral.public_key()).serial_number(1)
            .not_valid_before(now - timedelta(minutes=1)).not_valid_after(now + timedelta(minutes=10))
            .add_extension(x509.SubjectAlternativeName([x509.RFC822Name("dev@example.com")]), critical=True)
            .add_extension(x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.1"),
                                                      b"https://accounts.example.com"), critical=False)
            .sign(new_key("ecdsa"), hashes.SHA256()))
    pem = cert.public_bytes(__import__("cryptography.hazmat.primitives.serialization",
                                       fromlist=["Encoding"]).Encoding.PEM).decode()
    image = pusher.push_image("team/keyless", ["v1"])
    push_signature(pusher, "team/keyless", image.digest, ephemeral, certificate=pem)
    with repoaudit.open(tmp_path / "k.duckdb") as audit:
        audit.collect(registry.url, progress=False)
        row = audit.con.execute("SELECT status, identity, issuer, key_fingerprint, reason "
                                "FROM signature_verifications").fetchall()
        assert row == [("unverified (keyless)", "dev@example.com", "https://accounts.example.com", None,
                        "certificate chain and transparency log need the network; not checked offline")]
        assert supply(audit)["team/keyless"]["signature_status"] == "unverified (keyless)"


def test_attestations_and_sboms_through_the_fallback_tag(registry, pusher, tmp_path):
    image = pusher.push_image("apps/web", ["v1"])
    bare = pusher.push_image("apps/api", ["v1"])
    statement = json.dumps({"_type": "https://in-toto.io/Statement/v1",
                            "predicateType": "https://slsa.dev/provenance/v1", "predicate": {}}).encode()
    envelope = json.dumps({"payloadType": "application/vnd.in-toto+json",
                           "payload": base64.b64encode(statement).decode(), "signatures": []}).encode()
    att, att_size = push_artifact(pusher, "apps/web", image, "application/vnd.in-toto+json", DSSE, envelope,
                                  {"predicateType": "https://slsa.dev/provenance/v1"})
    sbom, sbom_size = push_artifact(pusher, "apps/web", image, "application/spdx+json", "application/spdx+json",
                                    b'{"spdxVersion": "SPDX-2.3", "packages": []}')
    push_fallback_index(pusher, "apps/web", image.digest, [(att, att_size, "application/vnd.in-toto+json"),
                                                           (sbom, sbom_size, "application/spdx+json")])
    with repoaudit.open(tmp_path / "f.duckdb") as audit:
        result = audit.collect(registry.url, progress=False)
        assert result.status == "complete"
        facts = audit.con.execute("SELECT referrer_digest, category, predicate, via, bytes FROM referrer_facts "
                          "ORDER BY category").fetchall()
        assert [(f[0], f[1], f[2], f[3]) for f in facts] == [(att, "attestation", "slsa-provenance", "fallback-tag"),
                                                            (sbom, "sbom", None, "fallback-tag")]
        assert all(f[4] > 0 for f in facts)
        # Neither the artifacts nor the fallback index are images; their blobs are in the snapshot's bytes.
        kinds = audit.con.execute("SELECT tag, artifact_type FROM images ORDER BY repository, tag").fetchall()
        assert [k for k in kinds if k[1] is None] == [("v1", None), ("v1", None)]
        reached = {r[0] for r in audit.con.execute("SELECT digest FROM snapshot_manifests").fetchall()}
        assert {att, sbom} <= reached
        types = audit.query("attestation_types")
        assert sorted(zip(types["category"], types["predicate"])) == [("attestation", "slsa-provenance"),
                                                                      ("sbom", "spdx")]
        coverage = audit.query("sbom_coverage")
        assert coverage[["images", "with_sbom", "with_provenance"]].sum().tolist() == [2, 1, 1]
        assert supply(audit)["apps/api"]["sboms"] == 0 and bare.digest


def test_deleted_subject_leaves_dangling_signatures(registry, pusher, tmp_path, keys):
    kept = pusher.push_image("team/app", ["v1"])
    gone = pusher.push_image("team/app", ["v2"])
    push_signature(pusher, "team/app", kept.digest, keys["trusted"])
    sig = push_signature(pusher, "team/app", gone.digest, keys["trusted"])
    with repoaudit.open(tmp_path / "d.duckdb") as audit:
        audit.collect(registry.url, progress=False)
        assert audit.query("dangling_referrers").empty
        pusher.delete_manifest("team/app", gone.digest)
        registry.stop()
        registry.garbage_collect()  # the deleted image's own blobs, so that only the signature's are left to free
        registry.start()
        audit.collect(registry.url, progress=False)
        dangling = audit.query("dangling_referrers")
        assert dangling["referrer_digest"].tolist() == [sig]
        assert dangling["subject_digest"].tolist() == [gone.digest]
        manifest_size, config_size, layers = audit.con.execute(
            "SELECT manifest_size, config_size, layers_size FROM manifests WHERE digest = ?", [sig]).fetchone()
        assert dangling["bytes"].tolist() == [manifest_size + config_size + layers]
        # Nothing else holds the signature's blobs: deleting it and garbage-collecting frees exactly sole_bytes.
        assert dangling["sole_bytes"].tolist() == dangling["bytes"].tolist()
        pusher.delete_manifest("team/app", sig)
    registry.stop()
    before = registry.blob_store_bytes()
    registry.garbage_collect()
    assert before - registry.blob_store_bytes() == dangling["sole_bytes"].sum()
    registry.start()


def test_bad_verify_key_is_one_line_before_the_database_opens(tmp_path):
    from click.testing import CliRunner

    from repoaudit.cli import main

    bad = tmp_path / "bad.pub"
    bad.write_text("-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----\n")
    db = tmp_path / "never.duckdb"
    result = CliRunner().invoke(main, ["collect", "http://127.0.0.1:1", "--db", str(db), "--verify-key", str(bad)])
    assert result.exit_code != 0
    assert "not a PEM public key" in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not db.exists()


def test_unsupported_key_types_are_refused():
    from cryptography.hazmat.primitives.asymmetric import dsa, ec

    from repoaudit.errors import ConfigError

    for private in (dsa.generate_private_key(2048), ec.generate_private_key(ec.SECP256K1())):
        with pytest.raises(ConfigError):
            load_public_key(public_pem(private))


def test_config_file_trust_block_maps_repository_globs_to_keys(registry, pusher, tmp_path, keys):
    from repoaudit.jobs.configfile import load_config

    team_key, other_key = keys["trusted"], keys["other"]
    mine = pusher.push_image("team/app", ["v1"])
    theirs = pusher.push_image("vendor/tool", ["v1"])
    push_signature(pusher, "team/app", mine.digest, team_key)
    push_signature(pusher, "vendor/tool", theirs.digest, team_key)  # signed by the team key, trusted only for team/*
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "team.pub").write_bytes(public_pem(team_key))
    (tmp_path / "keys" / "vendor.pub").write_bytes(public_pem(other_key))
    config = tmp_path / "repoaudit.yaml"
    config.write_text(f"""
registries:
  - url: {registry.url}
    exclusion_list: []   # collect the .sig tags (Flux's default list excludes them)
trust:
  - key: keys/team.pub
    repositories: ["team/*"]
  - key: keys/vendor.pub
    repositories: ["vendor/*"]
""")
    jobs = load_config(config)
    with repoaudit.open(tmp_path / "t.duckdb") as audit:
        audit.collect_jobs(jobs, progress=False)
        status = {name: row["signature_status"] for name, row in supply(audit).items()}
        assert status == {"team/app": "valid", "vendor/tool": "invalid"}
        checked = audit.con.execute("SELECT repository, key_fingerprint FROM signature_verifications").fetchall()
        assert sorted(checked) == [("team/app", load_public_key(public_pem(team_key)).fingerprint),
                                   ("vendor/tool", load_public_key(public_pem(other_key)).fingerprint)]


def test_config_file_trust_block_errors_are_one_line(tmp_path):
    from repoaudit.errors import ConfigError
    from repoaudit.jobs.configfile import load_config

    config = tmp_path / "c.yaml"
    for trust, message in (("[{key: missing.pub}]", "missing.pub"), ("{key: x}", "'trust' must be a list"),
                           ("[{key: k.pub, repos: [a]}]", "unknown key 'repos'")):
        (tmp_path / "k.pub").write_bytes(public_pem(new_key()))
        config.write_text(f"registries:\n  - url: https://registry.example.com\ntrust: {trust}\n")
        with pytest.raises(ConfigError, match=message) as info:
            load_config(config)
        assert "\n" not in str(info.value)


def test_merged_shards_keep_referrers_and_verdicts(registry, pusher, tmp_path, keys):
    from repoaudit.store.merge import merge

    trusted = keys["trusted"]
    for name in ("a", "b", "c", "d"):
        image = pusher.push_image(f"team/{name}", ["v1"])
        if name != "d":
            push_signature(pusher, f"team/{name}", image.digest, trusted if name != "c" else keys["other"])
    key = load_public_key(public_pem(trusted))
    shards = []
    for i in range(2):
        path = tmp_path / f"shard{i}.duckdb"
        with repoaudit.open(path) as audit:
            audit.collect(registry.url, progress=False, shard=f"{i}/2", verify_keys=[key])
        shards.append(path)
    with repoaudit.open(tmp_path / "whole.duckdb") as audit:
        audit.collect(registry.url, progress=False, verify_keys=[key])
        whole = {n: r["signature_status"] for n, r in supply(audit).items()}
    merge(shards, tmp_path / "merged.duckdb")
    with repoaudit.open(tmp_path / "merged.duckdb") as audit:
        merged = {n: r["signature_status"] for n, r in supply(audit).items()}
    assert merged == whole == {"team/a": "valid", "team/b": "valid", "team/c": "invalid", "team/d": "missing"}
