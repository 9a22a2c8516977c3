"""The four policy formats, each parsed into one :class:`~repoaudit.retention.policy.Policy`.

``native.py`` (repoaudit's YAML), ``harbor.py`` (Harbor tag retention JSON), ``ecr.py`` (AWS ECR
lifecycle JSON) and ``gar.py`` (Google Artifact Registry cleanup JSON) each hold one parser, with
the checks they share in ``fields.py``; :func:`load_policy` reads a file, tells its format from
its fields and dispatches.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from repoaudit import loader
from repoaudit.errors import PolicyError
from repoaudit.retention.formats.ecr import parse_ecr
from repoaudit.retention.formats.gar import parse_gar
from repoaudit.retention.formats.harbor import parse_harbor
from repoaudit.retention.formats.native import parse_native
from repoaudit.retention.policy import FORMATS, Policy

__all__ = ["detect_format", "load_policy", "parse_ecr", "parse_gar", "parse_harbor", "parse_native",
           "parse_policy"]

_PARSERS = {"native": parse_native, "harbor": parse_harbor, "ecr": parse_ecr, "gar": parse_gar}


def detect_format(doc: Any) -> str | None:
    """Which of the four formats a parsed document is, from its shape; None when it is none of them."""
    if isinstance(doc, list):
        return "gar"
    if not isinstance(doc, dict):
        return None
    if doc.get("format") in FORMATS:
        return doc["format"]
    if "cleanupPolicies" in doc:
        return "gar"
    rules = doc.get("rules")
    if isinstance(rules, list) and rules and isinstance(rules[0], dict):
        first = rules[0]
        if "rulePriority" in first or "selection" in first:
            return "ecr"
        if "template" in first or "tag_selectors" in first or "scope_selectors" in first:
            return "harbor"
        if "keep" in first or "repositories" in first or "tags" in first:
            return "native"
    if doc and all(isinstance(v, dict) and "action" in v for v in doc.values()):
        return "gar"
    return None


def parse_policy(doc: Any, *, format: str | None = None, source: str = "<policy>",  # noqa: A002 - the policy format
                 name: str | None = None, text: str | None = None) -> Policy:
    """Parse an already loaded document (dict/list) in one of :data:`FORMATS` (detected when not given).

    The policy is named ``name``, else a native policy's own ``name``, else the
    file's stem, else its format. ``sha256`` covers ``text`` (the file as written)
    when given, else the document.
    """
    fmt = format or detect_format(doc)
    if fmt is None:
        raise PolicyError(f"{source}: not a native, Harbor, ECR or Artifact Registry policy "
                          "(cannot tell the format from its fields; pass format=)")
    if fmt not in _PARSERS:
        raise PolicyError(f"{source}: unknown policy format {fmt!r} (valid: {', '.join(FORMATS)})")
    if isinstance(doc, dict) and doc.get("format") not in (None, fmt):
        raise PolicyError(f"{source}: format: says {doc['format']!r} but was read as {fmt}")
    policy = _PARSERS[fmt](doc, source)
    if name is None and fmt == "native" and isinstance(doc, dict) and doc.get("name"):
        name = str(doc["name"])
    if name is None:
        name = Path(source).stem if not source.startswith("<") else fmt
    if text is None:
        text = json.dumps(doc, sort_keys=True, default=str)
    return Policy(name=name, format=fmt, mode=policy.mode, rules=policy.rules, scope=policy.scope,
                  source=source, sha256=hashlib.sha256(text.encode()).hexdigest(), notes=policy.notes,
                  description=policy.description, raw=doc)


def load_policy(policy: "str | Path | dict | list | Policy", *, format: str | None = None,  # noqa: A002
                name: str | None = None) -> Policy:
    """A :class:`Policy` from a file path, a loaded document, or a Policy (returned as is).

    ``.json`` files are read as JSON, anything else as YAML (a superset). The
    format is detected from the document's fields unless ``format`` is given.
    """
    if isinstance(policy, Policy):
        return policy
    if isinstance(policy, (dict, list)):
        return parse_policy(policy, format=format, name=name)
    path = Path(policy)
    text = loader.read_text(path, kind="policy", empty_ok=True)
    doc = loader.parse_document(text, name=str(path), kind="policy", empty_ok=True,
                                fmt="json" if path.suffix.lower() == ".json" else "yaml")
    return parse_policy(doc, format=format, source=str(path), name=name, text=text)
