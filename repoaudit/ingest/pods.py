"""Running workloads from Kubernetes pod listings (``kubectl get pods -o json|yaml``).

Each container and init container becomes one row saying which image it runs and
how sure we are of the exact content:

* ``spec-digest``: the pod spec pins ``image@sha256:…``;
* ``status-repo-digest``: the runtime reported ``repo@sha256:…`` (containerd, CRI-O)
  or ``docker-pullable://repo@sha256:…`` (dockershim), a registry manifest digest;
* ``status-image-id``: the runtime reported only a bare ``sha256:…`` image ID, the
  *config* digest (kind's preloaded images do this); it lands in ``config_digest``;
* ``unresolved``: no status yet (Pending pods) or an imageID that cannot be read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from repoaudit.errors import ConfigError, IngestError
from repoaudit.loader import load_documents
from repoaudit.model.reference import parse_image_id, parse_reference

__all__ = ["WORKLOAD_KEYS", "load_pods", "workloads_from_pods"]

WORKLOAD_KEYS = (
    "cluster",
    "namespace",
    "pod",
    "owner_kind",
    "owner_name",
    "container",
    "init",
    "image_ref",
    "registry",
    "repository",
    "image_digest",
    "config_digest",
    "resolved_by",
    "pinned_by_digest",
    "phase",
)


def _parse_documents(path: Path) -> list[Any]:
    documents = [doc.body for doc in load_documents(path, kind="pods") if doc.body is not None]
    if not documents:
        raise IngestError(f"{path}: empty file (only comments or '---')")
    return documents


def _type(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _pod_problem(pod: Any) -> str | None:
    """What makes ``pod`` unusable as a Pod, or None.

    Checked before any row is made: a lenient reader would turn ``"containers": "nginx"``
    into a pod with no containers, and a listing of those into an empty workload set,
    which would lift the protection ``retention apply`` gives running images.
    """
    if not isinstance(pod, dict):
        return f"is {_type(pod)}, expected a Pod object"
    for key in ("metadata", "status"):
        if pod.get(key) is not None and not isinstance(pod[key], dict):
            return f"{key} is {_type(pod[key])}, expected an object"
    metadata, status = pod.get("metadata") or {}, pod.get("status") or {}
    for key in ("name", "namespace"):
        if metadata.get(key) is not None and not isinstance(metadata[key], str):
            return f"metadata.{key} is {_type(metadata[key])}, expected a string"
    owners = metadata.get("ownerReferences")
    if owners is not None and not (isinstance(owners, list) and all(isinstance(o, dict) for o in owners)):
        return "metadata.ownerReferences must be a list of objects"
    if status.get("phase") is not None and not isinstance(status["phase"], str):
        return f"status.phase is {_type(status['phase'])}, expected a string"
    spec = pod.get("spec")
    if not isinstance(spec, dict):
        return f"spec is {_type(spec)}, expected an object with containers"
    for key, required in (("containers", True), ("initContainers", False)):
        containers = spec.get(key)
        if containers is None and not required:
            continue
        if not isinstance(containers, list) or (required and not containers):
            return f"spec.{key} is {_type(containers)}, expected a non-empty list of containers" if required \
                else f"spec.{key} is {_type(containers)}, expected a list of containers"
        for index, container in enumerate(containers):
            if not isinstance(container, dict):
                return f"spec.{key}[{index}] is {_type(container)}, expected a container object"
            for field in ("name", "image"):
                if not isinstance(container.get(field), str):
                    return f"spec.{key}[{index}].{field} is {_type(container.get(field))}, expected a string"
    for key in ("containerStatuses", "initContainerStatuses"):
        statuses = status.get(key)
        if statuses is None:
            continue
        if not isinstance(statuses, list):
            return f"status.{key} is {_type(statuses)}, expected a list"
        for index, item in enumerate(statuses):
            if not isinstance(item, dict):
                return f"status.{key}[{index}] is {_type(item)}, expected an object"
            for field in ("name", "imageID"):
                if item.get(field) is not None and not isinstance(item[field], str):
                    return f"status.{key}[{index}].{field} is {_type(item[field])}, expected a string"
    return None


def _pod_label(pod: Any) -> str:
    metadata = pod.get("metadata") if isinstance(pod, dict) else None
    if not isinstance(metadata, dict) or not isinstance(metadata.get("name"), str):
        return ""
    namespace = metadata.get("namespace")
    return f" (pod {namespace}/{metadata['name']})" if isinstance(namespace, str) else f" (pod {metadata['name']})"


def _pods_from_document(doc: Any, path: Path, where: str) -> list[dict]:
    if not isinstance(doc, dict):
        raise IngestError(f"{path}: {where}is a {type(doc).__name__}, expected a Pod, PodList or List of Pods")
    kind = doc.get("kind")
    if kind == "Pod":
        problem = _pod_problem(doc)
        if problem:
            raise IngestError(f"{path}: {where}Pod{_pod_label(doc)}: {problem}")
        return [doc]
    if kind in ("PodList", "List"):
        items = doc.get("items")
        if not isinstance(items, list):
            raise IngestError(f"{path}: {where}{kind}.items is {_type(items)}, expected a list")
        pods = []
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                raise IngestError(f"{path}: {where}{kind}.items[{index}] is {type(item).__name__}, expected a Pod")
            # Items straight from the API server (not kubectl) carry no kind of their own.
            item_kind = item.get("kind", "Pod")
            if item_kind != "Pod":
                raise IngestError(
                    f"{path}: {where}{kind}.items[{index}] is kind {item_kind!r}, expected only Pods"
                )
            problem = _pod_problem(item)
            if problem:
                raise IngestError(f"{path}: {where}{kind}.items[{index}]{_pod_label(item)}: {problem}")
            pods.append(item)
        return pods
    raise IngestError(f"{path}: {where}kind is {kind!r}, expected Pod, PodList or List of Pods")


def load_pods(path: Path) -> list[dict]:
    """Read pods from a JSON or YAML file holding a ``PodList``, a ``List`` of Pods or a single Pod.

    Multi-document YAML is accepted, each document being one of those. Anything else
    (empty, malformed, truncated, another kind) raises :class:`IngestError` naming
    the file and what was found.
    """
    path = Path(path)
    documents = _parse_documents(path)
    pods: list[dict] = []
    for index, doc in enumerate(documents):
        where = f"document {index + 1}: " if len(documents) > 1 else ""
        pods.extend(_pods_from_document(doc, path, where))
    return pods


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _owner(metadata: dict) -> tuple[str | None, str | None]:
    owners = [o for o in _list(metadata.get("ownerReferences")) if isinstance(o, dict)]
    # The controller is the one that recreates the pod; other owners are incidental.
    chosen = next((o for o in owners if o.get("controller")), owners[0] if owners else None)
    if chosen is None:
        return None, None
    return _str(chosen.get("kind")), _str(chosen.get("name"))


def _container_row(base: dict, container: dict, status: dict | None, *, init: bool) -> dict:
    image = container.get("image")
    image_ref = image if isinstance(image, str) else None
    registry = repository = spec_digest = None
    if image_ref:
        try:
            ref = parse_reference(image_ref)
        except ConfigError:
            # The kubelet rejects such a pod (InvalidImageName); it still exists, so keep
            # the row with the image as written.
            ref = None
        if ref is not None:
            image_ref = str(ref)
            registry, repository, spec_digest = ref.registry, ref.repository, ref.digest

    status_digest = config_digest = None
    if status is not None:
        try:
            _, digest, kind = parse_image_id(status.get("imageID"))
        except ConfigError:
            # One unreadable imageID should not fail the listing; the row says unresolved.
            digest, kind = None, "invalid"
        if kind == "repo-digest":
            status_digest = digest
        elif kind == "image-id":
            config_digest = digest

    if spec_digest:
        resolved_by, image_digest = "spec-digest", spec_digest
    elif status_digest:
        resolved_by, image_digest = "status-repo-digest", status_digest
    elif config_digest:
        resolved_by, image_digest = "status-image-id", None
    else:
        resolved_by, image_digest = "unresolved", None

    return {
        **base,
        "container": _str(container.get("name")),
        "init": init,
        "image_ref": image_ref,
        "registry": registry,
        "repository": repository,
        "image_digest": image_digest,
        "config_digest": config_digest,
        "resolved_by": resolved_by,
        "pinned_by_digest": spec_digest is not None,
    }


def workloads_from_pods(items: list[dict], cluster: str) -> list[dict]:
    """One row per container and init container of each pod, with keys :data:`WORKLOAD_KEYS`.

    Statuses are matched to containers by name (``initContainerStatuses`` for init
    containers). Pods without statuses (Pending) still yield rows, ``unresolved``.
    ``image_ref`` is the spec image in canonical form (``nginx`` →
    ``index.docker.io/library/nginx``), or as written if it is not a valid reference.
    """
    rows: list[dict] = []
    for index, pod in enumerate(items):
        if not isinstance(pod, dict):
            raise IngestError(f"pod {index} is a {type(pod).__name__}, expected a Pod object")
        problem = _pod_problem(pod)
        if problem:
            raise IngestError(f"pod {index}{_pod_label(pod)}: {problem}")
        metadata, spec, status = _dict(pod.get("metadata")), _dict(pod.get("spec")), _dict(pod.get("status"))
        owner_kind, owner_name = _owner(metadata)
        base = {
            "cluster": cluster,
            "namespace": _str(metadata.get("namespace")),
            "pod": _str(metadata.get("name")),
            "owner_kind": owner_kind,
            "owner_name": owner_name,
            "phase": _str(status.get("phase")),
        }
        for init, spec_key, status_key in (
            (True, "initContainers", "initContainerStatuses"),
            (False, "containers", "containerStatuses"),
        ):
            statuses = {
                s["name"]: s for s in _list(status.get(status_key)) if isinstance(s, dict) and _str(s.get("name"))
            }
            for container in _list(spec.get(spec_key)):
                if isinstance(container, dict):
                    container_status = statuses.get(_str(container.get("name")))
                    row = _container_row(base, container, container_status, init=init)
                    rows.append({key: row[key] for key in WORKLOAD_KEYS})
    return rows
