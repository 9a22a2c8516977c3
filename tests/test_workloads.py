"""Pod listings → one workload row per container, against the real Kubernetes fixtures.

Counts were read off the fixture files by hand and are written as literals.
"""

from __future__ import annotations

import json
import re

import pytest
import yaml

from repoaudit.errors import IngestError
from repoaudit.ingest.pods import WORKLOAD_KEYS, load_pods, workloads_from_pods

from conftest import FIXTURES as ALL_FIXTURES  # noqa: E402

FIXTURES = ALL_FIXTURES / "kubernetes"
SONOBUOY = FIXTURES / "sonobuoy-ns-sonobuoy-podlist.json"
KUBE_SYSTEM = FIXTURES / "sonobuoy-ns-kube-system-podlist.json"
K9S = FIXTURES / "k9s-pod-docker-pullable.json"

EXPECTED_KEYS = [
    "cluster", "namespace", "pod", "owner_kind", "owner_name", "container", "init", "image_ref",
    "registry", "repository", "image_digest", "config_digest", "resolved_by", "pinned_by_digest", "phase",
]  # fmt: skip

SONOBUOY_DIGEST = "sha256:f950a9ed5e4a943dfb640be1c763919c5016b34c6ce067d9a27c9a50972bf5e4"
SYSTEMD_LOGS_DIGEST = "sha256:0b8b2b7b43b03f7db26e7e4b99be402495b77b496f5a5b0425b3c226bc1e9cbd"
CONFORMANCE_DIGEST = "sha256:be922a1bf1881eda96626df31c65fb4fa1910133ea8b36b0f2da4594fe7235e8"
D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64


def test_sonobuoy_namespace():
    pods = load_pods(SONOBUOY)
    assert len(pods) == 5
    rows = workloads_from_pods(pods, "kind")
    assert all(list(row) == EXPECTED_KEYS for row in rows)
    # 1 aggregator + e2e job (2) + 3 DaemonSet pods (2 each).
    assert len(rows) == 9
    assert all(r["resolved_by"] == "status-repo-digest" for r in rows)
    assert all(r["cluster"] == "kind" and r["namespace"] == "sonobuoy" for r in rows)
    assert not any(r["init"] or r["pinned_by_digest"] or r["config_digest"] for r in rows)

    daemon = [r for r in rows if r["owner_kind"] == "DaemonSet"]
    assert len(daemon) == 6
    assert {r["owner_name"] for r in daemon} == {"sonobuoy-systemd-logs-daemon-set-7a10f4effeb44d32"}
    assert sorted({r["container"] for r in daemon}) == ["sonobuoy-worker", "systemd-logs"]
    systemd = [r for r in daemon if r["container"] == "systemd-logs"]
    assert all(r["image_ref"] == "index.docker.io/sonobuoy/systemd-logs:v0.4" for r in systemd)
    assert all(r["image_digest"] == SYSTEMD_LOGS_DIGEST for r in systemd)

    by_container = {(r["pod"], r["container"]): r for r in rows}
    aggregator = by_container[("sonobuoy", "kube-sonobuoy")]
    assert (aggregator["owner_kind"], aggregator["owner_name"], aggregator["phase"]) == (None, None, "Running")
    assert aggregator["image_ref"] == "index.docker.io/sonobuoy/sonobuoy:v0.56.0"
    assert (aggregator["registry"], aggregator["repository"]) == ("index.docker.io", "sonobuoy/sonobuoy")
    assert aggregator["image_digest"] == SONOBUOY_DIGEST

    e2e = by_container[("sonobuoy-e2e-job-1d0e9c62fc114e08", "e2e")]
    assert (e2e["owner_kind"], e2e["owner_name"], e2e["phase"]) == ("Pod", "sonobuoy", "Succeeded")
    assert (e2e["registry"], e2e["repository"]) == ("k8s.gcr.io", "conformance")
    assert e2e["image_digest"] == CONFORMANCE_DIGEST
    assert sum(r["image_digest"] == SONOBUOY_DIGEST for r in rows) == 5


