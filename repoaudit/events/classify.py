"""Who pulled: a pull's client as ``workload``, ``scanner``, ``replication``, ``ci`` or ``human``.

Rules are tried in order; the first whose every given test matches decides. A test is a
regular expression searched in the event's ``user_agent``, ``actor`` or ``source_addr``
(``address``). What no rule matches is ``human``: someone's CLI, curl, a script.

The defaults know the common clients by user agent: scanners (Trivy, Clair, Grype, Harbor's
scan job robot, Prisma/Twistlock, Snyk, Anchore, Aqua), replication (Harbor's registry
client, regsync, a Distribution pull-through cache), tools that CI runs (skopeo, crane,
regctl, oras, buildkit, kaniko, buildah, and repoaudit's own collection) and container runtimes (containerd, CRI-O,
Docker, Podman's libpod). Scanners come first because several wrap a runtime's library and
say so in the same user agent. A rules file (YAML)::

    rules:
      - {class: scanner, name: in-house scanner, actor: '^robot\\$scanner'}
      - {class: workload, name: nodes, address: '^10\\.42\\.'}
    defaults: true        # append the built-in rules after these (the default)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from repoaudit.errors import ConfigError
from repoaudit.loader import load_document

__all__ = ["CLASSES", "DEFAULT_RULES", "ClientRule", "Classifier", "load_rules"]

CLASSES = ("workload", "scanner", "replication", "ci", "human")
_FIELDS = {"user_agent": "user_agent", "actor": "actor", "address": "source_addr"}


@dataclass(frozen=True)
class ClientRule:
    client_class: str
    name: str
    tests: tuple[tuple[str, str], ...]  # (event field, regex)

    def matches(self, values: dict[str, str | None]) -> bool:
        return all(values.get(field) is not None and re.search(pattern, values[field])
                   for field, pattern in self.tests)


def _ua(client_class: str, name: str, pattern: str) -> ClientRule:
    return ClientRule(client_class, name, (("user_agent", pattern),))


DEFAULT_RULES: tuple[ClientRule, ...] = (
    _ua("scanner", "trivy", r"(?i)\btrivy"),
    _ua("scanner", "clair", r"(?i)\bclair"),
    _ua("scanner", "grype", r"(?i)\b(grype|syft)\b"),
    ClientRule("scanner", "harbor scan job", (("actor", r"(?i)^robot\$.*(scan|trivy|clair)"),)),
    _ua("scanner", "prisma", r"(?i)twistlock|prisma"),
    _ua("scanner", "snyk", r"(?i)\bsnyk"),
    _ua("scanner", "anchore", r"(?i)anchore"),
    _ua("scanner", "aqua", r"(?i)\baqua"),
    _ua("replication", "harbor replication", r"(?i)harbor-registry-client|harbor-replication"),
    _ua("replication", "regsync", r"(?i)regsync"),
    _ua("replication", "distribution proxy", r"(?i)^(docker-)?distribution/"),
    _ua("ci", "repoaudit", r"^repoaudit(-posture)?/"),  # its collection, and its anonymous posture probes
    _ua("ci", "skopeo", r"(?i)\bskopeo/"),
    _ua("ci", "crane", r"(?i)\b(crane|go-containerregistry)/"),
    _ua("ci", "regctl", r"(?i)\bregclient|regctl"),
    _ua("ci", "oras", r"(?i)\boras/"),
    _ua("ci", "buildkit", r"(?i)buildkit"),
    _ua("ci", "kaniko", r"(?i)kaniko"),
    _ua("ci", "buildah", r"(?i)buildah"),
    _ua("workload", "containerd", r"(?i)^containerd/"),
    _ua("workload", "cri-o", r"(?i)^cri-o/"),
    _ua("workload", "docker", r"(?i)^docker/"),
    _ua("workload", "podman", r"(?i)^libpod/"),
)


class Classifier:
    """First matching rule wins; ``classify`` returns ``(client_class, rule name)``."""

    def __init__(self, rules: Iterable[ClientRule] = DEFAULT_RULES):
        self.rules = tuple(rules)
        self._cache: dict[tuple, tuple[str, str | None]] = {}

    def classify(self, user_agent: str | None, actor: str | None, source_addr: str | None) -> tuple[str, str | None]:
        key = (user_agent, actor, source_addr)
        found = self._cache.get(key)
        if found is None:
            values = {"user_agent": user_agent, "actor": actor, "source_addr": source_addr}
            rule = next((r for r in self.rules if r.matches(values)), None)
            found = (rule.client_class, rule.name) if rule else ("human", None)
            self._cache[key] = found
        return found


def _rule(doc: Any, where: str) -> ClientRule:
    if not isinstance(doc, dict):
        raise ConfigError(f"{where}: expected a mapping with class and user_agent/actor/address")
    unknown = set(doc) - {"class", "name", *_FIELDS}
    if unknown:
        raise ConfigError(f"{where}: unknown key {sorted(unknown)[0]!r} (valid: class, name, "
                          f"{', '.join(_FIELDS)})")
    client_class = doc.get("class")
    if client_class not in CLASSES:
        raise ConfigError(f"{where}.class: {client_class!r}, expected one of {', '.join(CLASSES)}")
    tests = []
    for key, field in _FIELDS.items():
        if key in doc:
            pattern = doc[key]
            if not isinstance(pattern, str) or not pattern:
                raise ConfigError(f"{where}.{key}: expected a regular expression, got {pattern!r}")
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ConfigError(f"{where}.{key}: {pattern!r} is not a regular expression: {exc}") from None
            tests.append((field, pattern))
    if not tests:
        raise ConfigError(f"{where}: needs at least one of {', '.join(_FIELDS)}")
    name = doc.get("name", f"{client_class} rule")
    if not isinstance(name, str):
        raise ConfigError(f"{where}.name: expected a string, got {name!r}")
    return ClientRule(client_class, name, tuple(tests))


def load_rules(path: str | Path) -> Classifier:
    """A :class:`Classifier` from a rules file (see the module docstring)."""
    doc = load_document(path, kind="config", error=ConfigError)
    if not isinstance(doc, dict) or not isinstance(doc.get("rules"), list):
        raise ConfigError(f"{path}: expected a mapping with a 'rules' list")
    unknown = set(doc) - {"rules", "defaults"}
    if unknown:
        raise ConfigError(f"{path}: unknown key {sorted(unknown)[0]!r} (valid: rules, defaults)")
    defaults = doc.get("defaults", True)
    if not isinstance(defaults, bool):
        raise ConfigError(f"{path}: defaults must be true or false, got {defaults!r}")
    rules = [_rule(item, f"{path}: rules[{i}]") for i, item in enumerate(doc["rules"])]
    return Classifier([*rules, *(DEFAULT_RULES if defaults else ())])
