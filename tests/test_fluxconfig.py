"""Flux ImageRepository manifests and repoaudit's own config file as collection jobs."""

from __future__ import annotations

import base64
import json
import re
import ssl
import textwrap
from pathlib import Path

import pytest

from conftest import FIXTURES
from repoaudit.model.options import ClientOptions
from repoaudit.errors import ConfigError
from repoaudit.jobs.job import DEFAULT_EXCLUSION_LIST, CollectJob, excluded, parse_duration
from repoaudit.jobs.configfile import load_config
from repoaudit.jobs.flux import load_flux
from tokenserver import make_pki

FLUX = FIXTURES / "flux"
SAMPLE = FLUX / "image_v1_imagerepository.yaml"
V1_DOCS = FLUX / "imagerepositories-v1-doc-examples.yaml"
V1BETA2_DOCS = FLUX / "imagerepositories-v1beta2-doc-examples.yaml"
SECRET = "pr0xy-and-registry-secret"


def write(tmp_path: Path, text: str, name: str = "flux.yaml") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def repo_doc(name: str = "app", namespace: str = "team", image: str = "ghcr.io/org/app", *,
             api: str = "v1", **spec) -> dict:
    return {"apiVersion": f"image.toolkit.fluxcd.io/{api}", "kind": "ImageRepository",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"image": image, "interval": "5m", **spec}}


def secret_doc(name: str, namespace: str = "team", *, string_data: dict | None = None, data: dict | None = None,
               kind: str = "Opaque") -> dict:
    doc = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace}, "type": kind}
    if string_data is not None:
        doc["stringData"] = string_data
    if data is not None:
        doc["data"] = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    return doc


def dump(tmp_path: Path, *docs: dict, name: str = "flux.yaml") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("---\n".join(json.dumps(doc) + "\n" for doc in docs))  # JSON is YAML
    return path


def only(jobs: list[CollectJob]) -> CollectJob:
    assert len(jobs) == 1, jobs
    return jobs[0]


# -- the fixtures --------------------------------------------------------------------


def test_flux_sample_loads():
    job = only(load_flux([SAMPLE]))
    assert job.name == "flux-system/imagerepository-sample"
    assert job.image == "ghcr.io/stefanprodan/podinfo"
    assert (job.registry, job.registry_url) == ("ghcr.io", "https://ghcr.io")
    assert job.repositories == ("stefanprodan/podinfo",)
    assert job.canonical_image == "ghcr.io/stefanprodan/podinfo"
    assert job.exclusion_list == DEFAULT_EXCLUSION_LIST == ("^.*\\.sig$",)
    assert job.credentials.anonymous and job.credentials.source == "anonymous"
    assert job.provider == "generic" and job.unsupported_reason is None and not job.suspended
    assert "interval 1m0s is not used by repoaudit (it collects when it is run)" in job.notes
    assert "accessFrom is not used by repoaudit" in job.notes


@pytest.mark.parametrize("path", [V1_DOCS, V1BETA2_DOCS], ids=["v1", "v1beta2"])
def test_flux_doc_examples_load(path):
    skipped: list[str] = []
    jobs = {job.name: job for job in load_flux([path], skipped=skipped)}
    # Six documents: podinfo twice (the later, with secretRef, counts), the Secret, app1
    # twice (the later, with exclusionList, counts), and the status-only example.
    assert sorted(jobs) == ["apps/app1", "default/podinfo"]

    podinfo = jobs["default/podinfo"]
    assert podinfo.canonical_image == "index.docker.io/stefanprodan/podinfo"
    assert podinfo.registry_url == "https://index.docker.io"
    assert (podinfo.credentials.username, podinfo.credentials.password) == ("foo", "bar")
    assert podinfo.credentials.source == "secret:default/regcred"
    assert any(note.startswith(f"also defined at {path}:") for note in podinfo.notes)

    app1 = jobs["apps/app1"]
    assert app1.canonical_image == "index.docker.io/org/image"
    assert app1.exclusion_list == ("^.*\\.sig$", "1.0.2", "1.1.1|1.0.0")
    assert app1.credentials.anonymous

    assert len(skipped) == 1
    assert skipped[0].startswith(f"{path}:") and "<repository-name> has no spec.image; skipped" in skipped[0]


