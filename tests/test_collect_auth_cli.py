"""``repoaudit collect`` end to end behind authentication, TLS and Flux configuration, on the real registry.

The security checks dump every table of the database and every line the CLI printed,
and look for the password and for any JWT: credentials must never be stored or shown.
"""

from __future__ import annotations

import base64
import json
import ssl

import pytest
from click.testing import CliRunner

import repoaudit
from fakeregistry import FakeRegistry, error
from pusher import Pusher, layer_bytes
from registry import RegistryServer
from repoaudit.cli import main
from repoaudit.store.exports import base_tables
from repoaudit.model.retry import NO_BACKOFF
from tokenserver import StaticBearer, TokenServer, make_pki

USER, PASSWORD = "auditor", "s3cret-Passw0rd-never-stored"
JWT_PREFIX = "eyJ"  # base64url of '{"': the start of every JWT header


@pytest.fixture
def run(tmp_path, monkeypatch):
    monkeypatch.setenv("REPOAUDIT_DB", str(tmp_path / "auth.duckdb"))
    for var in ("REPOAUDIT_USERNAME", "REPOAUDIT_PASSWORD", "REPOAUDIT_IDENTITY_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-docker-config"))
    outputs: list[str] = []

    def invoke(*args, input=None):
        result = CliRunner().invoke(main, [str(a) for a in args], input=input, catch_exceptions=False)
        outputs.append(result.stdout + result.stderr)
        return result

    invoke.outputs = outputs
    invoke.db = tmp_path / "auth.duckdb"
    return invoke


def database_dump(path) -> str:
    with repoaudit.open(path, read_only=True) as audit:
        return "\n".join(audit.relation(t).to_csv(index=False) for t in base_tables(audit.con))


def assert_no_secrets(run, *secrets):
    text = database_dump(run.db) + "\n".join(run.outputs)
    for secret in secrets:
        assert secret not in text
    assert JWT_PREFIX not in text


def one_line(result) -> str:
    assert result.exit_code != 0
    # Informational "note:" and "skipped" lines may precede it; the error itself is one line.
    lines = [l for l in result.stderr.splitlines() if l.strip() and not l.startswith(("note: ", "skipped "))]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture
def basic_registry(tmp_path):
    server = RegistryServer(tmp_path / "registry", htpasswd={USER: PASSWORD})
    server.start()
    with Pusher(server.url, auth=(USER, PASSWORD)) as pusher:
        image = pusher.push_image("team/app", ["1.0", "latest"], layers=[layer_bytes("b", 900)])
        pusher.push_image("team/app", [f"sha256-{image.digest[7:]}.sig"], layers=[layer_bytes("sig", 50)])
        pusher.push_image("team/api", ["2.0"], layers=[layer_bytes("api", 700)])
    yield server
    server.stop()


def test_htpasswd_with_password_stdin(run, basic_registry):
    result = run("collect", basic_registry.url, "-u", USER, "--password-stdin", "--no-progress", input=PASSWORD + "\n")
    assert result.exit_code == 0, result.output
    assert "repositories 2, tags 4" in result.stdout
    status = json.loads(run("status", "--format", "json").stdout)
    assert {d["status"]["conditions"][0]["reason"] for d in status} == {"Succeeded"}
    assert_no_secrets(run, PASSWORD)


def test_wrong_password_is_one_line_naming_the_registry(run, basic_registry):
    result = run("collect", basic_registry.url, "-u", USER, "--password-stdin", "--no-progress",
                 input="not-the-password\n")
    line = one_line(result)
    assert basic_registry.host in line and "credentials refused" in line
    with repoaudit.open(run.db, read_only=True) as audit:
        assert audit.query("snapshots")["status"].tolist() == ["failed"]
    assert_no_secrets(run, PASSWORD, "not-the-password")


