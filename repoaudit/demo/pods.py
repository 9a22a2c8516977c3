"""The demo cluster: a ``kubectl get pods -A -o json`` listing that deploys part of the estate.

The workloads are ``data/deployments.txt`` (its header explains the columns and
picks): demo images deployed by tag (some of which have moved since the pods
started), by digest, by image ID only (a node runtime that reports a bare
``sha256:``), a Pending pod, finished Job pods, init containers, and workloads
pulling straight from Docker Hub, Quay and registry.k8s.io.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from repoaudit.demo.collected import FLOATING, Estate
from repoaudit.demo.derive import hexdigest, rfc3339, rng, uuid
from repoaudit.demo.tables import table_rows

CLUSTER_NODES = ("node-a", "node-b", "node-c", "node-d")
_K8S_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job")


def _deployments(name: str = "deployments.txt") -> tuple[list[str], ...]:
    rows = []
    for line, fields in table_rows(name):
        if len(fields) < 6 or fields[1] not in _KINDS or not fields[5].isdigit():
            raise ValueError(f"bad row in {name}: {line!r}")
        rows.append(fields)
    return tuple(rows)


DEPLOYMENTS = _deployments()


def _k8s_suffix(length: int, *key: object) -> str:
    draw = rng("k8s", *key)
    return "".join(draw.choice(_K8S_ALPHABET) for _ in range(length))


@dataclass
class Pick:
    repository: str
    spec_image: str          # as written in the pod spec
    digest: str              # what the pods run
    tag: str | None


def _versions(estate: Estate, repository: str) -> list[dict]:
    rows = [r for r in estate.tags if r["repository"] == repository and r["artifact_type"] is None
            and r["tag"] not in FLOATING and not r["tag"].endswith(".sig")]
    return sorted(rows, key=lambda r: (r["created"], r["tag"]), reverse=True)


def _pick(estate: Estate, repository: str, how: str) -> Pick | None:
    mode, _, arg = how.partition("=")
    current = {r["tag"]: r["digest"] for r in estate.tags if r["repository"] == repository}
    if not current:
        return None
    host = f"{estate.registry}/{repository}"
    if mode == "tag":
        tag = arg if arg in current else ("latest" if "latest" in current else None)
        if tag is None:
            return _pick(estate, repository, "release=0")
        digest = estate.first_tags.get((repository, tag), current[tag])
        return Pick(repository, f"{host}:{tag}", digest, tag)
    if mode == "digest-of":
        if arg not in current:
            return _pick(estate, repository, "digest=0")
        return Pick(repository, f"{host}@{current[arg]}", current[arg], None)
    versions = _versions(estate, repository)
    if not versions:
        return _pick(estate, repository, "tag=latest") if "latest" in current else None
    row = versions[min(int(arg or 0), len(versions) - 1)]
    if mode == "release":
        return Pick(repository, f"{host}:{row['tag']}", row["digest"], row["tag"])
    if mode == "digest":
        return Pick(repository, f"{host}@{row['digest']}", row["digest"], None)
    if mode == "digest-tag":
        return Pick(repository, f"{host}:{row['tag']}@{row['digest']}", row["digest"], row["tag"])
    raise ValueError(f"demo_scans: unknown pick {how!r}")


def public_digest(image: str) -> str:
    return "sha256:" + hexdigest("public", image.split("@")[0])


def public_image_id(image: str) -> str:
    return "sha256:" + hexdigest("public-config", image.split("@")[0])


def status_repo(image: str) -> str:
    """containerd's imageID spelling: docker.io/library/redis for a bare redis."""
    name = image.split("@")[0]
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name = name[: len(name) - len(last)] + last.split(":")[0]
    first = name.split("/", 1)[0]
    if "." not in first and ":" not in first:
        name = f"docker.io/{name}" if "/" in name else f"docker.io/library/{name}"
    return name


