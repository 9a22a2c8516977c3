"""The one loader of user-supplied files, and every reader that goes through it.

Each hostile file must give one line naming the file (and, where there is one, the
line and column), in the error class of the reader's domain: never a parser's own
exception, a RecursionError or a hang.
"""

from __future__ import annotations

import json
import re
import time

import pytest

from repoaudit import loader
from repoaudit.sources.credentials import from_docker_config, from_dockerconfigjson_secret
from repoaudit.errors import ConfigError, IngestError, PolicyError, RepoauditError
from repoaudit.jobs.configfile import load_config
from repoaudit.jobs.flux import load_flux
from repoaudit.loader import load_document, load_documents, parse_document
from repoaudit.retention.formats import load_policy
from repoaudit.ingest.scans import load_report
from repoaudit.ingest.pods import load_pods

DEPTH = 200_000
DEEP_JSON = "[" * DEPTH + "]" * DEPTH
DEEP_OBJECT = '{"a": ' * DEPTH + "1" + "}" * DEPTH
DEEP_FLOW = "[" * DEPTH + "]" * DEPTH
DEEP_FLOW_YAML = "key: " + DEEP_FLOW + "\n"
DEEP_BLOCK_YAML = "- " * DEPTH + "x\n"


def one_line(error: BaseException, path, pattern: str = "") -> str:
    message = str(error)
    assert "\n" not in message
    assert message.startswith(str(path)), message
    assert re.search(pattern, message), message
    return message


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# -- the loader itself -------------------------------------------------------------------


@pytest.mark.parametrize("text", [DEEP_JSON, DEEP_OBJECT], ids=["array", "object"])
def test_deep_json_is_one_line_with_position_and_fast(tmp_path, text):
    path = write(tmp_path, "deep.json", text)
    start = time.monotonic()
    with pytest.raises(ConfigError) as info:
        load_document(path)
    assert time.monotonic() - start < 10
    one_line(info.value, path, rf"^{re.escape(str(path))}:1:\d+: nested deeper than {loader.MAX_DEPTH} levels$")


@pytest.mark.parametrize("text", [DEEP_FLOW_YAML, DEEP_BLOCK_YAML], ids=["flow", "block"])
def test_deep_yaml_is_one_line_with_position_and_fast(tmp_path, text):
    # libyaml alone takes minutes on 200,000 flow levels; the composer here stops at the limit.
    path = write(tmp_path, "deep.yaml", text)
    start = time.monotonic()
    with pytest.raises(ConfigError) as info:
        load_documents(path)
    assert time.monotonic() - start < 10
    one_line(info.value, path, r":1:\d+: nested deeper than 100 levels$")


def test_depth_limit_is_exact_and_ignores_brackets_in_strings():
    at_limit = "[" * 100 + "]" * 100
    assert parse_document(at_limit, fmt="json") is not None
    with pytest.raises(ConfigError, match=r"<input>:1:101: nested deeper"):
        parse_document("[" + at_limit + "]", fmt="json")
    assert parse_document('{"a": "[[[[\\"[[[", "b": "\\\\"}', fmt="json", max_depth=1) == {"a": '[[[["[[[', "b": "\\"}
    assert parse_document("a: [[1]]\n", fmt="yaml", max_depth=3) == {"a": [[1]]}
    with pytest.raises(ConfigError, match="nested deeper than 2 levels"):
        parse_document("a: [[1]]\n", fmt="yaml", max_depth=2)


@pytest.mark.parametrize(("text", "pattern"), [
    ('{"a": [1, 2', r":1:12: truncated JSON"),
    ('{"a": 1,, "b": 2}', r":1:9: malformed JSON: Expecting property name"),
    ('{"n": ' + "9" * 5000 + "}", r":1:7: malformed JSON: Exceeds the limit"),
    ("a: b\nc: \x86\n", r":2:4: invalid YAML: control character U\+0086 is not allowed"),
    ("a:\n\tb: 1\n", r":2:1: invalid YAML: .*a tab"),
    ("a: [1\n", r":2:1: invalid YAML: did not find expected"),
    ("a: *nowhere\n", r":1:4: invalid YAML: alias \*nowhere names no anchor"),
    ("a: &x 1\nb: &x 2\n", r":2:4: invalid YAML: anchor &x is defined twice"),
    ("a: &a [1, *a]\n", r":1:11: invalid YAML: alias \*a is inside the node it names"),
    ("a: 2024-02-30\n", r":1:1: invalid YAML: day is out of range"),
    ("a: !!python/object:os.system x\n", r":1:4: invalid YAML: could not determine a constructor"),
    ("? [a]\n: b\n", r"invalid YAML: found unhashable key"),
])
def test_every_parser_error_is_one_line_with_position(tmp_path, text, pattern):
    path = write(tmp_path, "doc.json" if text.startswith("{") else "doc.yaml", text)
    with pytest.raises(ConfigError) as info:
        load_documents(path)
    one_line(info.value, path, pattern)


