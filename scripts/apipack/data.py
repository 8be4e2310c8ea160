"""The published API Pack instance format: build, validate and load ``total_data_cleaned_{lang}.json``.

Format (docs/reference.md 1.1)::

    {"api_name", "api_description",
     "api_call_data": {"api_call", "lang", "functionality", "api_arguments", "description",
                       "domain", "path"},
     "instruction", "instruction_test", "input", "output", "unique_id"}

``output`` is ``**domain**:{domain}\\n**api_call**:{call}\\n**api_provider**:{provider}\\n**lang**:{lang}``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .languages import BY_LABEL, language

Policy = Literal["error", "skip"]

TOP_FIELDS: dict[str, type] = {
    "api_name": str,
    "api_description": str,
    "api_call_data": dict,
    "instruction": str,
    "instruction_test": str,
    "input": str,
    "output": str,
    "unique_id": str,
}
CALL_FIELDS: dict[str, type] = {
    "api_call": str,
    "lang": str,
    "functionality": str,
    "api_arguments": dict,
    "description": str,
    "domain": list,
    "path": str,
}
OUTPUT_RE = re.compile(
    r"\A\*\*domain\*\*:(?P<domain>.*?)\n\*\*api_call\*\*:(?P<api_call>.*)\n"
    r"\*\*api_provider\*\*:(?P<provider>.*?)\n\*\*lang\*\*:(?P<lang>[^\n]*)\Z",
    re.DOTALL,
)
DEFAULT_MAX_FIELD_CHARS = 200_000


class DataError(ValueError):
    """Bad input: the message names the file, the record and the field."""


@dataclass
class Reject:
    file: str
    record: int | None
    field: str
    reason: str
    unique_id: str | None = None

    def message(self) -> str:
        where = f"record {self.record}" if self.record is not None else "file"
        uid = f" (unique_id {self.unique_id})" if self.unique_id else ""
        return f"{self.file}: {where}{uid}: field '{self.field}': {self.reason}"


@dataclass
class LoadResult:
    instances: list[dict]
    rejects: list[Reject] = field(default_factory=list)


def format_output(domain: list[str], api_call: str, provider: str, lang_label: str) -> str:
    """The gold ``output`` string; ``domain`` is rendered as a Python list repr, as published."""
    return (
        f"**domain**:{domain!r}\n**api_call**:{api_call}\n"
        f"**api_provider**:{provider}\n**lang**:{lang_label}"
    )


def api_file_name(api_name: str) -> str:
    """Per-API file name used in ``unique_id`` (the reference replaces ``/`` and spaces)."""
    return api_name.replace("/", "-").replace(" ", "-") + ".json"


def _check_fields(
    obj: dict, fields: dict[str, type], prefix: str, max_chars: int
) -> tuple[str, str] | None:
    """Presence, type and length of each field of ``fields`` in ``obj``."""
    for name, typ in fields.items():
        key = prefix + name
        if name not in obj:
            return key, "missing"
        if not isinstance(obj[name], typ):
            return key, f"expected {typ.__name__}, got {type(obj[name]).__name__}"
        if typ is str and len(obj[name]) > max_chars:
            return key, f"{len(obj[name])} characters, over the limit of {max_chars}"
    return None


def check_instance(
    rec: Any, lang_label: str | None = None, max_chars: int = DEFAULT_MAX_FIELD_CHARS
) -> tuple[str, str] | None:
    """Return ``(field, reason)`` for the first problem of one record, or None if it is valid."""
    if not isinstance(rec, dict):
        return "<record>", f"expected an object, got {type(rec).__name__}"
    problem = _check_fields(rec, TOP_FIELDS, "", max_chars)
    if problem is None:
        problem = _check_fields(rec["api_call_data"], CALL_FIELDS, "api_call_data.", max_chars)
    if problem is not None:
        return problem
    call = rec["api_call_data"]
    if call["lang"] not in BY_LABEL:
        return "api_call_data.lang", f"unknown language label {call['lang']!r}"
    if lang_label is not None and call["lang"] != lang_label:
        return "api_call_data.lang", f"label {call['lang']!r} in a file of {lang_label!r}"
    for name in ("instruction", "instruction_test", "unique_id"):
        if not rec[name].strip():
            return name, "empty"
    if not rec["api_description"].strip():
        return "api_description", "empty"
    if not call["api_call"].strip():
        return "api_call_data.api_call", "empty"
    if OUTPUT_RE.match(rec["output"]) is None:
        return "output", "not in the **domain**/**api_call**/**api_provider**/**lang** layout"
    return None


def _decode(path: Path) -> str:
    raw = path.read_bytes()
    if not raw.strip():
        raise DataError(f"{path}: file: empty file, expected a JSON list of instances")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: file: invalid UTF-8 at byte {err.start}") from err


def load_instances(
    path: str | Path,
    lang: str | None = None,
    on_bad_record: Policy = "error",
    max_chars: int = DEFAULT_MAX_FIELD_CHARS,
) -> LoadResult:
    """Load and validate one dataset file.

    With ``on_bad_record="error"`` the first bad record raises :class:`DataError`; with
    ``"skip"`` bad records (and duplicate unique_ids) are returned as rejects.
    File-level problems (unreadable, truncated JSON, not a list) always raise.
    """
    path = Path(path)
    text = _decode(path)
    try:
        records = json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(
            f"{path}: file: invalid JSON at line {err.lineno} column {err.colno}: {err.msg}"
            " (truncated or corrupt download?)"
        ) from err
    if not isinstance(records, list):
        raise DataError(f"{path}: file: expected a JSON list, got {type(records).__name__}")
    label = language(lang).label if lang else None
    result = LoadResult(instances=[])
    seen: set[str] = set()
    for i, rec in enumerate(records):
        problem = check_instance(rec, label, max_chars)
        uid = rec.get("unique_id") if isinstance(rec, dict) else None
        uid = uid if isinstance(uid, str) else None
        if problem is None and uid in seen:
            problem = ("unique_id", f"duplicate unique_id {uid!r}")
        if problem is not None:
            reject = Reject(str(path), i, problem[0], problem[1], uid)
            if on_bad_record == "error":
                raise DataError(reject.message())
            result.rejects.append(reject)
            continue
        seen.add(uid)
        result.instances.append(rec)
    return result


def parse_output(output: str) -> dict[str, str] | None:
    """Split a gold ``output`` string into domain, api_call, provider and lang."""
    m = OUTPUT_RE.match(output)
    return m.groupdict() if m else None
