"""Spec documents parsed and checked with hard limits, before anything else looks at them.

Why not ``yaml.safe_load``: it expands aliases into real copies (a 556-byte "billion
laughs" document grows to gigabytes), recurses once per nesting level (50k-deep lists end
in RecursionError), and builds dates, sets and binary blobs that are not plain data. Here
the YAML *event stream* is read one event at a time and a plain tree is built by hand:

* the text is at most ``MAX_SPEC_BYTES``; nesting at most ``MAX_DEPTH`` levels;
* at most ``MAX_NODES`` nodes, counting every alias as the full size of what it names, so
  alias expansion is bounded before any copy is made (the result shares nothing);
* an alias to a collection that is still open (a recursive alias) is refused;
* only plain scalars (str, int, float, bool, null) and the core map/seq tags are allowed:
  ``!!binary``, ``!!set``, ``!!timestamp`` (a bare date), ``!!python/...`` are refused.

Plain scalars resolve exactly as ``yaml.safe_load`` resolves them (same resolver and
constructors), so every valid spec reads the same as before. Merge keys (``<<: *base``)
keep working. Errors are ``SpecError`` naming the dotted path of the problem.

``check_plain`` applies the same limits to a document that arrives already parsed (a dict
from the wire or from Python).
"""

from __future__ import annotations

import math
import re
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import ScalarNode
from yaml.resolver import Resolver

from .errors import SpecError

MAX_SPEC_BYTES = 1 << 20  # 1 MiB of YAML/JSON text
MAX_DEPTH = 32  # nesting levels (a real spec uses about 6)
MAX_NODES = 50_000  # scalars + collections, with aliases counted at their expanded size
MAX_KEY_CHARS = 256  # a mapping key longer than this is not a field name

_CORE = "tag:yaml.org,2002:"
_SCALAR_TAGS = {_CORE + t for t in ("str", "int", "float", "bool", "null")}
_MAP_TAGS = {None, "!", _CORE + "map"}
_SEQ_TAGS = {None, "!", _CORE + "seq"}
_RESOLVER = Resolver()
_CONSTRUCTOR = SafeConstructor()
_BUILD = {
    _CORE + "str": lambda node: node.value,
    _CORE + "int": _CONSTRUCTOR.construct_yaml_int,
    _CORE + "float": _CONSTRUCTOR.construct_yaml_float,
    _CORE + "bool": _CONSTRUCTOR.construct_yaml_bool,
    _CORE + "null": _CONSTRUCTOR.construct_yaml_null,
}
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_DECIMAL = re.compile(r"-?(0|[1-9][0-9]{0,17})")  # no sign '+', no leading zero (octal), no '_', no ':'



class _Where:
    """The dotted path of the current node, formatted only when an error needs it."""

    __slots__ = ("path", "what")

    def __init__(self, path: list, what: str) -> None:
        self.path, self.what = path, what  # the live path: read when an error is raised

    def __str__(self) -> str:
        return _dotted(self.path) if self.path else self.what


def _dotted(path: list) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "spec"


class _Frame:
    """A mapping or sequence being built."""

    __slots__ = ("value", "is_map", "key", "has_key", "anchor", "nodes", "merges", "path_key")

    def __init__(self, is_map: bool, anchor: str | None) -> None:
        self.value: Any = {} if is_map else []
        self.is_map, self.anchor = is_map, anchor
        self.key: Any = None
        self.has_key = False
        self.nodes = 1
        self.merges: list[dict] = []
        self.path_key: Any = None


def _scalar(event: Any, where: Any) -> tuple[Any, str]:
    """(value, resolved tag) of a scalar event, refusing tags that build more than plain data."""
    tag = event.tag
    value = event.value
    if tag is None and event.implicit[0] and _DECIMAL.fullmatch(value):  # fast path: what YAML 1.1 reads as int
        return int(value), _CORE + "int"
    if tag in (None, "!"):
        tag = _RESOLVER.resolve(ScalarNode, event.value, event.implicit)  # as yaml's composer does
    if tag == _CORE + "merge":
        return None, tag
    if tag not in _SCALAR_TAGS:
        what = "a date or time (quote it to keep it as text)" if tag == _CORE + "timestamp" else f"tag {tag}"
        raise SpecError(str(where), f"YAML {what} is not allowed: specs hold plain strings, numbers, booleans and null")
    try:
        return _BUILD[tag](ScalarNode(tag, event.value)), tag
    except (ValueError, OverflowError, yaml.YAMLError):
        raise SpecError(str(where), f"not a valid {tag[len(_CORE):]}") from None