def test_flux_fixture_directory_loads_everything():
    jobs = load_flux([FLUX])
    assert [job.name for job in jobs] == ["flux-system/imagerepository-sample", "default/podinfo", "apps/app1"]
    # The last file read (v1beta2) holds the definitions that count.
    assert all(str(V1BETA2_DOCS) in job.origin for job in jobs[1:])


def test_exclusion_regexes_match_like_go_regexp():
    fixture_list = ("^.*\\.sig$", "1.0.2", "1.1.1|1.0.0")
    assert excluded("sha256-abc.sig", DEFAULT_EXCLUSION_LIST)
    assert not excluded("1.0.0", DEFAULT_EXCLUSION_LIST)
    assert excluded("1.0.2", fixture_list) and excluded("v1.0.2-rc1", fixture_list)  # unanchored search
    assert excluded("1x0y2", fixture_list)  # "." is any character, as in Go
    assert excluded("1.0.0", fixture_list) and not excluded("1.2.0", fixture_list)
    job = only(load_flux([SAMPLE]))
    assert job.included("6.5.0") and not job.included("sha256-1.sig")


# -- ImageRepository fields ----------------------------------------------------------


def test_suspend_insecure_timeout(tmp_path):
    job = only(load_flux([dump(tmp_path, repo_doc(image="127.0.0.1:5000/team/app", suspend=True, insecure=True,
                                                  timeout="1m30s"))]))
    assert job.suspended and job.insecure
    assert job.registry_url == "http://127.0.0.1:5000" and job.registry == "127.0.0.1:5000"
    assert job.timeout == 90.0
    assert job.target.url == "http://127.0.0.1:5000" and job.target.name == "127.0.0.1:5000"


@pytest.mark.parametrize("text, seconds", [("60s", 60), ("1m30s", 90), ("1h", 3600), ("1.5h", 5400),
                                           ("300ms", 0.3), ("2h45m0s", 9900), ("0", 0)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "10", "1d", "-1s", "1m 30s", "s"])
def test_parse_duration_rejects(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_bad_timeout_names_file_and_object(tmp_path):
    path = dump(tmp_path, repo_doc(timeout="ten minutes"))
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}:1: ImageRepository team/app: spec.timeout"):
        load_flux([path])


def test_provider_aws_is_kept_but_unsupported(tmp_path):
    path = dump(tmp_path, repo_doc(image="123456789012.dkr.ecr.eu-west-1.amazonaws.com/app", provider="aws",
                                   secretRef={"name": "ignored-by-flux"}))
    job = only(load_flux([path]))
    assert job.provider == "aws"
    assert job.unsupported_reason.startswith("provider aws is not supported yet")
    assert job.credentials.anonymous
    assert "secretRef ignored-by-flux is not used with provider aws (as in Flux)" in job.notes


def test_unknown_provider_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="spec.provider 'oracle' is not one of generic, aws, azure, gcp"):
        load_flux([dump(tmp_path, repo_doc(provider="oracle"))])


def test_exclusion_list_limits(tmp_path):
    ok = only(load_flux([dump(tmp_path, repo_doc(exclusionList=[f"^v{i}$" for i in range(25)]), name="ok.yaml")]))
    assert len(ok.exclusion_list) == 25
    path = dump(tmp_path, repo_doc(exclusionList=[f"^v{i}$" for i in range(26)]), name="bad.yaml")
    with pytest.raises(ConfigError) as info:
        load_flux([path])
    assert str(info.value) == (f"{path}:1: ImageRepository team/app: spec.exclusionList has 26 entries "
                               f"(at most 25)")


def test_exclusion_list_invalid_regex_and_explicit_empty(tmp_path):
    with pytest.raises(ConfigError, match=r"spec.exclusionList entry '\(unclosed' is not a valid regular"):
        load_flux([dump(tmp_path, repo_doc(exclusionList=["(unclosed"]), name="bad.yaml")])
    # Flux's GetExclusionList (api/v1/imagerepository_types.go) returns the default unless len > 0,
    # so an explicit empty list still leaves out cosign signatures.
    empty = only(load_flux([dump(tmp_path, repo_doc(exclusionList=[]), name="empty.yaml")]))
    assert empty.exclusion_list == DEFAULT_EXCLUSION_LIST


