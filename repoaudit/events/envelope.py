"""What a registry says happened, read from the three shapes it arrives in.

* CNCF Distribution notifications: ``{"events": [...]}`` envelopes
  (``application/vnd.docker.distribution.events.v1+json``), one object per push, pull,
  delete or mount of a manifest or blob, each with its own ``id`` (a UUID the registry
  keeps when it retries, which is what makes ingest idempotent);
* Harbor webhooks: ``{"type": "PUSH_ARTIFACT" | "PULL_ARTIFACT" | "DELETE_ARTIFACT", "occur_at",
  "operator", "event_data": {"resources": [...], "repository": {...}}}``; they carry no id, so
  one is derived from the fields that make the event what it is;
* Distribution's JSON log lines (``log.formatter: json``): the ``response completed`` line of
  every request, for registries whose notifications were not configured.

Every shape is validated here, once, into :class:`Event` records: a field of the wrong type is an
:class:`~repoaudit.errors.EventError` naming it, never a row with a hole where the registry said
something else. The receiver validates with the same functions before it acknowledges.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

from repoaudit.errors import EventError
from repoaudit.model.timestamps import naive_utc, parse_timestamp

__all__ = ["DISTRIBUTION_MEDIA_TYPE", "EVENT_FIELDS", "HARBOR_TYPES", "Event", "envelope_events",
           "log_line_event", "spool_record_events"]

DISTRIBUTION_MEDIA_TYPE = "application/vnd.docker.distribution.events.v1+json"
HARBOR_TYPES = {"PUSH_ARTIFACT": "push", "PULL_ARTIFACT": "pull", "DELETE_ARTIFACT": "delete"}
_ACTIONS = ("push", "pull", "delete", "mount")
_MANIFEST_PATH = re.compile(r"^/v2/(?P<name>.+)/(?P<kind>manifests|blobs)/(?P<ref>[^/]+)$")
_DIGEST = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$")
# Distribution answers a successful push 201, a delete 202, a pull 200 (a range 206).
_LOG_ACTIONS = {("GET", 200): "pull", ("HEAD", 200): "pull", ("GET", 206): "pull", ("PUT", 201): "push", ("DELETE", 202): "delete"}
_MAX_ID = 256


@dataclass(frozen=True)
class Event:
    """One thing a registry did, as ``registry_events`` stores it (times naive UTC)."""

    event_id: str
    occurred_at: datetime
    action: str
    kind: str  # manifest | blob
    method: str | None  # GET | HEAD | PUT | DELETE ... (a HEAD pull is a runtime checking its tag)
    registry: str | None
    repository: str
    digest: str | None
    tag: str | None
    media_type: str | None
    size: int | None
    actor: str | None
    user_agent: str | None
    source_addr: str | None
    request_id: str | None
    origin: str  # distribution | harbor | accesslog

    def row(self) -> dict[str, Any]:
        return asdict(self)


EVENT_FIELDS = tuple(Event.__dataclass_fields__)


def _type(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _obj(value: Any, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise EventError(f"{where} is {_type(value)}, expected an object")
    return value


def _str(doc: dict, key: str, where: str, *, required: bool = False) -> str | None:
    value = doc.get(key)
    if value is None or value == "":
        if required:
            raise EventError(f"{where}.{key} is missing")
        return None
    if not isinstance(value, str):
        raise EventError(f"{where}.{key} is {_type(value)}, expected a string")
    return value


def _int(doc: dict, key: str, where: str) -> int | None:
    value = doc.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise EventError(f"{where}.{key} is {value!r}, expected a non-negative integer")
    return value


def _digest(value: str | None, where: str) -> str | None:
    if value is not None and not _DIGEST.match(value):
        raise EventError(f"{where} is {value!r}, not a digest")
    return value


def _address(value: str | None) -> str | None:
    """The client's IP without its port (``10.0.0.7:51234`` → ``10.0.0.7``, ``[::1]:80`` → ``::1``)."""
    if not value:
        return None
    if value.startswith("["):
        return value[1:value.find("]")] if "]" in value else value
    host, sep, port = value.rpartition(":")
    return host if sep and port.isdigit() and ":" not in host else value


