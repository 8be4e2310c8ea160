"""Reading one untrusted OpenAPI spec file under bounds (``data.build.limits``, docs/specs.md).

What could make a small file expensive is checked before anything expands it: the file size;
for YAML, in one pass over the parser's events, the nesting depth, the values and bytes the
document holds once its aliases are expanded, and aliases to a node that contains them; for
JSON (no aliases), the C decoder's own recursion bound, then a walk without recursion. A spec
that fails a check raises ``SpecRejected`` with a reason a person understands.
"""

from __future__ import annotations

import json
import math
import re
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from .settings import SpecLimits

METHODS = ("get", "put", "post", "delete", "options", "head", "patch")  # as openapi_snippets.js
YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml where PyYAML has it
# C0 and C1 controls, line/paragraph separators, bidirectional overrides and isolates, lone surrogates
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
CONTROL_RUN = re.compile(CONTROL.pattern + "+")
MB = 2**20


class SpecRejected(ValueError):
    """A spec that is not used; the message is the reason."""


def printable(text: str) -> str:
    """``text`` with control characters escaped (``\\n``, ``\\x00``): safe in a log line or CSV cell."""
    return CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def clean_name(text: str) -> str:
    """A name from a spec (title, provider): each run of control characters becomes one space."""
    return CONTROL_RUN.sub(" ", text).strip()


def read_spec(path: Path, limits: SpecLimits) -> dict:
    """The spec in ``path`` (JSON if named ``*.json``, else YAML), checked against ``limits``."""
    text = _read_text(path, limits)
    spec = _load_json(text, limits) if path.suffix.lower() == ".json" else _load_yaml(text, limits)
    _check_values(spec, limits)
    problem = _spec_problem(spec)
    if problem:
        raise SpecRejected(problem)
    n_ops = count_operations(spec)
    if n_ops > limits.operations:
        raise SpecRejected(f"{n_ops} operations, over the limit of {limits.operations} (data.build.limits.operations)")
    return spec


def count_operations(spec: dict) -> int:
    """Operations (path x method) as openapi_snippets.js finds them."""
    items = [item for item in spec["paths"].values() if isinstance(item, dict)]
    return sum(isinstance(item.get(m), dict) for item in items for m in METHODS)


def _too_big(what: str, limits: SpecLimits) -> str:
    return f"{what}, over the limit of {limits.file_mb:g} MB (data.build.limits.file_mb)"


def _too_deep(limits: SpecLimits) -> str:
    return f"nested deeper than {limits.depth} levels (data.build.limits.depth)"


def _too_many(limits: SpecLimits) -> str:
    return f"more than {limits.nodes} values, each YAML alias counted as a copy (data.build.limits.nodes)"


def _read_text(path: Path, limits: SpecLimits) -> str:
    """The file's text, read no further than the size limit; only regular files are opened."""
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise SpecRejected("not a regular file")
        if info.st_size > limits.file_bytes:
            raise SpecRejected(_too_big(f"{info.st_size / MB:.1f} MB", limits))
        with path.open("rb") as fh:
            data = fh.read(limits.file_bytes + 1)
    except OSError as err:
        raise SpecRejected(f"cannot be read: {err.strerror}") from err
    if len(data) > limits.file_bytes:  # grew since stat, or a size the file system does not know
        raise SpecRejected(_too_big(f"more than {limits.file_mb:g} MB", limits))
    if not data.strip():
        raise SpecRejected("empty file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise SpecRejected(f"unparsable: {err}") from err


def _no_constant(name: str) -> None:
    raise SpecRejected(f"unparsable: {name} is not a JSON number")


def _load_json(text: str, limits: SpecLimits) -> Any:
    try:
        return json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as err:
        raise SpecRejected(f"unparsable: {err}") from err
    except RecursionError as err:  # the C decoder stops at Python's recursion limit
        raise SpecRejected(_too_deep(limits)) from err


def _load_yaml(text: str, limits: SpecLimits) -> Any:
    try:
        _scan_yaml(text, limits)
        return yaml.load(text, Loader=YAML_LOADER)
    except yaml.YAMLError as err:
        raise SpecRejected(f"unparsable: {printable(_yaml_problem(err))}") from err
    except RecursionError as err:  # e.g. a long chain of merge keys
        raise SpecRejected(_too_deep(limits)) from err


def _yaml_problem(err: yaml.YAMLError) -> str:
    """The problem and where it is, without the excerpt of the file."""
    if isinstance(err, yaml.MarkedYAMLError) and err.problem:
        mark = err.problem_mark
        return err.problem + (f" (line {mark.line + 1}, column {mark.column + 1})" if mark else "")
    return str(err).splitlines()[0]


def _scan_yaml(text: str, limits: SpecLimits) -> None:
    """Check depth, expanded size and recursion on the parser's events, before any node is built."""
    expands: dict[str, tuple[int, int]] = {}  # anchor -> (values, bytes) of what it names
    opened: list[tuple[str | None, int, int]] = []  # collections being read: anchor, totals at start
    values = size = 0
    for event in yaml.parse(text, Loader=YAML_LOADER):
        if isinstance(event, yaml.AliasEvent):
            if any(anchor == event.anchor for anchor, _, _ in opened):
                raise SpecRejected(f"recursive YAML alias *{printable(event.anchor)}: a node that contains itself")
            add = expands.get(event.anchor, (0, 0))  # an undefined alias is the loader's error
        elif isinstance(event, yaml.ScalarEvent):
            add = (1, len(event.value) + 1)
            if event.anchor:
                expands[event.anchor] = add
        elif isinstance(event, yaml.CollectionStartEvent):
            opened.append((event.anchor, values, size))
            if len(opened) > limits.depth:
                raise SpecRejected(_too_deep(limits))
            add = (1, 2)
        elif isinstance(event, yaml.CollectionEndEvent):
            anchor, start_values, start_size = opened.pop()
            if anchor:
                expands[anchor] = (values - start_values, size - start_size)
            continue
        else:  # stream and document events
            continue
        values, size = values + add[0], size + add[1]
        if values > limits.nodes:
            raise SpecRejected(_too_many(limits))
        if size > limits.file_bytes:
            raise SpecRejected(_too_big("its YAML aliases expand it", limits))


def _check_values(spec: Any, limits: SpecLimits) -> None:
    """Depth, value count and finite numbers of the parsed spec, walked without recursion."""
    stack, count = [(spec, 1)], 0
    while stack:
        value, depth = stack.pop()
        count += 1
        if isinstance(value, dict | list):
            if depth > limits.depth:
                raise SpecRejected(_too_deep(limits))
            children = list(value.values()) if isinstance(value, dict) else value
            count += len(value) if isinstance(value, dict) else 0  # the keys
            stack.extend((child, depth + 1) for child in children)
        elif isinstance(value, float) and not math.isfinite(value):
            raise SpecRejected("holds a number that is not finite (NaN or infinity), which JSON cannot carry")
        if count > limits.nodes:
            raise SpecRejected(_too_many(limits))


def _spec_problem(spec: object) -> str | None:
    if not isinstance(spec, dict):
        return "top level is not a mapping"
    if "openapi" not in spec and "swagger" not in spec:
        return "neither 'openapi' nor 'swagger' version field"
    if not isinstance(spec.get("info"), dict) or not clean_name(str(spec["info"].get("title") or "")):
        return "missing info.title"
    if not isinstance(spec["info"]["title"], str):
        return "info.title is not a string"
    if not isinstance(spec.get("paths"), dict) or not spec["paths"]:
        return "missing or empty 'paths'"
    return None