@pytest.mark.parametrize("image, message", [
    ("ghcr.io/org/app:1.0", "should not contain a tag or digest"),
    ("https://ghcr.io/org/app", "should not start with a URL scheme; remove 'https://'"),
    ("ghcr.io/Org/App", "repository name must be lowercase"),
])
def test_invalid_images(tmp_path, image, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_flux([dump(tmp_path, repo_doc(image=image))])


def test_unknown_spec_fields_are_noted(tmp_path):
    job = only(load_flux([dump(tmp_path, repo_doc(exclusionlist=["typo"]))]))
    assert "unknown field spec.exclusionlist is ignored" in job.notes


# -- documents, files and errors -----------------------------------------------------


def test_malformed_yaml_names_file_and_line(tmp_path):
    path = write(tmp_path, """\
        apiVersion: image.toolkit.fluxcd.io/v1
        kind: ImageRepository
        metadata:
          name: broken
        spec:
          image: ghcr.io/org/app
            interval: 5m
        """)
    with pytest.raises(ConfigError) as info:
        load_flux([path])
    assert re.fullmatch(rf"{re.escape(str(path))}:7:\d+: invalid YAML: .+", str(info.value))


def test_missing_secret_is_an_error(tmp_path):
    path = dump(tmp_path, repo_doc(secretRef={"name": "regcred"}), secret_doc("regcred", namespace="other"))
    with pytest.raises(ConfigError) as info:
        load_flux([path])
    assert str(info.value) == (f"{path}:1: ImageRepository team/app: secretRef regcred not found "
                               f"(no Secret team/regcred in the given files)")


def test_unknown_kind_in_flux_group_is_an_error(tmp_path):
    doc = {"apiVersion": "image.toolkit.fluxcd.io/v1", "kind": "ImageRepo", "metadata": {"name": "x"}}
    path = dump(tmp_path, repo_doc(), doc)
    with pytest.raises(ConfigError, match=r":\d+: unknown kind 'ImageRepo' in image.toolkit.fluxcd.io/v1"):
        load_flux([path])


def test_unsupported_flux_version(tmp_path):
    with pytest.raises(ConfigError, match="ImageRepository image.toolkit.fluxcd.io/v1alpha1 is not supported"):
        load_flux([dump(tmp_path, repo_doc(api="v1alpha1"))])


def test_other_kinds_are_ignored(tmp_path):
    policy = {"apiVersion": "image.toolkit.fluxcd.io/v1beta2", "kind": "ImagePolicy",
              "metadata": {"name": "app"}, "spec": {"imageRepositoryRef": {"name": "app"}}}
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}}
    path = dump(tmp_path, policy, deployment, repo_doc(api="v1beta1"))
    (tmp_path / "notes.yaml").write_text("- just\n- a list\n")
    (tmp_path / "empty.yaml").write_text("---\n---\n")
    assert only(load_flux([tmp_path])).name == "team/app"
    assert only(load_flux([path])).origin == f"{path}:5"  # the third document, after two "---" lines


def test_directories_are_read_recursively_and_lists_expanded(tmp_path):
    dump(tmp_path / "a" / "b", repo_doc(name="one"), name="one.yml")
    listing = {"apiVersion": "v1", "kind": "List", "items": [repo_doc(name="two"), repo_doc(name="three")]}
    dump(tmp_path / "c", listing, name="list.yaml")
    (tmp_path / "c" / "ignored.txt").write_text("apiVersion: [")
    chart = tmp_path / "charts" / "web"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: web\nversion: 0.1.0\n")
    (chart / "templates" / "deploy.yaml").write_text("metadata:\n  name: {{ .Release.Name }}\n  x: [\n")
    assert [job.name for job in load_flux([tmp_path])] == ["team/one", "team/two", "team/three"]


def test_missing_path_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="no such file or directory"):
        load_flux([tmp_path / "absent"])


# -- referenced Secrets --------------------------------------------------------------