def test_billion_laughs_is_refused(tmp_path):
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for prev, name in zip("abcdefgh", "bcdefghi"):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 10) + "]")
    path = write(tmp_path, "laughs.yaml", "\n".join(lines) + "\n")
    with pytest.raises(ConfigError) as info:
        load_document(path)
    one_line(info.value, path, r"YAML aliases expand to more than \d+ nodes")


def test_not_utf8_oversized_empty_and_missing(tmp_path):
    binary = tmp_path / "bin.json"
    binary.write_bytes(b'{"a":\n "\xff"}')
    with pytest.raises(ConfigError) as info:
        load_document(binary)
    one_line(info.value, binary, r":2:3: not UTF-8 text \(byte 0xff\)")
    big = write(tmp_path, "big.json", '{"a": "' + "x" * 2000 + '"}')
    with pytest.raises(IngestError) as info:
        load_document(big, kind="scan", max_bytes=1000)
    one_line(info.value, big, r": larger than 1000 bytes, the limit for scan reports$")
    empty = write(tmp_path, "empty.yaml", "  \n")
    with pytest.raises(PolicyError, match="empty file"):
        load_document(empty, kind="policy")
    assert load_document(empty, empty_ok=True) is None
    with pytest.raises(ConfigError, match="missing.json: cannot read plan: No such file"):
        load_document(tmp_path / "missing.json", kind="plan")


def test_documents_carry_their_line_and_yaml_semantics_are_safeloaders(tmp_path):
    path = write(tmp_path, "multi.yaml", "a: 1\n---\n# note\nb: &x {k: v}\nc: *x\nd: '1'\ne: yes\n---\n")
    docs = load_documents(path)
    assert [d.line for d in docs] == [1, 4, 9]
    assert docs[1].body == {"b": {"k": "v"}, "c": {"k": "v"}, "d": "1", "e": True}
    assert docs[2].body is None  # an explicit empty document, as yaml.safe_load_all gives it
    assert load_document(write(tmp_path, "m.yaml", "base: &b {x: 1}\nd:\n  <<: *b\n  y: 2\n"))["d"] == {"x": 1, "y": 2}
    with pytest.raises(ConfigError, match=r"m2.yaml:3:1: holds 2 YAML documents, expected one"):
        load_document(write(tmp_path, "m2.yaml", "a: 1\n---\nb: 2\n"))


def test_plan_reading_through_the_loader(tmp_path):
    # What apply.load_plan will call: a plan is JSON, its errors are ConfigError.
    path = write(tmp_path, "plan.json", '{"repoaudit_plan": 1, "plans": ' + DEEP_JSON + "}")
    with pytest.raises(ConfigError) as info:
        load_document(path, kind="plan", fmt="json")
    one_line(info.value, path, r":1:\d+: nested deeper than")
    assert loader.MAX_BYTES["plan"] == 256 << 20


# -- every reader --------------------------------------------------------------------


SCAN_PREFIX = {
    "trivy": '{"SchemaVersion": 2, "ArtifactType": "container_image", "Results": ',
    "grype": '{"descriptor": {}, "source": {"type": "image"}, "matches": ',
    "cyclonedx": '{"bomFormat": "CycloneDX", "specVersion": "1.5", "components": ',
}


@pytest.mark.parametrize("scanner", sorted(SCAN_PREFIX))
def test_deep_scan_reports(tmp_path, scanner):
    path = write(tmp_path, f"{scanner}.json", SCAN_PREFIX[scanner] + DEEP_JSON + "}")
    with pytest.raises(IngestError) as info:
        load_report(path, scanner)
    one_line(info.value, path, r":1:\d+: nested deeper than")