def test_kube_system_namespace():
    pods = load_pods(KUBE_SYSTEM)
    assert len(pods) == 14
    rows = workloads_from_pods(pods, "kind")
    assert len(rows) == 14  # one container per pod, no init containers

    unresolved = [r for r in rows if r["resolved_by"] == "unresolved"]
    assert sorted(r["pod"] for r in unresolved) == ["coredns-74ff55c5b-ppjrs", "coredns-74ff55c5b-s89p7"]
    for row in unresolved:
        assert (row["image_digest"], row["config_digest"], row["phase"]) == (None, None, "Pending")
        assert row["image_ref"] == "k8s.gcr.io/coredns:1.7.0"
        assert (row["owner_kind"], row["owner_name"]) == ("ReplicaSet", "coredns-74ff55c5b")

    by_image_id = [r for r in rows if r["resolved_by"] == "status-image-id"]
    assert len(by_image_id) == 12
    # A bare sha256 imageID is the config digest, never a manifest digest.
    assert all(r["image_digest"] is None and r["config_digest"].startswith("sha256:") for r in by_image_id)

    by_pod = {r["pod"]: r for r in rows}
    coredns = by_pod["coredns-74ff55c5b-cpfqs"]
    assert coredns["config_digest"] == "sha256:bfe3a36ebd2528b454be6aebece806db5b40407b833e2af9617bf39afaff8c16"
    assert coredns["phase"] == "Pending"  # Pending, yet its container status is there
    kindnet = by_pod["kindnet-hknk7"]
    assert kindnet["image_ref"] == "index.docker.io/kindest/kindnetd:v20200725-4d6bea59"
    assert kindnet["config_digest"] == "sha256:b77790820d01598b2c56f823fa489e3f56be2cb5d6f7dd9eecd68a1995b89c13"
    assert (kindnet["owner_kind"], kindnet["owner_name"]) == ("DaemonSet", "kindnet")
    etcd = by_pod["etcd-kind-control-plane"]
    assert (etcd["owner_kind"], etcd["owner_name"]) == ("Node", "kind-control-plane")
    assert sum(r["owner_kind"] == "DaemonSet" for r in rows) == 6


def test_k9s_docker_pullable_single_pod():
    pods = load_pods(K9S)
    assert len(pods) == 1
    (row,) = workloads_from_pods(pods, "gke")
    assert row == {
        "cluster": "gke",
        "namespace": "default",
        "pod": "nginx-7fb78fb6d8-2w75j",
        "owner_kind": "ReplicaSet",
        "owner_name": "nginx-7fb78fb6d8",
        "container": "nginx",
        "init": False,
        "image_ref": "k8s.gcr.io/nginx-slim:0.8",
        "registry": "k8s.gcr.io",
        "repository": "nginx-slim",
        "image_digest": "sha256:8b4501fe0fe221df663c22e16539f399e89594552f400408303c42f3dd8d0e52",
        "config_digest": None,
        "resolved_by": "status-repo-digest",
        "pinned_by_digest": False,
        "phase": "Running",
    }


def _pod(name="web-0", **spec_extra) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "apps",
            "ownerReferences": [
                {"kind": "Thing", "name": "not-controller"},
                {"kind": "StatefulSet", "name": "web", "controller": True},
            ],
        },
        "spec": {
            "initContainers": [{"name": "migrate", "image": f"ghcr.io/org/migrate@{D1}"}],
            "containers": [
                {"name": "app", "image": "org/app:2"},
                {"name": "sidecar", "image": "Bad Image"},
            ],
            **spec_extra,
        },
        "status": {
            "phase": "Running",
            "initContainerStatuses": [{"name": "migrate", "imageID": f"ghcr.io/org/migrate@{D2}"}],
            "containerStatuses": [
                {"name": "sidecar", "imageID": "docker://sha256:" + "3" * 64},
                {"name": "app", "imageID": "not a digest"},
            ],
        },
    }


def test_init_containers_spec_digest_and_odd_values():
    rows = workloads_from_pods([_pod()], "prod")
    assert [(r["container"], r["init"]) for r in rows] == [("migrate", True), ("app", False), ("sidecar", False)]
    migrate, app, sidecar = rows
    assert (migrate["owner_kind"], migrate["owner_name"]) == ("StatefulSet", "web")
    # The spec pin wins over whatever the runtime reported.
    assert (migrate["resolved_by"], migrate["image_digest"], migrate["pinned_by_digest"]) == ("spec-digest", D1, True)
    assert migrate["image_ref"] == f"ghcr.io/org/migrate@{D1}"
    # An unreadable imageID leaves the row unresolved rather than failing the listing.
    assert (app["resolved_by"], app["repository"]) == ("unresolved", "org/app")
    assert app["image_ref"] == "index.docker.io/org/app:2"
    # An invalid spec image is kept as written; the status still identifies the content.
    assert (sidecar["image_ref"], sidecar["registry"], sidecar["repository"]) == ("Bad Image", None, None)
    assert (sidecar["resolved_by"], sidecar["config_digest"]) == ("status-image-id", "sha256:" + "3" * 64)