def _time(value: Any, where: str) -> datetime:
    parsed = parse_timestamp(value)
    if parsed is None:
        raise EventError(f"{where} is {value!r}, expected an RFC 3339 time")
    return naive_utc(parsed)


# -- Distribution notifications -------------------------------------------------------------


def _distribution_event(raw: Any, where: str) -> Event:
    if not isinstance(raw, dict):
        raise EventError(f"{where} is {_type(raw)}, expected an event object")
    doc = raw
    event_id = _str(doc, "id", where, required=True)
    if len(event_id) > _MAX_ID:
        raise EventError(f"{where}.id is longer than {_MAX_ID} characters")
    action = _str(doc, "action", where, required=True)
    if action not in _ACTIONS:
        raise EventError(f"{where}.action is {action!r}, expected one of {', '.join(_ACTIONS)}")
    target = _obj(doc.get("target"), f"{where}.target")
    request = _obj(doc.get("request"), f"{where}.request")
    actor = _obj(doc.get("actor"), f"{where}.actor")
    repository = _str(target, "repository", f"{where}.target", required=True)
    url = _str(target, "url", f"{where}.target")
    media_type = _str(target, "mediaType", f"{where}.target")
    # The URL says what the request touched; a blob event carries the layer's media type
    # (often application/octet-stream), a manifest event one of the manifest types.
    path = urlsplit(url).path if url else ""
    match = _MANIFEST_PATH.match(path)
    if match:
        kind = "manifest" if match["kind"] == "manifests" else "blob"
    else:
        kind = "manifest" if media_type and ("manifest" in media_type or "image.index" in media_type) else "blob"
    registry = urlsplit(url).netloc if url else None
    size = _int(target, "size", f"{where}.target")
    if size is None:
        size = _int(target, "length", f"{where}.target")
    return Event(
        event_id=event_id,
        occurred_at=_time(doc.get("timestamp"), f"{where}.timestamp"),
        action=action,
        kind=kind,
        method=_str(request, "method", f"{where}.request"),
        registry=registry or _str(request, "host", f"{where}.request"),
        repository=repository,
        digest=_digest(_str(target, "digest", f"{where}.target"), f"{where}.target.digest"),
        tag=_str(target, "tag", f"{where}.target"),
        media_type=media_type,
        size=size,
        actor=_str(actor, "name", f"{where}.actor"),
        user_agent=_str(request, "useragent", f"{where}.request"),
        source_addr=_address(_str(request, "addr", f"{where}.request")),
        request_id=_str(request, "id", f"{where}.request"),
        origin="distribution",
    )


# -- Harbor webhooks ---------------------------------------------------------------------------


def _harbor_events(doc: dict, where: str) -> list[Event]:
    kind = doc.get("type")
    if kind not in HARBOR_TYPES:
        raise EventError(f"{where}.type is {kind!r}, expected one of {', '.join(HARBOR_TYPES)}")
    occur = doc.get("occur_at")
    if isinstance(occur, bool) or not isinstance(occur, (int, float)) or occur < 0:
        raise EventError(f"{where}.occur_at is {occur!r}, expected Unix seconds")
    occurred = datetime.fromtimestamp(occur, timezone.utc).replace(tzinfo=None)
    operator = _str(doc, "operator", where)
    data = _obj(doc.get("event_data"), f"{where}.event_data")
    repo = _obj(data.get("repository"), f"{where}.event_data.repository")
    full_name = _str(repo, "repo_full_name", f"{where}.event_data.repository")
    if full_name is None:
        namespace = _str(repo, "namespace", f"{where}.event_data.repository", required=True)
        full_name = f"{namespace}/{_str(repo, 'name', f'{where}.event_data.repository', required=True)}"
    resources = data.get("resources")
    if not isinstance(resources, list) or not resources:
        raise EventError(f"{where}.event_data.resources is {_type(resources)}, expected a non-empty list")
    events = []
    for index, resource in enumerate(resources):
        at = f"{where}.event_data.resources[{index}]"
        if not isinstance(resource, dict):
            raise EventError(f"{at} is {_type(resource)}, expected an object")
        digest = _digest(_str(resource, "digest", at), f"{at}.digest")
        tag = _str(resource, "tag", at)
        if digest is None and tag is None:
            raise EventError(f"{at} has neither digest nor tag")
        url = _str(resource, "resource_url", at)
        registry = url.split("/", 1)[0] if url and "/" in url else None
        # No id in a Harbor webhook: the event is what happened to what, when, by whom. Harbor's own
        # retries resend the same fields, so they hash to the same id.
        key = json.dumps([kind, occur, operator, full_name, digest, tag, index], separators=(",", ":"))
        events.append(Event(
            event_id="harbor:" + hashlib.sha256(key.encode()).hexdigest()[:32],
            occurred_at=occurred, action=HARBOR_TYPES[kind], kind="manifest", method=None, registry=registry,
            repository=full_name, digest=digest, tag=tag, media_type=None, size=None, actor=operator,
            user_agent=None, source_addr=None, request_id=None, origin="harbor"))
    return events


