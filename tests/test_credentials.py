"""Credential sources: Docker's config.json and credential helpers, the environment, pull Secrets."""

from __future__ import annotations

import base64
import json
import os
import stat
import sys
from pathlib import Path

import pytest

from repoaudit.sources.credentials import DOCKER_HUB_SERVER_URL, Credentials, default_docker_config_path, from_docker_config, from_dockerconfigjson_secret, from_environment, registry_key, resolve
from repoaudit.errors import ConfigError

SECRET = "s3cr3t-do-not-print"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def write_config(tmp_path: Path, doc: dict) -> Path:
    path = tmp_path / "docker" / "config.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


# A real executable on PATH, run the way Docker runs helpers. Its behaviour per server
# URL comes from a JSON file beside it, and it logs every call (argv + stdin) there too.
HELPER_SCRIPT = """#!{python}
import json, sys, pathlib
here = pathlib.Path(__file__).resolve().parent
server = sys.stdin.read()
with open(here / "calls.log", "a") as log:
    log.write(json.dumps({{"argv": sys.argv[1:], "stdin": server}}) + "\\n")
not_found = {{"exit": 1, "stdout": "credentials not found in native keychain"}}
plan = json.loads((here / "plan.json").read_text()).get(server.strip(), not_found)
sys.stdout.write(plan.get("stdout", ""))
sys.stderr.write(plan.get("stderr", ""))
sys.exit(plan.get("exit", 0))
"""