def test_secret_without_namespace_is_default(tmp_path):
    config = {"auths": {"ghcr.io": {"username": "u", "password": SECRET}}}
    secret = secret_doc("regcred", kind="kubernetes.io/dockerconfigjson",
                        data={".dockerconfigjson": json.dumps(config)})
    del secret["metadata"]["namespace"]
    repo = repo_doc(secretRef={"name": "regcred"})
    del repo["metadata"]["namespace"]
    job = only(load_flux([dump(tmp_path, repo, secret)]))
    assert job.credentials.password == SECRET and job.credentials.source == "secret:default/regcred"
    assert SECRET not in repr(job)


def test_secret_without_entry_for_registry_is_noted(tmp_path):
    config = {"auths": {"quay.io": {"auth": base64.b64encode(b"a:b").decode()}}}
    secret = secret_doc("regcred", string_data={".dockerconfigjson": json.dumps(config)})
    job = only(load_flux([dump(tmp_path, repo_doc(secretRef={"name": "regcred"}), secret)]))
    assert job.credentials.anonymous
    assert "no image pull secret has credentials for ghcr.io; collecting anonymously" in job.notes


def test_service_account_pull_secrets(tmp_path):
    config = {"auths": {"ghcr.io": {"auth": base64.b64encode(b"sa-user:pw").decode()}}}
    secret = secret_doc("pull", string_data={".dockerconfigjson": json.dumps(config)})
    account = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "scanner", "namespace": "team"},
               "imagePullSecrets": [{"name": "pull"}]}
    job = only(load_flux([dump(tmp_path, repo_doc(serviceAccountName="scanner"), account, secret)]))
    assert job.credentials.username == "sa-user" and job.credentials.source == "secret:team/pull"

    other = only(load_flux([dump(tmp_path, repo_doc(serviceAccountName="elsewhere"), name="sa.yaml")]))
    assert other.credentials.anonymous
    assert any(note.startswith("serviceAccountName elsewhere: no ServiceAccount team/elsewhere")
               for note in other.notes)


def test_cert_secret_ref(tmp_path):
    pki = make_pki(tmp_path / "pki")
    secret = secret_doc("certs", kind="kubernetes.io/tls", data={
        "ca.crt": pki.ca_cert.read_text(), "tls.crt": pki.client_cert.read_text(),
        "tls.key": pki.client_key.read_text()})
    job = only(load_flux([dump(tmp_path, repo_doc(certSecretRef={"name": "certs"}), secret)]))
    assert job.ca_file_pem == pki.ca_cert.read_bytes()
    assert job.client_cert_pem == pki.client_cert.read_bytes()
    assert job.client_key_pem == pki.client_key.read_bytes()
    assert "PRIVATE KEY" not in repr(job)
    assert isinstance(job.ssl_context(), ssl.SSLContext)


def test_cert_secret_ref_legacy_keys(tmp_path):
    pki = make_pki(tmp_path / "pki")
    secret = secret_doc("certs", string_data={"caFile": pki.ca_cert.read_text()})
    job = only(load_flux([dump(tmp_path, repo_doc(certSecretRef={"name": "certs"}), secret)]))
    assert job.ca_file_pem == pki.ca_cert.read_bytes() and job.client_cert_pem is None
    assert "certSecretRef uses the deprecated keys caFile" in job.notes


@pytest.mark.parametrize("data, message", [
    ({"tls.crt": "cert only"}, "tls.crt and tls.key must be given together"),
    ({"unrelated": "x"}, "has neither ca.crt nor tls.crt/tls.key"),
    ({"ca.crt": "-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n"}, "is not a PEM certificate"),
])
def test_cert_secret_ref_errors(tmp_path, data, message):
    path = dump(tmp_path, repo_doc(certSecretRef={"name": "certs"}), secret_doc("certs", string_data=data))
    with pytest.raises(ConfigError) as info:
        load_flux([path])
    assert str(info.value).startswith(f"{path}:1: ImageRepository team/app: certSecretRef certs: ")
    assert message in str(info.value)


def test_proxy_secret_ref(tmp_path):
    secret = secret_doc("proxy", data={"address": "http://proxy.internal:3128", "username": "me@corp",
                                       "password": SECRET + "/:"})
    job = only(load_flux([dump(tmp_path, repo_doc(proxySecretRef={"name": "proxy"}), secret)]))
    assert job.proxy == f"http://me%40corp:{SECRET}%2F%3A@proxy.internal:3128"
    assert SECRET not in repr(job)


