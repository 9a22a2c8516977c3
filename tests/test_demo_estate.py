"""The demo estate: thresholds, determinism, layout validity, evolution, skopeo."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import shutil
import subprocess
from collections import defaultdict
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path

import pytest

from repoaudit.demo.estate import EPOCHS, EstateSummary, REGISTRY, epoch_times, generate_estate

AS_OF = date(2026, 11, 27)
REF_NAME = "org.opencontainers.image.ref.name"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
COSIGN_PAYLOAD = "application/vnd.dev.cosign.simplesigning.v1+json"
LAYER_TYPES = {
    OCI_MANIFEST: "application/vnd.oci.image.layer.v1.tar+gzip",
    DOCKER_MANIFEST: "application/vnd.docker.image.rootfs.diff.tar.gzip",
}
CONFIG_TYPES = {OCI_MANIFEST: OCI_CONFIG, DOCKER_MANIFEST: DOCKER_CONFIG}
INDEX_TYPES = {OCI_INDEX, DOCKER_LIST}
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
MB = 1024 * 1024


# --------------------------------------------------------------------------
# Reading layouts back, independently of the generator's internals
# --------------------------------------------------------------------------


def layouts(root: Path) -> dict[str, Path]:
    return {str(p.parent.relative_to(root)): p.parent for p in sorted(root.glob("*/*/oci-layout"))}


def tags_of(layout: Path) -> dict[str, dict]:
    index = json.loads((layout / "index.json").read_text())
    return {d["annotations"][REF_NAME]: d for d in index["manifests"]}


def blob(layout: Path, digest: str) -> bytes:
    return (layout / "blobs" / "sha256" / digest.split(":", 1)[1]).read_bytes()


def has_blob(layout: Path, digest: str) -> bool:
    return (layout / "blobs" / "sha256" / digest.split(":", 1)[1]).exists()


def doc(layout: Path, digest: str) -> dict:
    return json.loads(blob(layout, digest))


def tree_hash(root: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def images_of(layout: Path, descriptor: dict) -> list[tuple[dict, dict | None]]:
    """(image manifest, platform) pairs behind a tag descriptor."""
    manifest = doc(layout, descriptor["digest"])
    if descriptor["mediaType"] in INDEX_TYPES:
        return [(doc(layout, child["digest"]), child["platform"]) for child in manifest["manifests"]]
    return [(manifest, None)]


def is_signature(tag: str) -> bool:
    return re.fullmatch(r"sha256-[0-9a-f]{64}\.sig", tag) is not None


def created_of(layout: Path, digest: str) -> datetime:
    manifest = doc(layout, digest)
    if manifest["mediaType"] in INDEX_TYPES:
        manifest = doc(layout, manifest["manifests"][0]["digest"])
    config = doc(layout, manifest["config"]["digest"])
    return datetime.fromisoformat(config["created"].replace("Z", "+00:00"))


def tag_map(root: Path) -> dict[str, dict[str, str]]:
    return {repo: {t: d["digest"] for t, d in tags_of(path).items()} for repo, path in layouts(root).items()}


# --------------------------------------------------------------------------
# Fixtures: one fresh epoch-2 estate, and one brought forward epoch by epoch
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def estate(tmp_path_factory) -> tuple[Path, EstateSummary]:
    root = tmp_path_factory.mktemp("fresh")
    return root, generate_estate(root, as_of=AS_OF)


@pytest.fixture(scope="module")
def history(tmp_path_factory) -> tuple[Path, list[EstateSummary], list[dict[str, dict[str, str]]]]:
    root = tmp_path_factory.mktemp("incremental")
    summaries, states = [], []
    for epoch in range(EPOCHS):
        summaries.append(generate_estate(root, epoch=epoch, as_of=AS_OF))
        states.append(tag_map(root))
    return root, summaries, states


# --------------------------------------------------------------------------
# Size and shape of the estate
# --------------------------------------------------------------------------


def test_counts_meet_thresholds(estate):
    root, summary = estate
    found = layouts(root)
    assert summary.repositories == len(found) >= 60
    assert {repo.split("/")[0] for repo in found} == {"payments", "platform", "data", "web", "ml"}
    all_tags = [t for path in found.values() for t in tags_of(path)]
    assert summary.tags == len(all_tags)
    assert sum(not is_signature(t) for t in all_tags) >= 1500
    per_repo = [len(tags_of(path)) for path in found.values()]
    assert sum(n >= 50 for n in per_repo) >= 5
    assert sum(n <= 3 for n in per_repo) >= 3
    assert summary.signatures > 50 and summary.indexes > 50 and summary.manifests > 1000


def test_summary_matches_layouts(estate):
    root, summary = estate
    manifests = indexes = signatures = 0
    for path in layouts(root).values():
        reachable = {d["digest"]: d for d in tags_of(path).values()}
        images, sigs = set(), set()
        for digest, descriptor in reachable.items():
            if descriptor["mediaType"] in INDEX_TYPES:
                indexes += 1
                images.update(c["digest"] for c in doc(path, digest)["manifests"])
            elif doc(path, digest)["layers"][0]["mediaType"] == COSIGN_PAYLOAD:
                sigs.add(digest)
            else:
                images.add(digest)
        manifests += len(images)
        signatures += len(sigs)
    assert (summary.manifests, summary.indexes, summary.signatures) == (manifests, indexes, signatures)
    assert summary.epoch == EPOCHS - 1 and summary.as_of == AS_OF
    assert summary.snapshot_time == datetime.combine(AS_OF, time(6), tzinfo=timezone.utc)


def test_media_type_mix(estate):
    root, _ = estate
    kinds: dict[str, set[str]] = defaultdict(set)
    variants = set()
    for repo, path in layouts(root).items():
        for descriptor in tags_of(path).values():
            kinds[descriptor["mediaType"]].add(repo)
            if descriptor["mediaType"] in INDEX_TYPES:
                for child in doc(path, descriptor["digest"])["manifests"]:
                    variants.add((child["platform"]["architecture"], child["platform"].get("variant")))
    assert len(kinds[OCI_INDEX]) >= 10
    assert len(kinds[DOCKER_LIST]) >= 1
    assert len(kinds[DOCKER_MANIFEST]) >= 3
    assert len(kinds[OCI_MANIFEST]) >= 30
    assert {("amd64", None), ("arm64", None), ("arm", "v7")} <= variants


def test_tag_styles(estate):
    root, _ = estate
    tags = {t for path in layouts(root).values() for t in tags_of(path)}
    styles = {
        "semver": r"\d+\.\d+\.\d+", "v-semver": r"v\d+\.\d+\.\d+", "date": r"20\d\d\.\d\d\.\d\d",
        "sha7": r"git-[0-9a-f]{7}", "sha40": r"[0-9a-f]{40}", "ci": r"main-\d+",
        "rc": r"v?\d+\.\d+\.0-rc\.\d+", "float": r"\d+\.\d+", "signature": r"sha256-[0-9a-f]{64}\.sig",
    }
    for style, pattern in styles.items():
        assert any(re.fullmatch(pattern, t) for t in tags), style
    assert {"latest", "stable", "prod"} <= tags


# --------------------------------------------------------------------------
# Determinism
# --------------------------------------------------------------------------


def test_deterministic(estate, history):
    # Two generations in two directories, one of them written epoch by epoch
    # over itself: byte-identical trees (and equal summaries).
    fresh_root, fresh = estate
    incremental_root, summaries, _ = history
    assert tree_hash(incremental_root) == tree_hash(fresh_root)
    assert summaries[-1] == dataclasses.replace(fresh, root=incremental_root)


# The estate at AS_OF with the default seed, byte for byte. The tables are data files
# (repoaudit/demo/data/); editing one, or the code that reads them, changes this on purpose only.
ESTATE_FINGERPRINT = "b003609d88b8aacb0df16425e87605da1e6aed75a059d280cab44b3e8b542017"


def test_output_is_pinned(estate):
    fresh_root, _ = estate
    assert tree_hash(fresh_root) == ESTATE_FINGERPRINT, "the demo estate changed: update ESTATE_FINGERPRINT if meant"


def test_tables_are_package_data(monkeypatch):
    """Every data file is in the package and read by name; a bad row fails at load, naming the file."""
    from importlib import resources

    from repoaudit.demo import tables

    data = resources.files("repoaudit.demo").joinpath("data")
    names = sorted(p.name for p in data.iterdir())
    assert names == ["advisories.csv", "deployments.txt", "estate.json", "repositories.txt", "scans.json"]
    code = "".join((Path(tables.__file__).parent / m).read_text() for m in ("tables.py", "advisories.py", "pods.py"))
    assert all(f'"{name}"' in code for name in names)
    assert len(tables.REPO_SPECS) == 64 and tables.NAMESPACES == ("payments", "platform", "data", "web", "ml")
    monkeypatch.setattr(tables, "data_text", lambda name: "team/app  no-such-base  oci  semver  3  active\n")
    with pytest.raises(ValueError, match="bad row in repositories.txt"):
        tables._parse_repos()


def test_seed_changes_content(estate, tmp_path):
    generate_estate(tmp_path, epoch=0, as_of=AS_OF, seed=1)
    other = set(tag_map(tmp_path)["web/nginx"].values())
    assert other and not other & set(tag_map(estate[0])["web/nginx"].values())


def test_default_as_of_is_today_utc(tmp_path):
    before = datetime.now(timezone.utc).date()
    summary = generate_estate(tmp_path, epoch=0)
    assert before <= summary.as_of <= datetime.now(timezone.utc).date()


def test_epoch_times():
    times = epoch_times(AS_OF)
    assert len(times) == EPOCHS
    assert times[-1] == datetime(2026, 11, 27, 6, tzinfo=timezone.utc)
    assert all(b - a == timedelta(days=7) for a, b in zip(times, times[1:]))


def test_rejects_unknown_epoch(tmp_path):
    with pytest.raises(ValueError):
        generate_estate(tmp_path, epoch=EPOCHS, as_of=AS_OF)


# --------------------------------------------------------------------------
# Layout validity
# --------------------------------------------------------------------------


def test_blobs_are_content_addressed(estate):
    root, _ = estate
    files = [p for p in root.rglob("*") if p.is_file()]
    blobs = [p for p in files if p.parent.name == "sha256"]
    assert len(blobs) > 3000
    assert all(p.name in ("oci-layout", "index.json") for p in files if p.parent.name != "sha256")
    for path in blobs:
        assert hashlib.sha256(path.read_bytes()).hexdigest() == path.name, path


def test_index_json_structure(estate):
    root, _ = estate
    for repo, path in layouts(root).items():
        assert json.loads((path / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
        index = json.loads((path / "index.json").read_text())
        assert index["schemaVersion"] == 2 and index["mediaType"] == OCI_INDEX, repo
        names = [d["annotations"][REF_NAME] for d in index["manifests"]]
        assert len(names) == len(set(names)) > 0, repo
        for d in index["manifests"]:
            assert DIGEST.match(d["digest"]), (repo, d)
            assert d["mediaType"] in {OCI_MANIFEST, DOCKER_MANIFEST} | INDEX_TYPES, (repo, d)
            assert len(blob(path, d["digest"])) == d["size"], (repo, d)
            assert doc(path, d["digest"])["mediaType"] == d["mediaType"], (repo, d)


def test_images_reference_configs_but_no_layer_blobs(estate):
    root, _ = estate
    labels = {"org.opencontainers.image.source", "org.opencontainers.image.version", "team"}
    layer_sizes, base_sizes = [], []
    for repo, path in layouts(root).items():
        for tag, descriptor in tags_of(path).items():
            if is_signature(tag):
                continue
            for manifest, platform in images_of(path, descriptor):
                kind = manifest["mediaType"]
                assert manifest["schemaVersion"] == 2 and kind in CONFIG_TYPES, (repo, tag)
                assert manifest["config"]["mediaType"] == CONFIG_TYPES[kind]
                config_bytes = blob(path, manifest["config"]["digest"])
                assert len(config_bytes) == manifest["config"]["size"]
                config = json.loads(config_bytes)
                assert datetime.fromisoformat(config["created"].replace("Z", "+00:00"))
                assert config["os"] == "linux" and config["architecture"] in {"amd64", "arm64", "arm"}
                if platform:
                    assert platform["architecture"] == config["architecture"]
                    assert platform.get("variant") == config.get("variant")
                assert labels <= set(config["config"]["Labels"]), (repo, tag)
                # A mirror re-pushes another team's bytes, labels included.
                team = "web" if repo == "platform/mirror-nginx" else repo.split("/")[0]
                assert config["config"]["Labels"]["team"] == team, (repo, tag)
                layers = manifest["layers"]
                assert len(config["rootfs"]["diff_ids"]) == len(layers) >= 2
                assert sum(not h.get("empty_layer") for h in config["history"]) == len(layers)
                for layer in layers:
                    assert layer["mediaType"] == LAYER_TYPES[kind]
                    assert DIGEST.match(layer["digest"]) and not has_blob(path, layer["digest"])
                    layer_sizes.append(layer["size"])
                base_sizes.append(layers[0]["size"])  # every image starts with a base layer
    assert 1 * MB <= min(layer_sizes) and max(layer_sizes) <= 201 * MB
    assert 3 * MB <= min(base_sizes) and max(base_sizes) <= 81 * MB
    assert sum(layer_sizes) / len(layer_sizes) > 10 * MB


def test_signatures_are_cosign_shaped(estate):
    root, _ = estate
    seen = 0
    for repo, path in layouts(root).items():
        for tag, descriptor in tags_of(path).items():
            if not is_signature(tag):
                continue
            seen += 1
            manifest = doc(path, descriptor["digest"])
            assert manifest["mediaType"] == OCI_MANIFEST and manifest["config"]["mediaType"] == OCI_CONFIG
            assert has_blob(path, manifest["config"]["digest"])
            (layer,) = manifest["layers"]
            assert layer["mediaType"] == COSIGN_PAYLOAD and layer["annotations"]["dev.cosignproject.cosign/signature"]
            payload = json.loads(blob(path, layer["digest"]))
            signed = payload["critical"]["image"]["docker-manifest-digest"]
            assert tag == f"sha256-{signed[7:]}.sig"
            assert payload["critical"]["identity"]["docker-reference"] == f"{REGISTRY}/{repo}"
            assert has_blob(path, signed)  # the signed manifest is in the same repository
    assert seen > 50


# --------------------------------------------------------------------------
# What the audit questions need to find
# --------------------------------------------------------------------------


def test_base_layers_shared_and_bumped(estate):
    root, _ = estate
    repos_per_layer: dict[str, set[str]] = defaultdict(set)
    bases_per_repo: dict[str, set[str]] = defaultdict(set)
    for repo, path in layouts(root).items():
        for tag, descriptor in tags_of(path).items():
            if is_signature(tag):
                continue
            for manifest, _ in images_of(path, descriptor):
                for layer in manifest["layers"]:
                    repos_per_layer[layer["digest"]].add(repo)
                if manifest.get("annotations"):
                    bases_per_repo[repo].add(manifest["annotations"]["org.opencontainers.image.base.name"])
    assert max(len(r) for r in repos_per_layer.values()) >= 15
    assert sum(len(bases) >= 3 for bases in bases_per_repo.values()) >= 5  # old images keep old bases


def test_same_manifest_in_two_repositories(estate):
    root, _ = estate
    tags = tag_map(root)
    assert set(tags["platform/mirror-nginx"].values()) <= set(tags["web/nginx"].values())
    assert tags["payments/gateway-prod"]["prod"] in set(tags["payments/gateway"].values())
    assert tags["ml/model-server-prod"]["prod"] in set(tags["ml/model-server"].values())


def test_ages(estate):
    root, _ = estate
    newest: dict[str, datetime] = {}
    oldest = datetime.max.replace(tzinfo=timezone.utc)
    for repo, path in layouts(root).items():
        for tag, descriptor in tags_of(path).items():
            if not is_signature(tag):
                created = created_of(path, descriptor["digest"])
                newest[repo] = max(newest.get(repo, created), created)
                oldest = min(oldest, created)
    snapshot = datetime.combine(AS_OF, time(6), tzinfo=timezone.utc)
    assert snapshot - max(newest.values()) < timedelta(days=2)
    assert timedelta(days=600) < snapshot - oldest <= timedelta(days=731)
    assert sum(snapshot - n > timedelta(days=400) for n in newest.values()) >= 10


# --------------------------------------------------------------------------
# Evolution across epochs
# --------------------------------------------------------------------------


def test_epochs_are_nested(history):
    _, summaries, states = history
    for earlier, later in zip(states, states[1:]):
        assert set(earlier) <= set(later)
    assert [s.epoch for s in summaries] == list(range(EPOCHS))
    assert [s.snapshot_time for s in summaries] == epoch_times(AS_OF)
    assert summaries[0].tags < summaries[-1].tags


def test_epoch_evolution(history, estate):
    _, _, states = history
    before, after = states[-2], states[-1]
    assert len(set(after) - set(before)) >= 2  # new repositories
    common = set(before) & set(after)
    moved = {(r, t) for r in common for t in before[r] if t in after[r] and before[r][t] != after[r][t]}
    gone = {(r, t) for r in common for t in before[r] if t not in after[r]}
    added = {(r, t) for r in common for t in after[r] if t not in before[r]}
    assert len(moved) >= 10 and len(gone) >= 10 and len(added) >= 30
    assert any(t == "latest" for _, t in moved) and any(t == "stable" for _, t in moved)
    # Deleted tags leave their manifests behind, untagged.
    root = estate[0]
    for repo, tag in gone:
        assert has_blob(root / repo, before[repo][tag])


def test_one_tag_rolled_back_to_older_image(history, estate):
    _, _, states = history
    root = estate[0]
    before, after = states[-2], states[-1]
    rolled_back = {
        (repo, tag)
        for repo in set(before) & set(after) for tag, digest in after[repo].items()
        if tag in before[repo] and before[repo][tag] != digest
        and created_of(root / repo, digest) < created_of(root / repo, before[repo][tag])
    }
    assert rolled_back == {("payments/ledger", "stable")}


# --------------------------------------------------------------------------
# An independent reader: skopeo
# --------------------------------------------------------------------------

skopeo = pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo not installed")


def skopeo_inspect(layout: Path, tag: str, *args: str) -> bytes:
    return subprocess.run(["skopeo", "inspect", *args, f"oci:{layout}:{tag}"],
                          check=True, capture_output=True, timeout=60).stdout


@skopeo
def test_skopeo_reads_raw_manifests(estate):
    root, _ = estate
    samples = [("payments/ledger", "latest", OCI_MANIFEST),
               ("platform/ingress-controller", "latest", OCI_INDEX)]
    api_tags = tags_of(root / "payments/api")
    samples.append(("payments/api", min(t for t in api_tags if is_signature(t)), OCI_MANIFEST))
    for repo, tag, media_type in samples:
        descriptor = tags_of(root / repo)[tag]
        assert descriptor["mediaType"] == media_type
        assert skopeo_inspect(root / repo, tag, "--raw") == blob(root / repo, descriptor["digest"])


@skopeo
def test_skopeo_reads_image_config(estate):
    root, _ = estate
    layout = root / "payments/ledger"
    manifest = doc(layout, tags_of(layout)["latest"]["digest"])
    config = doc(layout, manifest["config"]["digest"])
    info = json.loads(skopeo_inspect(layout, "latest"))
    assert info["Digest"] == tags_of(layout)["latest"]["digest"]
    assert info["Architecture"] == "amd64" and info["Os"] == "linux"
    assert info["Labels"] == config["config"]["Labels"]
    assert info["Layers"] == [layer["digest"] for layer in manifest["layers"]]
    assert datetime.fromisoformat(info["Created"].replace("Z", "+00:00")) == created_of(layout, info["Digest"])
