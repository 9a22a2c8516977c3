"""fluxcd/image-reflector-controller's own scan tests, ported: exclusion lists, latestTags, canonical names,
condition reasons.

Upstream: fluxcd/image-reflector-controller at debe2aaa3a98ad3ca69e178638402a5a0feec4a6,
internal/controller/imagerepository_controller_test.go and scan_test.go. Each case is an
``ImageRepository`` object a user would hand to ``repoaudit collect --flux``: its tags are pushed to a
real registry, every object is loaded with ``load_jobs`` and collected with ``collect_jobs``, and the
case compares ``flux_status()`` - what ``repoaudit status`` prints - with what the controller writes.
"""

from __future__ import annotations

import pytest
import yaml
from pusher import Pusher, layer_bytes
from registry import RegistryServer

import repoaudit
from repoaudit.errors import ConfigError
from repoaudit.jobs.load import load_jobs

C = "fluxcd/image-reflector-controller internal/controller/imagerepository_controller_test.go"
S = "fluxcd/image-reflector-controller internal/controller/scan_test.go"

# name: (tags pushed, spec.exclusionList or None when unset, Flux's tags after exclusion in the order
# sortTagsAndGetLatestTags gives them: reverse string order). latestTags is the first 10 of them.
SCANS = {
    # TestImageRepositoryReconciler_scan
    "simple-tags": (list("abcd"), None, list("dcba")),
    "checksum-order-1": (list("cdab"), None, list("dcba")),
    "checksum-order-2": (list("cbad"), None, list("dcba")),
    "more-than-maximum": (list("abcdefghijk"), None, list("kjihgfedcba")),
    "single-exclusion": (list("abcd"), ["c"], list("dba")),
    "multiple-exclusion": (list("abcd"), ["c", "a"], list("db")),
    # TestFilterOutTags
    "filter-no-pattern": (list("abcd"), None, list("dcba")),
    "filter-single": (list("abcd"), ["[abc]"], ["d"]),
    "filter-multiple": (list("abcd"), ["[a]", "[d]"], ["c", "b"]),
    "filter-version-tags": (["0.1.0", "0.2.0", "0.2.-alpha", "0.3.0", "0.4.0", "0.4.0.sig"],
                            ["^.*\\-alpha$", "^.*\\.sig$"], ["0.4.0", "0.3.0", "0.2.0", "0.1.0"]),
    "filter-alternation": (["aaa", "bbb", "ccc", "ddd"], ["aaa|ccc"], ["ddd", "bbb"]),
    # scan_test.go TestImageRepositoryReconciler_fetchImageTags
    "fetch": (["0.1.0", "0.1.1", "0.2.0", "1.0.0", "1.1.0", "1.1.0-alpha"], None,
              ["1.1.0-alpha", "1.1.0", "1.0.0", "0.2.0", "0.1.1", "0.1.0"]),
    "fetch-sig-excluded": (["0.1.0", "0.1.1", "0.1.1.sig", "1.0.0-alpha", "1.0.0", "1.0.0.sig"], None,
                           ["1.0.0-alpha", "1.0.0", "0.1.1", "0.1.0"]),
    "fetch-exclusion-list": (["0.1.0", "0.1.1-alpha", "0.1.1", "0.1.1.sig", "1.0.0-alpha", "1.0.0"],
                             ["^.*\\-alpha$"], ["1.0.0", "0.1.1.sig", "0.1.1", "0.1.0"]),
    # filterOutTags compiles each pattern with Go's regexp (RE2): \z is end of text there.
    "re2-end-of-text": (["1.0", "1.0.sig", "1.1"], ["\\.sig\\z"], ["1.1", "1.0"]),
    # TestSortTagsAndGetLatestTags, the cases a registry can hold (see test_sort_cases_a_registry_refuses)
    "sort-few-semver": (["1.0.0", "0.0.8", "1.2.5", "3.0.1", "1.0.1"], None,
                        ["3.0.1", "1.2.5", "1.0.1", "1.0.0", "0.0.8"]),
    "sort-10-semver": (["1.0.0", "0.0.8", "1.2.5", "3.0.1", "1.0.1", "5.1.1", "4.1.0", "4.5.0", "4.0.3", "2.2.2"],
                       None, ["5.1.1", "4.5.0", "4.1.0", "4.0.3", "3.0.1", "2.2.2", "1.2.5", "1.0.1", "1.0.0",
                              "0.0.8"]),
    "sort-10plus-semver": (["1.0.0", "0.0.8", "1.2.5", "3.0.1", "1.0.1", "5.1.1", "4.1.0", "4.5.0", "4.0.3",
                            "2.2.2", "0.5.1", "0.1.0"], None,
                           ["5.1.1", "4.5.0", "4.1.0", "4.0.3", "3.0.1", "2.2.2", "1.2.5", "1.0.1", "1.0.0",
                            "0.5.1", "0.1.0", "0.0.8"]),
    "sort-few-words": (["aaa", "bbb", "ccc"], None, ["ccc", "bbb", "aaa"]),
    "sort-12-words": (["aaa", "bbb", "ccc", "ddd", "eee", "fff", "ggg", "hhh", "iii", "jjj", "kkk", "lll"], None,
                      ["lll", "kkk", "jjj", "iii", "hhh", "ggg", "fff", "eee", "ddd", "ccc", "bbb", "aaa"]),
}


