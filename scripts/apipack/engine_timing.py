"""Load time and items/s of a generation engine (or an API model) on a few test prompts: the
preflight's generation figures (docs/preflight.md)."""

from __future__ import annotations

import os
import time

from .files import read_jsonl


def measure_engine(engine_factory, prompt_files: list[str], items: int, batch_size: int, seed: int) -> dict:
    """Load time and items/s of an engine on the first ``items`` prompts of each file."""
    start = time.perf_counter()
    engine = engine_factory()
    load = time.perf_counter() - start
    prompts = [r["prompt"] for f in prompt_files for r in read_jsonl(f)[:items]]
    start = time.perf_counter()
    for i in range(0, len(prompts), batch_size):
        engine(prompts[i : i + batch_size], seed)
    seconds = time.perf_counter() - start
    return {"items": len(prompts), "seconds": seconds, "load_seconds": load, "items_per_s": len(prompts) / seconds}


def time_engine(config: dict, name: str, prompt_files: list[str], base: str | None, finetuned: str | None,
                gpus: int) -> dict:
    """``measure_engine`` for a local engine (hf, vllm) on the preflight's model, or for an API
    model (``name`` a models entry with source openai) on the same prompts; an API model whose
    key is not in the environment is skipped, and the report says so."""
    from dataclasses import replace
    from functools import partial

    from .generate import OpenAIEngine, make_engine
    from .settings import ApiRequest, GenerationSettings, ModelSource, connection

    gen = GenerationSettings.from_config(config)
    pf = config["preflight"]
    if name in ("hf", "vllm"):
        factory = partial(make_engine, base, finetuned, replace(gen, engine=name), gpus)
    else:
        entry = config["models"][name]
        key = entry.get("api_key_env", "OPENAI_API_KEY")
        if entry.get("require_key", True) and not os.environ.get(key):
            return {"engine": name, "api": True, "skipped": f"{key} is not set"}
        spec = {**ModelSource.from_config(config, name).param(), **connection(entry), "name": name}
        request = ApiRequest.from_config(config)
        factory = partial(OpenAIEngine, spec, request.max_tokens, request.temperature)
    measured = measure_engine(factory, prompt_files, pf["items"], gen.batch_size, config["generation"]["seeds"][0])
    return {"engine": name, "api": name not in ("hf", "vllm"), **measured}
