"""One loader for every JSON or YAML file a user hands in.

Scan reports, pod listings, retention policies, plans, Flux manifests, the config
file and Docker's ``config.json`` are all read here, so every one of them gets the
same limits and the same error line::

    FILE:LINE:COL: what was wrong

raised as the error class of the caller's domain (:class:`~repoaudit.errors.IngestError`
for scans and pods, :class:`~repoaudit.errors.PolicyError` for policies,
:class:`~repoaudit.errors.ConfigError` for the rest), never a parser's own exception.

Limits, per kind of file (:data:`MAX_BYTES`; ``max_bytes=`` overrides):

* size: 256 MiB for scan reports, pod listings and plans, 16 MiB for Flux
  manifests, 4 MiB for policies and Docker configs, 1 MiB for the config file;
  checked before the file is read;
* nesting: :data:`MAX_DEPTH` (100) levels of arrays/objects. Both ``json`` and
  PyYAML recurse (a 200,000-deep document is a ``RecursionError``, and libyaml's
  flow collections take quadratic time), so depth is measured before anything
  recursive sees the text: JSON by a bracket scan, YAML by walking the parser's
  events (a state machine, no recursion) and composing the nodes here, stopping
  at the first level too deep;
* YAML aliases: at most :data:`MAX_ALIAS_NODES` nodes added by expanding them
  ("billion laughs"), and no alias inside the node it names (a self-containing
  structure every later walk would loop on).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from repoaudit.errors import (
    ConfigError,
    IngestError,
    PolicyError,
    RepoauditError,
    first_line,
    one_line,
)

__all__ = ["Document", "MAX_ALIAS_NODES", "MAX_BYTES", "MAX_DEPTH", "load_document", "load_documents",
           "parse_document", "parse_documents", "read_text"]

MiB = 1 << 20
# Big clusters' `kubectl get pods -A -o json` and scans of fat images run to tens of
# MiB; 256 leaves room without letting a stray multi-GB file be read into memory.
MAX_BYTES: dict[str, int] = {
    "scan": 256 * MiB,
    "pods": 256 * MiB,
    "plan": 256 * MiB,
    "flux": 16 * MiB,
    "policy": 4 * MiB,
    "docker-config": 4 * MiB,
    "config": 1 * MiB,
    "document": 16 * MiB,
}
# Real documents are shallow (a Pod is ~12 levels, CycloneDX a few more); this stays
# far under Python's recursion limit, so code that walks a loaded document recursively
# (json.dumps, the constructors) cannot hit it either.
MAX_DEPTH = 100
MAX_ALIAS_NODES = 1_000_000

_ERRORS: dict[str, type[RepoauditError]] = {"scan": IngestError, "pods": IngestError, "policy": PolicyError}
_WHAT = {"scan": "scan reports", "pods": "pod listings", "plan": "plans", "flux": "Flux manifests",
         "policy": "policies", "docker-config": "Docker configs", "config": "config files",
         "document": "documents"}
_NOUN = {"policy": "policy", "plan": "plan", "config": "config file", "docker-config": "Docker config"}

# YAML 1.1's printable set, as PyYAML's Reader checks it; checked here first so that
# the C and the Python reader give the same line and column (libyaml counts bytes).
_YAML_NON_PRINTABLE = re.compile("[^\x09\x0A\x0D\x20-\x7E\x85\xA0-\uD7FF\uE000-\uFFFD\U00010000-\U0010ffff]")
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_LONG_NUMBER = re.compile(r"\d{4000,}")


@dataclass(frozen=True)
class Document:
    """One document of a file: its body and the line (1-based) its root node starts on."""

    line: int
    body: Any


def _error_class(kind: str, error: type[RepoauditError] | None) -> type[RepoauditError]:
    return error or _ERRORS.get(kind, ConfigError)


def _position(text: str, index: int) -> tuple[int, int]:
    """1-based line and column of character ``index``."""
    line = text.count("\n", 0, index) + 1
    return line, index - (text.rfind("\n", 0, index) + 1) + 1


class _Fail:
    """Formats and raises the one-line error of one source."""

    def __init__(self, name: str, error: type[RepoauditError]):
        self.name = name
        self.error = error

    def __call__(self, what: str, line: int | None = None, column: int | None = None):
        where = self.name if line is None else f"{self.name}:{line}" + (f":{column}" if column else "")
        return self.error(f"{where}: {one_line(what)}")


def read_text(path: str | Path, *, kind: str = "document", max_bytes: int | None = None,
              error: type[RepoauditError] | None = None, empty_ok: bool = False) -> str:
    """The file as text: unreadable, oversized, non-UTF-8 or (unless ``empty_ok``) empty files are errors."""
    path = Path(path)
    fail = _Fail(str(path), _error_class(kind, error))
    limit = MAX_BYTES.get(kind, MAX_BYTES["document"]) if max_bytes is None else max_bytes
    try:
        with path.open("rb") as handle:
            # Read one byte past the limit rather than trusting stat(): pipes and
            # /proc files report a size of 0.
            raw = handle.read(limit + 1)
    except OSError as exc:
        raise fail(f"cannot read {_NOUN.get(kind, 'file')}: {exc.strerror or exc}") from None
    if len(raw) > limit:
        raise fail(f"larger than {_size(limit)}, the limit for {_WHAT.get(kind, 'documents')}") from None
    return _decode(raw, fail, empty_ok)


def _size(n: int) -> str:
    return f"{n // MiB} MiB" if n % MiB == 0 else f"{n} bytes"


def _decode(raw: bytes, fail: _Fail, empty_ok: bool) -> str:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise fail(f"not UTF-8 text (byte 0x{raw[exc.start]:02x})", line, column) from None
    if not text.strip() and not empty_ok:
        raise fail("empty file")
    return text


def _format(name: str, text: str, fmt: str | None) -> str:
    if fmt in ("json", "yaml"):
        return fmt
    if fmt is not None:
        raise ValueError(f"unknown format {fmt!r}")
    # JSON first when it looks like JSON: its errors say "truncated" precisely, where YAML would guess.
    if name.lower().endswith(".json") or text.lstrip()[:1] in ("{", "["):
        return "json"
    return "yaml"


def load_document(source: str | Path, *, text: str | bytes | None = None, kind: str = "document",
                  fmt: str | None = None, max_bytes: int | None = None, max_depth: int = MAX_DEPTH,
                  error: type[RepoauditError] | None = None, empty_ok: bool = False) -> Any:
    """Read and parse one JSON or YAML document.

    ``source`` is the file to read, or with ``text`` only the name errors give. ``kind``
    (``scan``, ``pods``, ``plan``, ``flux``, ``policy``, ``docker-config``, ``config``)
    picks the size limit and the error class; ``error`` overrides the class. ``fmt`` is
    ``"json"``, ``"yaml"`` or ``None``: JSON for ``*.json`` and text starting ``{``/``[``,
    else YAML. An empty file is an error unless ``empty_ok`` (then ``None``); a YAML
    stream of several documents is an error (use :func:`load_documents`).
    """
    docs = load_documents(source, text=text, kind=kind, fmt=fmt, max_bytes=max_bytes, max_depth=max_depth,
                          error=error, empty_ok=empty_ok)
    if not docs:
        return None
    if len(docs) > 1:
        raise _Fail(str(source), _error_class(kind, error))(
            f"holds {len(docs)} YAML documents, expected one", docs[1].line, 1)
    return docs[0].body


def load_documents(source: str | Path, *, text: str | bytes | None = None, kind: str = "document",
                   fmt: str | None = None, max_bytes: int | None = None, max_depth: int = MAX_DEPTH,
                   error: type[RepoauditError] | None = None, empty_ok: bool = False) -> list[Document]:
    """Every document of a JSON file (one) or YAML stream, with the line each starts on.

    Same arguments as :func:`load_document`; an empty file gives ``[]`` when ``empty_ok``.
    """
    name = str(source)
    fail = _Fail(name, _error_class(kind, error))
    limit = MAX_BYTES.get(kind, MAX_BYTES["document"]) if max_bytes is None else max_bytes
    if text is None:
        text = read_text(source, kind=kind, max_bytes=limit, error=fail.error, empty_ok=empty_ok)
    else:
        if len(text) > limit:
            raise fail(f"larger than {_size(limit)}, the limit for {_WHAT.get(kind, 'documents')}")
        text = _decode(text, fail, empty_ok) if isinstance(text, bytes) else text
        if not text.strip() and not empty_ok:
            raise fail("empty file")
    if not text.strip():
        return []
    if _format(name, text, fmt) == "json":
        return [Document(1, _parse_json(text, fail, max_depth))]
    return _parse_yaml(text, fail, max_depth)


def parse_document(text: str | bytes, *, name: str = "<input>", **kw: Any) -> Any:
    """:func:`load_document` of text already in memory; ``name`` is what errors call it."""
    return load_document(name, text=text, **kw)


def parse_documents(text: str | bytes, *, name: str = "<input>", **kw: Any) -> list[Document]:
    """:func:`load_documents` of text already in memory."""
    return load_documents(name, text=text, **kw)


# -- JSON ------------------------------------------------------------------------------


_OPENING = frozenset(b"[{")
_OTHER_BYTES = bytes(b for b in range(256) if b not in b'"[]{}')


def _json_maybe_too_deep(text: str, max_depth: int) -> bool:
    """False when no bracket is nested deeper than ``max_depth``; True when one may be.

    A scan report may be hundreds of MiB, so the text is cut down at C speed first:
    escape pairs and every byte but quotes and brackets dropped, then strings cut
    out; the loop runs over the brackets alone. Malformed input may answer True; the
    exact scan then decides (and the parser reports what is malformed).
    """
    raw = text.encode("utf-8", "surrogatepass").replace(b"\\\\", b"").replace(b'\\"', b"")
    brackets = b"".join(raw.translate(None, _OTHER_BYTES).split(b'"')[0::2])
    depth = 0
    for byte in brackets:
        if byte in _OPENING:
            depth += 1
            if depth > max_depth:
                return True
        else:
            depth -= 1
    return False


def _json_too_deep(text: str, max_depth: int) -> int | None:
    """The index of the first bracket nested deeper than ``max_depth``, else None."""
    if not _json_maybe_too_deep(text, max_depth):
        return None
    depth = 0
    for match in re.finditer(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', text):
        token = match.group()
        if token in ("[", "{"):
            depth += 1
            if depth > max_depth:
                return match.start()
        elif token in ("]", "}"):
            depth -= 1
    return None


def _unclosed_at_end(text: str) -> bool:
    depth, in_string, escaped = 0, False, False
    for char in _JSON_STRING.sub('""', text):
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
    return in_string or depth > 0


def _parse_json(text: str, fail: _Fail, max_depth: int) -> Any:
    deep = _json_too_deep(text, max_depth)
    if deep is not None:
        raise fail(f"nested deeper than {max_depth} levels", *_position(text, deep))
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.pos >= len(text.rstrip()) or _unclosed_at_end(text):
            # A cut-off download: point at the end, where something is missing.
            end = len(text.rstrip())
            raise fail("truncated JSON (input ends inside an unclosed value)", *_position(text, end)) from None
        raise fail(f"malformed JSON: {exc.msg}", exc.lineno, exc.colno) from None
    except RecursionError:
        raise fail(f"nested deeper than {max_depth} levels") from None
    except ValueError as exc:
        # Python refuses integers of more than 4300 digits (CVE-2020-10735) with a plain ValueError.
        match = _LONG_NUMBER.search(text)
        where = _position(text, match.start()) if match else (None, None)
        raise fail(f"malformed JSON: {one_line(exc).split(';')[0]}", *where) from None


# -- YAML ------------------------------------------------------------------------------

# libyaml when present: `kubectl get pods -A -o yaml` runs to many megabytes.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _mark(mark: Any) -> tuple[int | None, int | None]:
    return (mark.line + 1, mark.column + 1) if mark is not None else (None, None)


def _parse_yaml(text: str, fail: _Fail, max_depth: int) -> list[Document]:
    bad = _YAML_NON_PRINTABLE.search(text)
    if bad:
        raise fail(f"invalid YAML: control character U+{ord(bad.group()):04X} is not allowed",
                   *_position(text, bad.start()))
    loader = _YAML_LOADER(text)
    docs: list[Document] = []
    try:
        loader.get_event()  # StreamStartEvent
        while not loader.check_event(yaml.StreamEndEvent):
            loader.get_event()  # DocumentStartEvent
            node = _compose(loader, fail, max_depth)
            loader.get_event()  # DocumentEndEvent
            try:
                body = loader.construct_document(node)
            except (ValueError, TypeError, OverflowError) as exc:
                # SafeConstructor lets a few plain exceptions out: 2024-02-30 as a timestamp, say.
                raise fail(f"invalid YAML: {exc}", *_mark(node.start_mark)) from None
            docs.append(Document(node.start_mark.line + 1, body))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid"
        if "maximum nesting depth" in problem:
            # PyYAML 6.0.4 and later stop deep flow collections in the scanner, ahead of our composer.
            raise fail(f"nested deeper than {max_depth} levels", *_mark(mark)) from None
        context = _tab_hint(text, mark) or (f" ({exc.context})" if exc.context and exc.problem else "")
        raise fail(f"invalid YAML: {problem}{context}", *_mark(mark)) from None
    except yaml.YAMLError as exc:
        raise fail(f"invalid YAML: {first_line(exc)}") from None
    except RecursionError:
        raise fail(f"nested deeper than {max_depth} levels") from None
    finally:
        loader.dispose()
    return docs


def _tab_hint(text: str, mark: Any) -> str:
    # libyaml says only "found character that cannot start any token"; a tab is the usual culprit.
    if mark is None:
        return ""
    lines = text.split("\n", mark.line + 1)
    line = lines[mark.line] if mark.line < len(lines) else ""
    return " (a tab: YAML indents with spaces)" if line[mark.column:mark.column + 1] == "\t" else ""


class _Frame:
    __slots__ = ("node", "key", "weight")

    def __init__(self, node: yaml.Node):
        self.node = node
        self.key: yaml.Node | None = None
        self.weight = 1


def _compose(loader: Any, fail: _Fail, max_depth: int) -> yaml.Node:
    """PyYAML's Composer without recursion: nodes from events, with the depth and alias checks.

    The C loader's own composer is recursive C code (no RecursionError, a crash);
    the constructor that runs afterwards is safe once depth is bounded.
    """
    anchors: dict[str, yaml.Node] = {}
    weights: dict[int, int] = {}
    stack: list[_Frame] = []
    expanded = 0

    def attach(node: yaml.Node, weight: int) -> yaml.Node | None:
        if not stack:
            return node
        frame = stack[-1]
        frame.weight += weight
        if isinstance(frame.node, yaml.SequenceNode):
            frame.node.value.append(node)
        elif frame.key is None:
            frame.key = node
        else:
            frame.node.value.append((frame.key, node))
            frame.key = None
        return None

    def anchor(event: Any, node: yaml.Node) -> None:
        if event.anchor is None:
            return
        if event.anchor in anchors:
            raise fail(f"invalid YAML: anchor &{event.anchor} is defined twice", *_mark(event.start_mark))
        anchors[event.anchor] = node

    def tag(event: Any, kind: type, value: Any) -> str:
        if event.tag is None or event.tag == "!":
            return loader.resolve(kind, value, event.implicit)
        return event.tag

    while True:
        event = loader.get_event()
        done = None
        if isinstance(event, yaml.AliasEvent):
            node = anchors.get(event.anchor)
            if node is None:
                raise fail(f"invalid YAML: alias *{event.anchor} names no anchor before it", *_mark(event.start_mark))
            if id(node) not in weights:
                raise fail(f"invalid YAML: alias *{event.anchor} is inside the node it names",
                           *_mark(event.start_mark))
            expanded += weights[id(node)]
            if expanded > MAX_ALIAS_NODES:
                raise fail(f"YAML aliases expand to more than {MAX_ALIAS_NODES} nodes", *_mark(event.start_mark))
            done = attach(node, weights[id(node)])
        elif isinstance(event, yaml.ScalarEvent):
            node = yaml.ScalarNode(tag(event, yaml.ScalarNode, event.value), event.value, event.start_mark,
                                   event.end_mark, style=event.style)
            anchor(event, node)
            weights[id(node)] = 1
            done = attach(node, 1)
        elif isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            if len(stack) >= max_depth:
                raise fail(f"nested deeper than {max_depth} levels", *_mark(event.start_mark))
            kind = yaml.SequenceNode if isinstance(event, yaml.SequenceStartEvent) else yaml.MappingNode
            node = kind(tag(event, kind, None), [], event.start_mark, None, flow_style=event.flow_style)
            anchor(event, node)
            stack.append(_Frame(node))
        elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
            frame = stack.pop()
            frame.node.end_mark = event.end_mark
            weights[id(frame.node)] = frame.weight
            done = attach(frame.node, frame.weight)
        else:  # the parser emits nothing else inside a document
            raise fail(f"invalid YAML: unexpected {type(event).__name__}", *_mark(event.start_mark))
        if done is not None:
            return done