def image_repository(name: str, image: str, exclusion: list[str] | None) -> dict:
    spec = {"image": image, "interval": "5m", "insecure": True}
    if exclusion is not None:
        spec["exclusionList"] = exclusion
    return {"apiVersion": "image.toolkit.fluxcd.io/v1", "kind": "ImageRepository",
            "metadata": {"name": name, "namespace": "flux-system"}, "spec": spec}


@pytest.fixture(scope="module")
def status(tmp_path_factory):
    work = tmp_path_factory.mktemp("flux")
    with RegistryServer(work / "registry") as server, Pusher(server.url) as pusher, \
            repoaudit.open(work / "audit.duckdb") as audit:
        image = pusher.push_image("peers/base", [], layers=[layer_bytes("flux-base", 128)])
        objects = []
        for name, (tags, exclusion, _) in SCANS.items():
            pusher.push_image(f"peers/{name}", tags, layers=[layer_bytes(name, 128)])
            objects.append(image_repository(name, f"{server.host}/peers/{name}", exclusion))
        # "no tags" (TestImageRepositoryReconciler_scan): a repository the registry does not know.
        objects.append(image_repository("no-tags", f"{server.host}/peers/never-pushed", None))
        assert image.digest
        path = work / "imagerepositories.yaml"
        path.write_text(yaml.safe_dump_all(objects))
        audit.collect_jobs(load_jobs([path]), progress=False)
        docs = audit.flux_status()
        host = server.host
    return host, {d["metadata"]["name"]: d for d in docs}


@pytest.mark.parametrize("name", list(SCANS))
def test_scan(status, name):
    """lastScanResult: tagCount is the tags left after exclusion; latestTags the first 10 of them, sorted."""
    _, docs = status
    want = SCANS[name][2]
    doc = docs[name]
    ready = doc["status"]["conditions"][0]
    assert ready["status"] == "True", f"{C} {name}: {ready}"
    assert doc["status"]["lastScanResult"]["tagCount"] == len(want)
    assert doc["status"]["lastScanResult"]["latestTags"] == want[:10], f"{name}"


def test_no_tags_is_read_operation_failed(status):
    """TestImageRepositoryReconciler_scan "no tags": the registry answers 404 and the scan fails; the
    reconciler marks Ready False with ReadOperationFailed (ImageURLInvalid is for an image that does not parse)."""
    _, docs = status
    ready = docs["no-tags"]["status"]["conditions"][0]
    assert (ready["status"], ready["reason"]) == ("False", "ReadOperationFailed")
    assert "lastScanResult" not in docs["no-tags"]["status"]