def test_proxy_secret_ref_errors(tmp_path):
    path = dump(tmp_path, repo_doc(proxySecretRef={"name": "proxy"}), secret_doc("proxy", string_data={}))
    with pytest.raises(ConfigError, match="proxySecretRef proxy: has no address"):
        load_flux([path])
    path = dump(tmp_path, repo_doc(proxySecretRef={"name": "proxy"}),
                secret_doc("proxy", string_data={"address": "ftp://x"}), name="ftp.yaml")
    with pytest.raises(ConfigError, match="proxy address must be a URL with scheme http, https, socks5"):
        load_flux([path])


def test_client_options_from_job(tmp_path):
    pki = make_pki(tmp_path / "pki")
    config = {"auths": {"ghcr.io": {"username": "u", "password": SECRET}}}
    docs = [repo_doc(secretRef={"name": "regcred"}, certSecretRef={"name": "ca"}, timeout="45s"),
            secret_doc("regcred", string_data={".dockerconfigjson": json.dumps(config)}),
            secret_doc("ca", string_data={"ca.crt": pki.ca_cert.read_text()})]
    job = only(load_flux([dump(tmp_path, *docs)]))
    options = job.client_options(ClientOptions(concurrency=4))
    assert (options.username, options.password, options.timeout, options.concurrency) == ("u", SECRET, 45.0, 4)
    assert isinstance(options.verify, ssl.SSLContext)
    assert SECRET not in repr(options)


# -- the plain config file -----------------------------------------------------------


def test_plain_config_file(tmp_path):
    pki = make_pki(tmp_path / "pki")
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "regcred.yaml").write_text(json.dumps(secret_doc(
        "regcred", kind="kubernetes.io/dockerconfigjson",
        data={".dockerconfigjson": json.dumps({"auths": {"registry.example.com": {"username": "r",
                                                                                   "password": "p"}}})})))
    (tmp_path / "pw.txt").write_text(SECRET + "\n")
    path = write(tmp_path, """\
        registries:
          - url: https://registry.example.com
            name: prod
            repositories: [team/app, team/api]
            include: ["team/*"]
            exclude: ["*-cache"]
            exclusion_list: ["-rc\\\\d+$"]
            credentials: {from: secret-file, path: secrets/regcred.yaml}
            ca_file: pki/ca.crt
            cert_file: pki/client.crt
            key_file: pki/client.key
            timeout: 1m30s
            proxy: http://proxy.internal:3128
          - url: http://127.0.0.1:5000
            credentials: {username: robot, password_file: pw.txt}
            insecure: true
            timeout: 5
          - url: ghcr.io
            credentials: {from: environment}
            suspend: true
          - url: https://quay.io
            repositories: [org/one]
            credentials: {from: none}
        """, name="repoaudit.yaml")
    env = {"REPOAUDIT_USERNAME": "envuser", "REPOAUDIT_PASSWORD": "envpw"}
    prod, local, ghcr, quay = load_config(path, env=env)

    assert (prod.name, prod.registry, prod.registry_url) == ("prod", "registry.example.com",
                                                            "https://registry.example.com")
    assert prod.repositories == ("team/app", "team/api") and prod.canonical_image is None
    assert (prod.include, prod.exclude, prod.exclusion_list) == (("team/*",), ("*-cache",), ("-rc\\d+$",))
    assert (prod.credentials.username, prod.credentials.source) == ("r", "secret:team/regcred")
    assert prod.ca_file_pem == pki.ca_cert.read_bytes() and prod.client_key_pem == pki.client_key.read_bytes()
    assert prod.timeout == 90.0 and prod.proxy == "http://proxy.internal:3128"

    assert (local.name, local.registry_url, local.insecure, local.timeout) == (
        "127.0.0.1:5000", "http://127.0.0.1:5000", True, 5.0)
    assert (local.credentials.username, local.credentials.password) == ("robot", SECRET)
    assert local.client_options().verify is False
    assert local.repositories == () and local.exclusion_list == DEFAULT_EXCLUSION_LIST

    assert ghcr.registry_url == "https://ghcr.io" and ghcr.suspended
    assert (ghcr.credentials.username, ghcr.credentials.source) == ("envuser", "environment")

    assert quay.credentials.anonymous and quay.canonical_image == "quay.io/org/one"
    assert SECRET not in repr([prod, local, ghcr, quay])


