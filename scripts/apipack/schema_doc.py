"""docs/configuration.md, generated from schemas/config.schema.yaml: every key, its type, default
and description, one table per top-level section. ``python -m apipack.schema_doc`` prints it
(``make docs`` writes it); tests/test_docs.py fails when the page differs from the schema."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import yaml

SCHEMA = Path(__file__).resolve().parents[2] / "schemas" / "config.schema.yaml"
HEADER = """# Configuration reference

Generated from `schemas/config.schema.yaml` by `make docs` (`python -m apipack.schema_doc`); do not
edit by hand: `tests/test_docs.py` fails when this page and the schema differ. A key left out of a
config file takes the default shown. `<name>` stands for a name you choose (a model, a training
set); `[]` for each item of a list. How config files combine: [usage.md](usage.md#the-config).
"""


def resolve(node: dict, schema: dict) -> dict:
    """A node with its ``$ref`` (``#/definitions/x``) replaced by the definition, merged."""
    if "$ref" not in node:
        return node
    target = schema["definitions"][node["$ref"].rsplit("/", 1)[1]]
    return {**resolve(target, schema), **{k: v for k, v in node.items() if k != "$ref"}}


def type_of(node: dict, schema: dict) -> str:
    """The value's type as written in a config: enums list their values, lists their items."""
    if "enum" in node:
        return " \\| ".join(f"`{v}`" for v in node["enum"])
    if "oneOf" in node:
        return " or ".join(type_of(resolve(n, schema), schema) for n in node["oneOf"])
    kind = node.get("type", "any")
    if kind == "array" and "items" in node:
        return f"list of {type_of(resolve(node['items'], schema), schema)}"
    return " or ".join(kind) if isinstance(kind, list) else kind


def keys(node: dict, schema: dict, path: str) -> Iterator[tuple[str, dict]]:
    """(dotted key, node) of every key under ``node``, depth first in the schema's order."""
    node = resolve(node, schema)
    items = node.get("items")
    if isinstance(items, dict) and "properties" in resolve(items, schema):
        yield from keys(items, schema, f"{path.removesuffix('.')}[].")
    for name, child in node.get("properties", {}).items():
        yield f"{path}{name}", resolve(child, schema)
        yield from keys(child, schema, f"{path}{name}.")
    extra = node.get("additionalProperties")
    if isinstance(extra, dict) and "properties" in resolve(extra, schema):
        yield from keys(extra, schema, f"{path}<name>.")


def cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def row(key: str, node: dict, schema: dict) -> str:
    default = f"`{json.dumps(node['default'])}`" if "default" in node else ""
    return f"| `{key}` | {type_of(node, schema)} | {default} | {cell(node.get('description', ''))} |"


def render(schema: dict) -> str:
    """The reference page: the schema's description, then a table per top-level section."""
    out = [HEADER, cell(schema.get("description", "")), ""]
    for name, node in schema["properties"].items():
        node = resolve(node, schema)
        required = " (required)" if name in schema.get("required", ()) else ""
        out += [f"## `{name}`{required}", "", "| key | type | default | description |", "|---|---|---|---|"]
        out.append(row(name, node, schema))
        out += [row(key, child, schema) for key, child in keys(node, schema, f"{name}.")]
        out.append("")
    return "\n".join(out)


def main() -> None:
    sys.stdout.write(render(yaml.safe_load(SCHEMA.read_text())))


if __name__ == "__main__":
    main()