def test_observed_exclusion_list(status):
    """status.observedExclusionList: the list the scan used; unset and [] both mean the default ^.*\\.sig$."""
    _, docs = status
    assert docs["simple-tags"]["status"]["observedExclusionList"] == ["^.*\\.sig$"]
    assert docs["multiple-exclusion"]["status"]["observedExclusionList"] == ["c", "a"]


def test_canonical_image_name(status, tmp_path):
    """scan_test.go TestImageRepositoryReconciler_canonicalImageName: "alpine" -> index.docker.io/library/alpine;
    fetchImageTags: a registry image keeps its name."""
    host, docs = status
    assert docs["simple-tags"]["status"]["canonicalImageName"] == f"{host}/peers/simple-tags"
    path = tmp_path / "alpine.yaml"
    path.write_text(yaml.safe_dump(image_repository("alpine", "alpine", None)))
    assert load_jobs([path])[0].canonical_image == "index.docker.io/library/alpine"


@pytest.mark.parametrize("image, test", [
    ("https://ghcr.io/org/app", "TestImageRepositoryReconciler_imageAttribute_schemePrefix"),
    ("ghcr.io/org/app:v1", "TestImageRepositoryReconciler_imageAttribute_withTag"),
])
def test_image_url_invalid(tmp_path, image, test):
    """scan_test.go: an image with a scheme or a tag is ImageURLInvalid in Flux. repoaudit refuses the object
    when loading it, with one line naming it (deliberately earlier: nothing is collected for a bad object)."""
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(image_repository("bad", image, None)))
    with pytest.raises(ConfigError, match="spec.image"):
        load_jobs([path])


def test_image_attribute_host_port(status):
    """scan_test.go TestImageRepositoryReconciler_imageAttribute_hostPort: host:port/repo scans (every case
    here is one: the test registry listens on 127.0.0.1:<port>)."""
    host, docs = status
    assert ":" in host and docs["simple-tags"]["status"]["conditions"][0]["reason"] != "ImageURLInvalid"


def test_bad_exclusion_pattern(tmp_path):
    """TestImageRepositoryReconciler_scan "bad exclusion pattern" / TestFilterOutTags "invalid pattern": "[="
    fails to compile (Flux: the scan fails). repoaudit refuses the object when loading it."""
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(image_repository("bad", "ghcr.io/org/app", ["[="])))
    with pytest.raises(ConfigError, match=r"\[="):
        load_jobs([path])


def test_exclusion_regex_is_go_re2(tmp_path):
    """filterOutTags: regexp.Compile fails on a Perl lookahead, so Flux fails the scan; repoaudit refuses it too."""
    path = tmp_path / "lookahead.yaml"
    path.write_text(yaml.safe_dump(image_repository("la", "ghcr.io/org/app", ["^(?!v)"])))
    with pytest.raises(ConfigError, match=r"\(\?!v\)"):
        load_jobs([path])


@pytest.mark.parametrize("case, reason", [
    ("TestSortTagsAndGetLatestTags 'few numerical tags'", "tags such as '-62' cannot exist in a registry (a tag "
     "starts with [A-Za-z0-9_]), and a tag list never holds '15' twice"),
    ("TestImageRepositoryReconciler_scan 'db write fails'", "Flux's tag database; repoaudit writes one snapshot "
     "transaction (tests/test_store.py)"),
    ("TestImageRepositoryReconciler_scan 'simple tags with proxy' / 'incorrect proxy'", "proxies are covered "
     "against a real proxy in tests/test_proxy.py"),
    ("TestImageRepositoryReconciler_scan checksum '139002383'", "lastScanResult.revision is not produced"),
])
def test_not_applicable(case, reason):
    pytest.skip(f"{C} {case}: {reason}")