def parse_yaml(text: str | bytes, what: str = "spec") -> Any:
    """The plain tree (dict/list/str/int/float/bool/None) of one YAML or JSON document, within limits."""
    if isinstance(text, bytes):
        if len(text) > MAX_SPEC_BYTES:
            raise SpecError(what, f"is {len(text)} bytes; the limit is {MAX_SPEC_BYTES}")
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise SpecError(what, "is not UTF-8 text") from None
    if len(text) > MAX_SPEC_BYTES or len(text.encode("utf-8", "surrogatepass")) > MAX_SPEC_BYTES:
        raise SpecError(what, f"is larger than the limit of {MAX_SPEC_BYTES} bytes")
    stack: list[_Frame] = []
    path: list = []
    anchors: dict[str, tuple[Any, int]] = {}  # anchor -> (value, expanded node count)
    open_anchors: set[str] = set()
    total = 0
    docs = 0
    root: Any = None
    where = _Where(path, what)
    try:
        for event in yaml.parse(text, Loader=_Loader):
            if isinstance(event, yaml.DocumentStartEvent):
                docs += 1
                if docs > 1:
                    raise SpecError(what, "must hold one YAML document, found several")
                continue
            if isinstance(event, (yaml.StreamStartEvent, yaml.StreamEndEvent, yaml.DocumentEndEvent)):
                continue
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                is_map = isinstance(event, yaml.MappingStartEvent)
                if event.tag not in (_MAP_TAGS if is_map else _SEQ_TAGS):
                    raise SpecError(str(where), f"YAML tag {event.tag} is not allowed: specs hold plain mappings and lists")
                if len(stack) >= MAX_DEPTH:
                    raise SpecError(str(where), f"nested more than {MAX_DEPTH} levels deep")
                total += 1
                if total > MAX_NODES:
                    raise SpecError(str(where), f"has more than {MAX_NODES} values (aliases count at their full size)")
                frame = _Frame(is_map, event.anchor)
                if event.anchor is not None:
                    open_anchors.add(event.anchor)
                stack.append(frame)
                path.append("")  # placeholder until the first key / index
                if not is_map:
                    path[-1] = 0
                continue
            if isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                frame = stack.pop()
                path.pop()
                # a finished collection is reported where it sits (``where`` follows the live path)
                value = frame.value
                if frame.is_map and frame.merges:
                    merged: dict = {}
                    for m in frame.merges:
                        for k, v in m.items():
                            merged.setdefault(k, v)
                    merged.update(value)
                    value = merged
                if frame.anchor is not None:
                    open_anchors.discard(frame.anchor)
                    anchors[frame.anchor] = (value, frame.nodes)
                root = _attach(stack, path, value, frame.nodes, where)
                continue
            if isinstance(event, yaml.AliasEvent):
                if event.anchor in open_anchors:
                    raise SpecError(str(where), f"recursive alias *{event.anchor} (it refers to itself)")
                if event.anchor not in anchors:
                    raise SpecError(str(where), f"undefined alias *{event.anchor}")
                value, nodes = anchors[event.anchor]
                total += nodes
                if total > MAX_NODES:
                    raise SpecError(str(where), f"has more than {MAX_NODES} values once aliases are expanded")
                root = _attach(stack, path, value, nodes, where)
                continue
            if isinstance(event, yaml.ScalarEvent):
                total += 1
                if total > MAX_NODES:
                    raise SpecError(str(where), f"has more than {MAX_NODES} values")
                value, tag = _scalar(event, where)
                if tag == _CORE + "merge" and not (stack and stack[-1].is_map and not stack[-1].has_key):
                    raise SpecError(str(where), "a merge key (<<) is only allowed as a mapping key")
                if event.anchor is not None:
                    anchors[event.anchor] = (value, 1)
                root = _attach(stack, path, value, 1, where, is_merge_key=tag == _CORE + "merge")
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or "syntax error"
        raise SpecError(what, f"not valid YAML/JSON{at}: {problem}") from None
    return _copy_shared(root)