def _pod(*, namespace: str, kind: str, owner: str, name: str, pod_name: str, containers: list[dict],
         init: list[dict], node: str | None, phase: str, started: datetime | None, uid_key: str) -> dict:
    owner_kind = "ReplicaSet" if kind == "Deployment" else kind
    owner_name = f"{owner}-{_k8s_suffix(10, namespace, owner)}" if kind == "Deployment" else owner
    metadata: dict[str, Any] = {
        "creationTimestamp": rfc3339(started) if started else None,
        "labels": {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": namespace},
        "name": pod_name,
        "namespace": namespace,
        "ownerReferences": [{"apiVersion": "batch/v1" if kind == "Job" else "apps/v1", "blockOwnerDeletion": True,
                             "controller": True, "kind": owner_kind, "name": owner_name,
                             "uid": uuid("owner", namespace, owner)}],
        "resourceVersion": str(int(hexdigest("rv", uid_key)[:6], 16)),
        "uid": uuid("pod", uid_key),
    }
    spec: dict[str, Any] = {
        "containers": [{"image": c["image"], "imagePullPolicy": "IfNotPresent", "name": c["name"],
                        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}}} for c in containers],
        "restartPolicy": "Never" if kind == "Job" else "Always",
        "serviceAccountName": name,
    }
    if init:
        spec["initContainers"] = [{"image": c["image"], "imagePullPolicy": "IfNotPresent", "name": c["name"]}
                                  for c in init]
    if node:
        spec["nodeName"] = node
    status: dict[str, Any] = {"phase": phase, "qosClass": "Burstable"}
    if phase == "Pending":
        status["conditions"] = [{"lastTransitionTime": rfc3339(started) if started else None,
                                 "message": "0/4 nodes are available: 4 Insufficient cpu.",
                                 "reason": "Unschedulable", "status": "False", "type": "PodScheduled"}]
        return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec, "status": status}
    status["hostIP"] = f"10.0.0.{2 + CLUSTER_NODES.index(node)}" if node in CLUSTER_NODES else "10.0.0.2"
    status["podIP"] = f"10.244.{int(hexdigest('ip', uid_key)[:2], 16) % 4}.{int(hexdigest('ip', uid_key)[2:4], 16)}"
    status["startTime"] = rfc3339(started)

    def container_status(c: dict, terminated: bool) -> dict:
        state = ({"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": rfc3339(started),
                                 "finishedAt": rfc3339(started + timedelta(minutes=7))}}
                 if terminated else {"running": {"startedAt": rfc3339(started + timedelta(seconds=20))}})
        return {"containerID": "containerd://" + hexdigest("cid", uid_key, c["name"]), "image": c["status_image"],
                "imageID": c["image_id"], "lastState": {}, "name": c["name"], "ready": not terminated,
                "restartCount": 0, "started": not terminated, "state": state}

    if init:
        status["initContainerStatuses"] = [container_status(c, True) for c in init]
    status["containerStatuses"] = [container_status(c, phase == "Succeeded") for c in containers]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec, "status": status}


def _container(estate: Estate, name: str, image: str, how: str, *, image_id_only: bool = False
               ) -> tuple[dict, Pick | None] | None:
    """A container for ``image`` (a demo repository or a public image) and what it runs."""
    first = image.split("/", 1)[0]
    if "." in first or ":" in first or "/" not in image:
        # A public image: digests are made up, as the demo holds nothing from those registries.
        digest = public_digest(image)
        spec_image = image.replace("@PIN", f"@{digest}")
        status_image = spec_image.split("@")[0]
        return ({"name": name, "image": spec_image, "status_image": status_image,
                 "image_id": f"{status_repo(image)}@{digest}"}, None)
    pick = _pick(estate, image, how)
    if pick is None:
        return None
    if image_id_only:
        platform = estate.platform_image(pick.digest)
        image_id = platform.config_digest if platform else pick.digest
    else:
        image_id = f"{estate.registry}/{pick.repository}@{pick.digest}"
    return ({"name": name, "image": pick.spec_image, "status_image": pick.spec_image, "image_id": image_id}, pick)


def cluster_pods(estate: Estate) -> tuple[list[dict], list[Pick]]:
    """The cluster's pods, sorted by namespace and name, and the demo images they run."""
    pods: list[dict] = []
    picks: list[Pick] = []
    for namespace, kind, name, image, how, replicas, *flags in DEPLOYMENTS:
        options = dict(f.partition("=")[::2] for f in flags)
        made = _container(estate, name, image, how, image_id_only="image-id" in options)
        if made is None:
            continue
        container, pick = made
        if pick:
            picks.append(pick)
        init = []
        if "init" in options:
            repo, _, init_how = options["init"].partition(":")
            made_init = _container(estate, f"{repo.rsplit('/', 1)[-1]}-init", repo, init_how)
            if made_init:
                init = [made_init[0]]
                if made_init[1]:
                    picks.append(made_init[1])
        draw = rng("deploy", namespace, name)
        # Pods started when their tag was resolved: two weeks ago for tag=…, hours ago otherwise.
        days_ago = 14 if how.startswith("tag=") else draw.uniform(0.2, 6)
        started = estate.now - timedelta(days=days_ago, minutes=draw.randrange(600))
        phase = "Succeeded" if "succeeded" in options else "Running"
        count = int(replicas)
        nodes = list(CLUSTER_NODES) if kind == "DaemonSet" else [draw.choice(CLUSTER_NODES) for _ in range(count)]
        for i in range(count + int(options.get("pending", 0))):
            pending = i >= count
            if kind == "StatefulSet":
                pod_name = f"{name}-{i}"
            elif kind == "Job":
                pod_name = f"{name}-{int(estate.now.timestamp()) // 60 - i}-{_k8s_suffix(5, namespace, name, i)}"
            elif kind == "DaemonSet":
                pod_name = f"{name}-{_k8s_suffix(5, namespace, name, i)}"
            else:
                pod_name = f"{name}-{_k8s_suffix(10, namespace, name)}-{_k8s_suffix(5, namespace, name, i)}"
            pods.append(_pod(namespace=namespace, kind=kind, owner=name, name=name, pod_name=pod_name,
                             containers=[container], init=init, node=None if pending else nodes[i % len(nodes)],
                             phase="Pending" if pending else phase,
                             started=estate.now - timedelta(minutes=3) if pending else started,
                             uid_key=f"{namespace}/{pod_name}"))
    pods.sort(key=lambda p: (p["metadata"]["namespace"], p["metadata"]["name"]))
    return pods, picks