@pytest.mark.parametrize(("name", "text"), [("pods.json", '{"kind": "PodList", "items": ' + DEEP_JSON + "}"),
                                            ("pods.yaml", "kind: PodList\nitems:\n" + DEEP_BLOCK_YAML)],
                         ids=["json", "yaml"])
def test_deep_pod_listings(tmp_path, name, text):
    path = write(tmp_path, name, text)
    with pytest.raises(IngestError) as info:
        load_pods(path)
    one_line(info.value, path, r":\d+:\d+: nested deeper than")


@pytest.mark.parametrize(("name", "text"), [("policy.yaml", "rules: " + DEEP_FLOW + "\n"),
                                            ("policy.json", '{"rules": ' + DEEP_JSON + "}")],
                         ids=["yaml", "json"])
def test_deep_policies(tmp_path, name, text):
    path = write(tmp_path, name, text)
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    one_line(info.value, path, r":\d+:\d+: nested deeper than")


def test_deep_flux_and_config_files(tmp_path):
    flux = write(tmp_path, "flux.yaml", "apiVersion: v1\nkind: List\nitems: " + DEEP_FLOW + "\n")
    with pytest.raises(ConfigError) as info:
        load_flux([flux])
    one_line(info.value, flux, r":\d+:\d+: nested deeper than")
    config = write(tmp_path, "repoaudit.yaml", "registries:\n" + DEEP_BLOCK_YAML)
    with pytest.raises(ConfigError) as info:
        load_config(config)
    one_line(info.value, config, r":\d+:\d+: nested deeper than")


def test_flux_file_with_a_c1_control_character(tmp_path):
    path = write(tmp_path, "flux.yaml", "apiVersion: image.toolkit.fluxcd.io/v1\nkind: ImageRepository\n"
                                        "metadata:\n  name: app\u0085x\u009b\n")
    with pytest.raises(ConfigError) as info:
        load_flux([path])
    one_line(info.value, path, r":4:\d+: invalid YAML: control character U\+009B is not allowed$")


def test_deep_docker_configs(tmp_path):
    path = write(tmp_path, "config.json", '{"auths": ' + DEEP_JSON + "}")
    with pytest.raises(ConfigError) as info:
        from_docker_config("ghcr.io", config_path=path)
    one_line(info.value, path, r":1:\d+: nested deeper than")
    secret = {"metadata": {"name": "pull"}, "stringData": {".dockerconfigjson": DEEP_JSON}}
    with pytest.raises(ConfigError) as info:
        from_dockerconfigjson_secret(secret, "ghcr.io")
    one_line(info.value, "Secret", r"\.dockerconfigjson:1:\d+: nested deeper than")


def test_oversized_files_are_refused_before_reading(tmp_path, monkeypatch):
    monkeypatch.setitem(loader.MAX_BYTES, "scan", 64)
    monkeypatch.setitem(loader.MAX_BYTES, "pods", 64)
    monkeypatch.setitem(loader.MAX_BYTES, "policy", 64)
    big = '{"SchemaVersion": 2, "ArtifactType": "container_image", "Results": []}'
    path = write(tmp_path, "scan.json", big)
    with pytest.raises(IngestError, match=r"scan.json: larger than 64 bytes, the limit for scan reports"):
        load_report(path, "trivy")
    with pytest.raises(IngestError, match=r"larger than 64 bytes, the limit for pod listings"):
        load_pods(write(tmp_path, "pods.json", json.dumps({"kind": "PodList", "items": [], "pad": "x" * 64})))
    with pytest.raises(PolicyError, match=r"larger than 64 bytes, the limit for policies"):
        load_policy(write(tmp_path, "p.yaml", "rules: []\n" + "#" * 64 + "\n"))


def test_errors_are_the_readers_domain_classes():
    assert issubclass(IngestError, RepoauditError) and issubclass(PolicyError, RepoauditError)
    with pytest.raises(IngestError):
        parse_document("[", kind="scan", fmt="json")
    with pytest.raises(PolicyError):
        parse_document("[", kind="policy", fmt="json")
    with pytest.raises(ConfigError):
        parse_document("[", kind="flux", fmt="json")