_MERGE = object()  # marker: the pending key of a frame is a merge key (<<)


def _attach(stack: list[_Frame], path: list, value: Any, nodes: int, where: Any,
            is_merge_key: bool = False) -> Any:
    """Put a finished value into the collection being built; returns it when it is the root."""
    if not stack:
        return value
    parent = stack[-1]
    parent.nodes += nodes
    if not parent.is_map:
        parent.value.append(value)
        path[-1] = len(parent.value)
        return None
    if not parent.has_key:
        if is_merge_key:
            parent.key, parent.has_key = _MERGE, True
            return None
        if isinstance(value, (dict, list)):
            raise SpecError(str(where), "mapping keys must be plain scalars, not mappings or lists")
        if isinstance(value, str) and len(value) > MAX_KEY_CHARS:
            raise SpecError(str(where), f"a key longer than {MAX_KEY_CHARS} characters")
        if isinstance(value, float) and math.isnan(value):
            raise SpecError(str(where), "a key that is NaN")
        parent.key, parent.has_key = value, True
        path[-1] = value
        return None
    if parent.key is _MERGE:
        sources = value if isinstance(value, list) else [value]
        if not all(isinstance(s, dict) for s in sources):
            raise SpecError(str(where), "a merge key (<<) needs a mapping or a list of mappings")
        parent.merges.extend(sources)
    else:
        parent.value[parent.key] = value
    parent.key, parent.has_key = None, False
    return None


def _copy_shared(root: Any) -> Any:
    """Give every alias its own copy (bounded: the node count was checked with aliases expanded)."""
    if not isinstance(root, (dict, list)):
        return root
    out: Any = {} if isinstance(root, dict) else []
    work = [(root, out)]
    while work:
        src, dst = work.pop()
        items = src.items() if isinstance(src, dict) else enumerate(src)
        for k, v in items:
            if isinstance(v, (dict, list)):
                child: Any = {} if isinstance(v, dict) else []
                work.append((v, child))
                v = child
            if isinstance(dst, dict):
                dst[k] = v
            else:
                dst.append(v)
    return out


_PLAIN_SCALARS = (str, int, float, bool, type(None))


def check_plain(doc: Any, what: str = "spec") -> None:
    """The limits of ``parse_yaml`` for a document that arrives already built (a dict from the wire).

    Only dict/list/tuple/str/int/float/bool/None; at most ``MAX_DEPTH`` levels, ``MAX_NODES``
    values (a structure that refers to itself is caught by the depth limit) and
    ``MAX_SPEC_BYTES`` characters of strings. Mapping keys are plain scalars.
    """
    total = 0
    chars = 0
    work: list[tuple[Any, int, tuple]] = [(doc, 0, ())]
    while work:
        node, depth, path = work.pop()
        total += 1
        if total > MAX_NODES:
            raise SpecError(what, f"has more than {MAX_NODES} values")
        if isinstance(node, (dict, list, tuple)):
            if depth >= MAX_DEPTH:
                raise SpecError(_dotted(list(path)) if path else what, f"nested more than {MAX_DEPTH} levels deep")
            if isinstance(node, dict):
                for k, v in node.items():
                    if not isinstance(k, _PLAIN_SCALARS) or (isinstance(k, str) and len(k) > MAX_KEY_CHARS):
                        raise SpecError(_dotted(list(path)) if path else what,
                                        f"has a key that is not a field name: {type(k).__name__}")
                    work.append((v, depth + 1, path + (k if isinstance(k, str) else str(k),)))
            else:
                work.extend((v, depth + 1, path + (i,)) for i, v in enumerate(node))
        elif isinstance(node, str):
            chars += len(node)
            if chars > MAX_SPEC_BYTES:
                raise SpecError(what, f"holds more than {MAX_SPEC_BYTES} characters of text")
        elif not isinstance(node, _PLAIN_SCALARS):
            raise SpecError(_dotted(list(path)) if path else what,
                            f"must be plain data (str, number, bool, null, list, mapping), got {type(node).__name__}")