def test_plain_config_defaults_to_docker_config(tmp_path):
    docker = tmp_path / "docker"
    docker.mkdir()
    (docker / "config.json").write_text(json.dumps(
        {"auths": {"https://ghcr.io": {"auth": base64.b64encode(b"dc:pw").decode()}}}))
    path = write(tmp_path, "registries:\n  - url: https://ghcr.io\n  - url: https://quay.io\n")
    ghcr, quay = load_config(path, env={"DOCKER_CONFIG": str(docker), "REPOAUDIT_USERNAME": "not-used",
                                        "REPOAUDIT_PASSWORD": "not-used"})
    assert (ghcr.credentials.username, ghcr.credentials.source) == ("dc", "docker-config")
    # Environment credentials would go to every registry; the config only uses them when asked.
    assert quay.credentials.anonymous


@pytest.mark.parametrize("entry, message", [
    ("{url: https://x.example, password: hunter2}", "unknown key 'password' (passwords are not written"),
    ("{url: https://x.example, credentials: {username: u, password: hunter2}}",
     "credentials: unknown key 'password' (use password_env or password_file)"),
    ("{url: https://x.example, credentials: {username: u, password_env: NOT_SET_ANYWHERE}}",
     "environment variable NOT_SET_ANYWHERE is not set"),
    ("{url: https://x.example, credentials: {from: vault}}", "'from' must be one of"),
    ("{url: https://x.example, timeout: soon}", "timeout: invalid duration 'soon'"),
    ("{url: https://x.example, cert_file: missing.pem}", "cert_file"),
    ("{url: https://x.example/v2/}", "give the registry root, not a path"),
    ("{url: oci:/tmp/layout}", "url must be an https:// or http:// registry"),
    ("{name: nourl}", "'url' is required"),
    ("{url: https://x.example, exclusion_list: [\"[\"]}", "is not a valid regular expression"),
])
def test_plain_config_errors(tmp_path, entry, message):
    path = write(tmp_path, f"registries:\n  - {entry}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert str(info.value).startswith(f"{path}: registries[0]")
    assert message in str(info.value)
    assert "hunter2" not in str(info.value)


def test_plain_config_file_level_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown key 'registry'"):
        load_config(write(tmp_path, "registry: []\n", name="a.yaml"))
    with pytest.raises(ConfigError, match="'registries' must be a non-empty list"):
        load_config(write(tmp_path, "registries: []\n", name="b.yaml"))
    with pytest.raises(ConfigError, match="name 'ghcr.io' is used twice"):
        load_config(write(tmp_path, "registries: [{url: ghcr.io}, {url: 'https://ghcr.io'}]\n", name="c.yaml"),
                    env={"HOME": str(tmp_path)})
    with pytest.raises(ConfigError, match=r"d\.yaml:2:1: invalid YAML: .*a tab"):
        load_config(write(tmp_path, "registries:\n\t- url: x\n", name="d.yaml"))


def test_exclusion_regexes_are_read_as_go_reads_them(tmp_path):
    """Flux compiles exclusionList with Go's regexp (RE2): a lookahead fails, \\z is the end of text."""
    from repoaudit.jobs.job import excluded

    with pytest.raises(ConfigError, match=r"Go/RE2 syntax.*invalid perl operator"):
        load_flux([dump(tmp_path, repo_doc(exclusionList=["^(?!v)"]), name="lookahead.yaml")])
    job = only(load_flux([dump(tmp_path, repo_doc(exclusionList=[r"\.sig\z"]), name="z.yaml")]))
    assert excluded("sha256-abc.sig", job.exclusion_list) and not excluded("v1.sig.x", job.exclusion_list)


def test_exclude_tag_option_reads_regexes_as_flux_does():
    from repoaudit.model.options import CollectOptions

    assert CollectOptions(exclude_tags=(r"\.sig\z",)).exclude_tags == (r"\.sig\z",)
    with pytest.raises(ConfigError, match=r"invalid tag exclusion regex '\^\(\?!v\)' \(Go/RE2 syntax"):
        CollectOptions(exclude_tags=("^(?!v)",))