# -- envelopes as received ---------------------------------------------------------------------


def envelope_events(doc: Any) -> tuple[str, list[Event]]:
    """``(origin, events)`` of one received body (a Distribution envelope or a Harbor webhook).

    Raises :class:`EventError` naming the first thing that is wrong; an envelope is taken
    whole or not at all.
    """
    if not isinstance(doc, dict):
        raise EventError(f"body is {_type(doc)}, expected a notification envelope or a Harbor webhook object")
    if "events" in doc:
        raw = doc["events"]
        if not isinstance(raw, list):
            raise EventError(f"events is {_type(raw)}, expected a list")
        return "distribution", [_distribution_event(item, f"events[{i}]") for i, item in enumerate(raw)]
    if "type" in doc and "event_data" in doc:
        return "harbor", _harbor_events(doc, "webhook")
    raise EventError("body has neither 'events' (Distribution) nor 'type' and 'event_data' (Harbor webhook)")


def spool_record_events(record: Any) -> list[Event]:
    """The events of one spool line (as :mod:`repoaudit.events.spool` writes them)."""
    if not isinstance(record, dict) or record.get("v") != 1:
        raise EventError("not a repoaudit spool record (expected an object with \"v\": 1)")
    origin, body = record.get("origin"), record.get("body")
    if origin == "distribution":
        return [_distribution_event(body, "event")]
    if origin == "harbor":
        return _harbor_events(_obj(body, "webhook"), "webhook")
    raise EventError(f"origin is {origin!r}, expected distribution or harbor")


# -- Distribution's JSON log -------------------------------------------------------------------


def log_line_event(doc: dict, registry: str | None) -> Event | None:
    """The event a ``response completed`` log line records, or None for any other line.

    Only manifest requests become events (a blob GET is part of a pull, not a pull): a
    ``GET`` or ``HEAD`` answered 200 is a pull (Distribution notifies both), a ``PUT`` 201 a push, a ``DELETE`` 202 a delete. A pull
    by tag names no digest: the log does not carry the ``Docker-Content-Digest`` it answered.
    """
    if doc.get("msg") != "response completed":
        return None
    method, uri = doc.get("http.request.method"), doc.get("http.request.uri")
    status = doc.get("http.response.status")
    if not isinstance(method, str) or not isinstance(uri, str) or not isinstance(status, int):
        raise EventError("response completed line without http.request.method, http.request.uri or "
                         "http.response.status")
    action = _LOG_ACTIONS.get((method, status))
    match = _MANIFEST_PATH.match(urlsplit(uri).path)
    if action is None or match is None or match["kind"] != "manifests":
        return None
    request_id = _str(doc, "http.request.id", "line", required=True)
    reference = match["ref"]
    is_digest = bool(_DIGEST.match(reference))
    return Event(
        event_id=f"log:{request_id}", occurred_at=_time(doc.get("time"), "line.time"), action=action,
        kind="manifest", method=method, registry=registry or _str(doc, "http.request.host", "line"), repository=match["name"],
        digest=reference if is_digest else None, tag=None if is_digest else reference,
        media_type=_str(doc, "http.response.contenttype", "line") if action == "pull" else None,
        size=None, actor=_str(doc, "auth.user.name", "line"), user_agent=_str(doc, "http.request.useragent", "line"),
        source_addr=_address(_str(doc, "http.request.remoteaddr", "line")), request_id=request_id,
        origin="accesslog")