@pytest.fixture
def helper(tmp_path, monkeypatch):
    """Installs ``docker-credential-test``; returns a function that sets its answers per server URL."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    script = bindir / "docker-credential-test"
    script.write_text(HELPER_SCRIPT.format(python=sys.executable))
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    (bindir / "plan.json").write_text("{}")
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")

    class Helper:
        def plan(self, answers: dict) -> None:
            (bindir / "plan.json").write_text(json.dumps(answers))

        def answer(self, server: str, username: str, secret: str) -> dict:
            return {server: {"stdout": json.dumps({"ServerURL": server, "Username": username, "Secret": secret})}}

        @property
        def calls(self) -> list[dict]:
            log = bindir / "calls.log"
            return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    return Helper()


# -- registry_key ------------------------------------------------------------------


@pytest.mark.parametrize("text", ["https://index.docker.io/v1/", "docker.io", "index.docker.io",
                                  "registry-1.docker.io", "https://registry-1.docker.io", "Docker.IO"])
def test_docker_hub_aliases_share_one_key(text):
    assert registry_key(text) == "index.docker.io"


@pytest.mark.parametrize("text, key", [
    ("https://ghcr.io", "ghcr.io"),
    ("ghcr.io", "ghcr.io"),
    ("http://127.0.0.1:5000/", "127.0.0.1:5000"),
    ("registry.example.com:443/v2/", "registry.example.com:443"),
    ("QUAY.io", "quay.io"),
])
def test_registry_key_strips_scheme_and_path(text, key):
    assert registry_key(text) == key


# -- config.json auths -------------------------------------------------------------


def test_auth_field_is_base64_user_password():
    config = {"auths": {"ghcr.io": {"auth": b64("alice:pa:ss")}}}
    creds = from_docker_config("ghcr.io", config)
    assert (creds.username, creds.password, creds.source) == ("alice", "pa:ss", "docker-config")


def test_auth_field_without_padding_is_accepted():
    value = b64("bob:pw1").rstrip("=")
    assert from_docker_config("ghcr.io", {"auths": {"ghcr.io": {"auth": value}}}).password == "pw1"


def test_username_and_password_fields():
    creds = from_docker_config("ghcr.io", {"auths": {"https://ghcr.io": {"username": "u", "password": "p"}}})
    assert (creds.username, creds.password) == ("u", "p")


def test_identity_token():
    creds = from_docker_config("myregistry.azurecr.io",
                               {"auths": {"myregistry.azurecr.io": {"auth": b64("00000000-0000:"),
                                                                     "identitytoken": "refresh-me"}}})
    assert creds.identity_token == "refresh-me"
    assert creds.password is None and not creds.anonymous


@pytest.mark.parametrize("host", ["docker.io", "index.docker.io", "registry-1.docker.io"])
def test_docker_hub_entry_matches_every_alias(host):
    config = {"auths": {DOCKER_HUB_SERVER_URL: {"auth": b64("hub:pw")}}}
    assert from_docker_config(host, config).username == "hub"


def test_no_entry_for_host_is_none():
    config = {"auths": {"ghcr.io": {"auth": b64("a:b")}, "quay.io": {}}}
    assert from_docker_config("registry.example.com", config) is None
    assert from_docker_config("quay.io", config) is None  # the "{}" a credsStore login leaves


def test_exact_key_wins_over_normalised_key():
    config = {"auths": {"https://ghcr.io/v1/": {"auth": b64("url:1")}, "ghcr.io": {"auth": b64("host:2")}}}
    assert from_docker_config("ghcr.io", config).username == "host"


def test_reads_docker_config_env_then_home(tmp_path):
    write_config(tmp_path, {"auths": {"ghcr.io": {"auth": b64("fromenv:pw")}}})
    env = {"DOCKER_CONFIG": str(tmp_path / "docker"), "HOME": str(tmp_path / "nohome")}
    assert from_docker_config("ghcr.io", env=env).username == "fromenv"

    home = tmp_path / "home"
    (home / ".docker").mkdir(parents=True)
    (home / ".docker" / "config.json").write_text(json.dumps({"auths": {"ghcr.io": {"auth": b64("fromhome:pw")}}}))
    assert default_docker_config_path({"HOME": str(home)}) == home / ".docker" / "config.json"
    assert from_docker_config("ghcr.io", env={"HOME": str(home)}).username == "fromhome"


def test_missing_config_file_is_none(tmp_path):
    assert from_docker_config("ghcr.io", config_path=tmp_path / "absent.json") is None


def test_invalid_json_names_file_and_line_not_content(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{\n  "auths": {\n    "ghcr.io": {"auth": "' + SECRET + '" \n')
    with pytest.raises(ConfigError) as info:
        from_docker_config("ghcr.io", config_path=path)
    message = str(info.value)
    assert message.startswith(f"{path}:3:")
    assert SECRET not in message


def test_bad_base64_auth_does_not_quote_the_value():
    with pytest.raises(ConfigError) as info:
        from_docker_config("ghcr.io", {"auths": {"ghcr.io": {"auth": SECRET + "!!"}}})
    assert "ghcr.io" in str(info.value) and SECRET not in str(info.value)


# -- credential helpers ------------------------------------------------------------


def test_cred_helper_for_host(helper):
    helper.plan(helper.answer("ghcr.io", "robot", SECRET))
    config = {"credHelpers": {"ghcr.io": "test"}, "auths": {"ghcr.io": {"auth": b64("file:ignored")}}}
    creds = from_docker_config("ghcr.io", config)
    assert (creds.username, creds.password, creds.source) == ("robot", SECRET, "credential-helper:test")
    assert helper.calls == [{"argv": ["get"], "stdin": "ghcr.io"}]


def test_cred_helper_token_username_means_identity_token(helper):
    helper.plan(helper.answer("example.azurecr.io", "<token>", "refresh-token"))
    creds = from_docker_config("example.azurecr.io", {"credHelpers": {"example.azurecr.io": "test"}})
    assert creds.identity_token == "refresh-token"
    assert creds.username is None and creds.password is None


def test_creds_store_gets_docker_hub_server_url(helper):
    helper.plan(helper.answer(DOCKER_HUB_SERVER_URL, "hubuser", SECRET))
    creds = from_docker_config("registry-1.docker.io", {"credsStore": "test"})
    assert creds.username == "hubuser" and creds.source == "credential-helper:test"
    assert helper.calls[0]["stdin"] == DOCKER_HUB_SERVER_URL


def test_cred_helpers_win_over_creds_store(helper, tmp_path):
    helper.plan(helper.answer("ghcr.io", "specific", "x"))
    config = {"credsStore": "missing-store", "credHelpers": {"https://ghcr.io": "test"}}
    assert from_docker_config("ghcr.io", config).username == "specific"


def test_creds_store_not_found_falls_back_to_auths(helper):
    helper.plan({})  # the helper answers "credentials not found" with exit 1, as real helpers do
    config = {"credsStore": "test", "auths": {"ghcr.io": {"auth": b64("inline:pw")}}}
    creds = from_docker_config("ghcr.io", config)
    assert creds.username == "inline" and creds.source == "docker-config"


def test_cred_helper_not_found_is_none(helper):
    helper.plan({})
    assert from_docker_config("ghcr.io", {"credHelpers": {"ghcr.io": "test"}}) is None


def test_missing_helper_names_it(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ConfigError, match="docker-credential-nosuch .*not found on PATH"):
        from_docker_config("ghcr.io", {"credHelpers": {"ghcr.io": "nosuch"}})


def test_failing_helper_names_it_and_never_prints_the_secret(helper):
    # A helper that dies after printing a credential-shaped answer: the JSON must not be quoted.
    helper.plan({"ghcr.io": {"exit": 3, "stdout": json.dumps({"Username": "u", "Secret": SECRET}),
                             "stderr": "keychain locked\nmore detail"}})
    with pytest.raises(ConfigError) as info:
        from_docker_config("ghcr.io", {"credHelpers": {"ghcr.io": "test"}})
    message = str(info.value)
    assert "docker-credential-test" in message and "exit 3" in message
    assert "keychain locked" in message and "more detail" not in message
    assert SECRET not in message


def test_helper_answer_that_is_not_json(helper):
    helper.plan({"ghcr.io": {"stdout": SECRET}})
    with pytest.raises(ConfigError) as info:
        from_docker_config("ghcr.io", {"credHelpers": {"ghcr.io": "test"}})
    assert "not JSON" in str(info.value) and SECRET not in str(info.value)


# -- environment -------------------------------------------------------------------


def test_environment_user_and_password():
    creds = from_environment("ghcr.io", {"REPOAUDIT_USERNAME": "ci", "REPOAUDIT_PASSWORD": "pw"})
    assert (creds.username, creds.password, creds.source) == ("ci", "pw", "environment")


def test_environment_identity_token():
    creds = from_environment("ghcr.io", {"REPOAUDIT_IDENTITY_TOKEN": "tok"})
    assert creds.identity_token == "tok" and creds.source == "environment"


def test_environment_empty_is_none():
    assert from_environment("ghcr.io", {}) is None


@pytest.mark.parametrize("env, missing", [({"REPOAUDIT_USERNAME": "ci"}, "REPOAUDIT_PASSWORD"),
                                          ({"REPOAUDIT_PASSWORD": SECRET}, "REPOAUDIT_USERNAME")])
def test_environment_half_set_is_an_error(env, missing):
    with pytest.raises(ConfigError) as info:
        from_environment("ghcr.io", env)
    assert missing in str(info.value) and SECRET not in str(info.value)


# -- Kubernetes pull secrets -------------------------------------------------------


def pull_secret(config: dict, *, string_data: bool = False, kind: str = "kubernetes.io/dockerconfigjson",
                key: str = ".dockerconfigjson") -> dict:
    body = json.dumps(config)
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "regcred", "namespace": "team"},
              "type": kind}
    if string_data:
        secret["stringData"] = {key: body}
    else:
        secret["data"] = {key: b64(body)}
    return secret


def test_dockerconfigjson_secret():
    secret = pull_secret({"auths": {"https://index.docker.io/v1/": {"username": "foo", "password": "bar"}}})
    creds = from_dockerconfigjson_secret(secret, "index.docker.io")
    assert (creds.username, creds.password, creds.source) == ("foo", "bar", "secret:team/regcred")
    assert from_dockerconfigjson_secret(secret, "ghcr.io") is None


def test_dockerconfigjson_secret_string_data():
    secret = pull_secret({"auths": {"ghcr.io": {"auth": b64("sd:pw")}}}, string_data=True)
    assert from_dockerconfigjson_secret(secret, "ghcr.io").username == "sd"


def test_legacy_dockercfg_secret():
    secret = pull_secret({"quay.io": {"auth": b64("legacy:pw"), "email": "x@example.com"}},
                         kind="kubernetes.io/dockercfg", key=".dockercfg")
    assert from_dockerconfigjson_secret(secret, "quay.io").username == "legacy"


def test_secret_without_docker_config_key():
    secret = {"kind": "Secret", "metadata": {"name": "tls"}, "type": "kubernetes.io/tls", "data": {"tls.crt": ""}}
    with pytest.raises(ConfigError, match=r"Secret default/tls: has neither \.dockerconfigjson"):
        from_dockerconfigjson_secret(secret, "ghcr.io")


def test_secret_with_bad_base64_does_not_quote_it():
    secret = {"kind": "Secret", "metadata": {"name": "bad", "namespace": "ns"},
              "data": {".dockerconfigjson": SECRET + "*"}}
    with pytest.raises(ConfigError) as info:
        from_dockerconfigjson_secret(secret, "ghcr.io")
    assert "Secret ns/bad" in str(info.value) and SECRET not in str(info.value)


# -- precedence and hygiene --------------------------------------------------------


def test_resolve_precedence(tmp_path):
    config = write_config(tmp_path, {"auths": {"ghcr.io": {"auth": b64("file:pw")}}})
    env = {"REPOAUDIT_USERNAME": "env", "REPOAUDIT_PASSWORD": "envpw"}

    flags = resolve("ghcr.io", username="flag", password="flagpw", env=env, docker_config_path=config)
    assert (flags.username, flags.source) == ("flag", "flags")
    assert resolve("ghcr.io", env=env, docker_config_path=config).source == "environment"
    assert resolve("ghcr.io", env={}, docker_config_path=config).source == "docker-config"
    anonymous = resolve("quay.io", env={}, docker_config_path=config)
    assert anonymous == Credentials() and anonymous.anonymous


def test_resolve_username_flag_takes_password_from_environment(tmp_path):
    creds = resolve("ghcr.io", username="ci", env={"REPOAUDIT_PASSWORD": "pw"},
                    docker_config_path=tmp_path / "none.json")
    assert (creds.username, creds.password, creds.source) == ("ci", "pw", "flags")


def test_resolve_rejects_half_flags(tmp_path):
    with pytest.raises(ConfigError, match="without a password"):
        resolve("ghcr.io", username="ci", env={}, docker_config_path=tmp_path / "none.json")
    with pytest.raises(ConfigError) as info:
        resolve("ghcr.io", password=SECRET, env={}, docker_config_path=tmp_path / "none.json")
    assert SECRET not in str(info.value)


def test_secrets_are_not_in_repr():
    creds = Credentials(username="alice", password=SECRET, identity_token=SECRET + "2", source="flags")
    assert SECRET not in repr(creds) and SECRET not in str(creds)
    assert "alice" in repr(creds)


def test_collect_name_never_picks_another_hosts_credentials(tmp_path, monkeypatch):
    """`--name` is a display name: credentials go by the URL's host, so naming a run after a host
    in the Docker config cannot send that host's password elsewhere."""
    import base64 as b64

    import httpx

    import repoaudit
    from fakeregistry import FakeRegistry

    config = tmp_path / "docker"
    config.mkdir()
    secret = b64.b64encode(b"admin:s3cret").decode()
    (config / "config.json").write_text(json.dumps({"auths": {"trusted.example:5000": {"auth": secret}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    for var in ("REPOAUDIT_USERNAME", "REPOAUDIT_PASSWORD", "REPOAUDIT_IDENTITY_TOKEN"):
        monkeypatch.delenv(var, raising=False)

    fake = FakeRegistry()
    fake.add_image("app", "1")
    seen: list[tuple[str, str | None]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.host, request.headers.get("authorization")))
        if "authorization" not in request.headers:
            return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="registry"'})
        return fake.handle(request)

    def collect(url: str, name: str | None):
        seen.clear()
        with repoaudit.open(tmp_path / f"{len(list(tmp_path.iterdir()))}.duckdb") as audit:
            try:
                audit.collect(url, name=name, transport=httpx.MockTransport(handler), progress=False)
            except repoaudit.RepoauditError:
                pass  # refused for lack of credentials: what matters is what was sent
        return [auth for _, auth in seen if auth]

    # The control: the host itself gets its own credentials.
    assert collect("http://trusted.example:5000", None) and all("Basic " in a for a in collect(
        "http://trusted.example:5000", None))
    # Another host, named after the trusted one, gets none.
    assert collect("http://elsewhere.example:5000", "trusted.example:5000") == []