def test_docker_config_credentials(run, basic_registry, tmp_path, monkeypatch):
    config = tmp_path / "docker"
    config.mkdir()
    auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    (config / "config.json").write_text(json.dumps({"auths": {basic_registry.host: {"auth": auth}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    result = run("collect", basic_registry.url, "--no-progress")
    assert result.exit_code == 0, result.output
    assert_no_secrets(run, PASSWORD, auth)


def test_environment_credentials_in_token_mode(run, tmp_path, monkeypatch):
    tokens = TokenServer(tmp_path / "tokens", users={USER: PASSWORD})
    tokens.start()
    server = RegistryServer(tmp_path / "registry", token=tokens.registry_config())
    server.start()
    try:
        push_token = tokens.issue("pusher", [("repository", "team/app", ["pull", "push"])])
        with Pusher(server.url, auth=StaticBearer(push_token)) as pusher:
            pusher.push_image("team/app", ["1.0"], layers=[layer_bytes("t", 400)])
        monkeypatch.setenv("REPOAUDIT_USERNAME", USER)
        monkeypatch.setenv("REPOAUDIT_PASSWORD", PASSWORD)
        result = run("collect", server.url, "--no-progress")
        assert result.exit_code == 0, result.output
        assert "tags 1" in result.stdout
        assert {("registry:catalog:*",), ("repository:team/app:pull",)} <= set(tokens.scopes_requested())
        run("snapshots", "--format", "json")
        run("status", "--format", "yaml")
        assert_no_secrets(run, PASSWORD, push_token)
    finally:
        server.stop()
        tokens.stop()


def test_tls_refused_without_ca_accepted_with_it(run, tmp_path):
    pki = make_pki(tmp_path / "pki")
    server = RegistryServer(tmp_path / "registry", tls=pki.server)
    server.start()
    try:
        with Pusher(server.url, verify=ssl.create_default_context(cafile=str(pki.ca_cert))) as pusher:
            pusher.push_image("team/app", ["1"], layers=[layer_bytes("tls", 300)])
        line = one_line(run("collect", server.url, "--no-progress"))
        assert "cannot reach" in line and "CERTIFICATE_VERIFY_FAILED" in line
        ok = run("collect", server.url, "--ca-file", pki.ca_cert, "--no-progress")
        assert ok.exit_code == 0, ok.output
        insecure = run("collect", server.url, "--insecure", "--no-progress")
        assert insecure.exit_code == 0, insecure.output
    finally:
        server.stop()


def flux_yaml(server, password, *, extra=()):
    auth = base64.b64encode(f"{USER}:{password}".encode()).decode()
    secret = {"auths": {server.host: {"auth": auth}}}
    docs = [
        {"apiVersion": "image.toolkit.fluxcd.io/v1", "kind": "ImageRepository",
         "metadata": {"name": "app", "namespace": "team"},
         "spec": {"image": f"{server.host}/team/app", "interval": "5m", "insecure": True,
                  "secretRef": {"name": "regcred"}}},
        {"apiVersion": "image.toolkit.fluxcd.io/v1beta2", "kind": "ImageRepository",
         "metadata": {"name": "api", "namespace": "team"},
         "spec": {"image": f"{server.host}/team/api", "interval": "1h", "insecure": True,
                  "secretRef": {"name": "regcred"}, "exclusionList": ["^2\\.0$"]}},
        {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
         "metadata": {"name": "regcred", "namespace": "team"},
         "data": {".dockerconfigjson": base64.b64encode(json.dumps(secret).encode()).decode()}},
        *extra,
    ]
    return "---\n".join(json.dumps(d) + "\n" for d in docs)


def test_flux_image_repositories(run, basic_registry, tmp_path):
    extra = [
        {"apiVersion": "image.toolkit.fluxcd.io/v1", "kind": "ImageRepository",
         "metadata": {"name": "paused", "namespace": "team"},
         "spec": {"image": f"{basic_registry.host}/team/paused", "suspend": True, "insecure": True}},
        {"apiVersion": "image.toolkit.fluxcd.io/v1", "kind": "ImageRepository",
         "metadata": {"name": "ecr", "namespace": "team"},
         "spec": {"image": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/app", "provider": "aws"}},
    ]
    path = tmp_path / "flux.yaml"
    path.write_text(flux_yaml(basic_registry, PASSWORD, extra=extra))
    result = run("collect", "-f", path, "--no-progress")
    assert result.exit_code == 0, result.output
    # Both ImageRepository objects of the registry land in one snapshot.
    assert result.stdout.count("snapshot ") == 1 and "repositories 2, tags 2" in result.stdout
    assert "skipped team/paused: suspended" in result.stderr
    assert "skipped team/ecr:" in result.stderr and "not supported" in result.stderr
    docs = {d["metadata"]["name"]: d for d in json.loads(run("status", "--format", "json").stdout)}
    app = docs["app"]["status"]
    assert docs["app"]["metadata"]["namespace"] == "team"
    assert app["lastScanResult"]["tagCount"] == 2  # the cosign .sig tag is excluded by Flux's default
    assert app["lastScanResult"]["latestTags"] == ["latest", "1.0"]
    assert app["observedExclusionList"] == ["^.*\\.sig$"]
    assert app["canonicalImageName"] == f"{basic_registry.host}/team/app"
    assert docs["api"]["status"]["lastScanResult"]["tagCount"] == 0
    assert_no_secrets(run, PASSWORD)


def test_flux_wrong_credentials_are_read_operation_failed(run, basic_registry, tmp_path):
    """Flux marks a scan the registry refuses ReadOperationFailed ("scan failed: ... UNAUTHORIZED"):
    fluxcd/image-reflector-controller internal/controller/imagerepository_controller.go, reconcile."""
    path = tmp_path / "flux.yaml"
    path.write_text(flux_yaml(basic_registry, "wrong-" + PASSWORD))
    line = one_line(run("collect", "-f", path, "--no-progress"))
    assert basic_registry.host in line and "credentials refused" in line
    docs = json.loads(run("status", "--format", "json").stdout)
    assert {(d["metadata"]["name"], d["status"]["conditions"][0]["status"], d["status"]["conditions"][0]["reason"])
            for d in docs} == {("app", "False", "ReadOperationFailed"), ("api", "False", "ReadOperationFailed")}
    assert_no_secrets(run, PASSWORD, "wrong-" + PASSWORD)


def test_registry_without_catalog(tmp_path):
    fake = FakeRegistry()
    fake.add_image("org/app", "1", b"x")
    fake.fault = lambda r: error(404, "UNSUPPORTED", "catalog disabled") if r.url.path == "/v2/_catalog" else None
    with repoaudit.open(tmp_path / "db.duckdb") as audit:
        with pytest.raises(repoaudit.NotFoundError, match="catalog is not available.*--repository NAME"):
            audit.collect("https://hub.test", transport=fake.transport(), retry=NO_BACKOFF, progress=False,
                          use_credential_store=False)
        result = audit.collect("https://hub.test", repositories=["org/app"], transport=fake.transport(),
                               retry=NO_BACKOFF, progress=False, use_credential_store=False)
        assert result.status == "complete" and result.tags == 1
        assert fake.hits["GET /v2/_catalog"] == 1  # only the first run asked


def test_url_or_file_not_both(run, tmp_path):
    assert "give a registry URL or -f FILE" in one_line(run("collect", "--no-progress"))


def test_mutual_tls_needs_the_client_certificate(run, tmp_path):
    """A registry that requires client certificates (Distribution's http.tls.clientcas): --cert/--key."""
    pki = make_pki(tmp_path / "pki")
    client = (pki.client_cert, pki.client_key)
    server = RegistryServer(tmp_path / "registry", tls=pki.server, client_ca=pki.ca_cert, probe_cert=client)
    server.start()
    try:
        trust = ssl.create_default_context(cafile=str(pki.ca_cert))
        trust.load_cert_chain(*client)
        with Pusher(server.url, verify=trust) as pusher:
            pusher.push_image("team/app", ["1", "2"], layers=[layer_bytes("mtls", 300)])
        line = one_line(run("collect", server.url, "--ca-file", pki.ca_cert, "--no-progress"))
        assert "cannot reach" in line and server.host in line and "client certificate" in line, line
        half = one_line(run("collect", server.url, "--ca-file", pki.ca_cert, "--cert", pki.client_cert,
                            "--no-progress"))
        assert "--cert" in half and "--key" in half
        ok = run("collect", server.url, "--ca-file", pki.ca_cert, "--cert", pki.client_cert,
                 "--key", pki.client_key, "--no-progress")
        assert ok.exit_code == 0, ok.output
        assert "tags 2" in ok.stdout
        # Only the failed attempts' snapshots are failed ones; the key never reaches the database.
        snapshots = json.loads(run("snapshots", "--format", "json").stdout)
        assert [s["status"] for s in snapshots][0] == "complete"
        assert_no_secrets(run, pki.client_key.read_text().splitlines()[1])
    finally:
        server.stop()


def test_the_wrong_scheme_gets_a_hint(run, registry, tmp_path):
    """https:// to a plain-HTTP registry and http:// to a TLS one: one line that says which to use."""
    plain = one_line(run("collect", registry.url.replace("http://", "https://"), "--no-progress"))
    assert "cannot reach" in plain and "the registry answered in plain HTTP: use http://" in plain, plain
    pki = make_pki(tmp_path / "pki")
    server = RegistryServer(tmp_path / "tls-registry", tls=pki.server)
    server.start()
    try:
        tls = one_line(run("collect", server.url.replace("https://", "http://"), "--no-progress"))
        assert "the registry speaks TLS: use https://" in tls, tls
    finally:
        server.stop()