def test_statuses_matched_by_name_not_position():
    pod = _pod()
    pod["spec"]["containers"][1]["image"] = "nginx"
    pod["status"]["containerStatuses"] = [
        {"name": "sidecar", "imageID": f"docker.io/library/nginx@{D2}"},
        {"name": "app", "imageID": ""},
    ]
    _, app, sidecar = workloads_from_pods([pod], "c")
    assert app["resolved_by"] == "unresolved"
    assert (sidecar["resolved_by"], sidecar["image_digest"]) == ("status-repo-digest", D2)
    assert sidecar["image_ref"] == "index.docker.io/library/nginx"


def test_yaml_list_and_multi_document(tmp_path):
    listing = tmp_path / "pods.yaml"
    listing.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": [_pod("a"), _pod("b")]}))
    assert [p["metadata"]["name"] for p in load_pods(listing)] == ["a", "b"]

    multi = tmp_path / "multi.yml"
    multi.write_text("---\n" + yaml.safe_dump(_pod("c")) + "---\n# nothing\n---\n" + yaml.safe_dump(_pod("d")))
    assert [p["metadata"]["name"] for p in load_pods(multi)] == ["c", "d"]

    # API-server PodList items carry no kind of their own.
    bare = _pod("e")
    del bare["kind"]
    api = tmp_path / "api.json"
    api.write_text(json.dumps({"kind": "PodList", "items": [bare]}))
    assert len(load_pods(api)) == 1


def test_empty_file(tmp_path):
    for name, content in (("empty.json", ""), ("empty.yaml", "\n\n"), ("comments.yaml", "# nothing\n---\n")):
        path = tmp_path / name
        path.write_text(content)
        with pytest.raises(IngestError) as info:
            load_pods(path)
        assert str(info.value).startswith(f"{path}: empty file")


def test_truncated_json(tmp_path):
    text = SONOBUOY.read_text()
    path = tmp_path / "cut.json"
    path.write_text(text[: len(text) // 3])
    with pytest.raises(IngestError) as info:
        load_pods(path)
    assert re.match(rf"{re.escape(str(path))}:\d+:\d+: truncated JSON", str(info.value))
    assert "\n" not in str(info.value)


def test_malformed_yaml(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("kind: Pod\nmetadata: [unclosed\n")
    with pytest.raises(IngestError) as info:
        load_pods(path)
    message = str(info.value)
    assert re.match(rf"{re.escape(str(path))}:\d+:\d+: invalid YAML: ", message)
    assert "\n" not in message


@pytest.mark.parametrize(
    ("document", "fragment"),
    [
        ({"kind": "Deployment"}, "kind is 'Deployment', expected Pod, PodList or List of Pods"),
        ({"kind": "List", "items": [{"kind": "Service"}]}, "List.items[0] is kind 'Service', expected only Pods"),
        ({"kind": "PodList", "items": "nope"}, "PodList.items is str"),
        (["not", "an", "object"], "is a list, expected a Pod"),
    ],
)
def test_wrong_kind(tmp_path, document, fragment):
    path = tmp_path / "thing.json"
    path.write_text(json.dumps(document))
    with pytest.raises(IngestError) as info:
        load_pods(path)
    assert str(info.value).startswith(f"{path}: ")
    assert fragment in str(info.value)


def test_wrong_kind_in_second_yaml_document(tmp_path):
    path = tmp_path / "mixed.yaml"
    path.write_text(yaml.safe_dump(_pod()) + "---\nkind: ConfigMap\n")
    with pytest.raises(IngestError, match="document 2: kind is 'ConfigMap'"):
        load_pods(path)


def test_non_object_pod_item_is_rejected():
    with pytest.raises(IngestError, match="pod 1 is a str, expected a Pod object"):
        workloads_from_pods([_pod(), "oops"], "c")


def test_keys_constant_matches_contract():
    assert list(WORKLOAD_KEYS) == EXPECTED_KEYS
