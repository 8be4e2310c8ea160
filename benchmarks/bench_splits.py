"""Preprocessing at full dataset scale: a synthetic API Pack corpus (10 languages, 1.13M instances,
realistic field lengths and API sizes) through what the splits, eval_prompts and train_set rules
do (validation, levels, manifests, statistics, 0-shot and random 3-shot test prompts, training
sets in both formats: every language whole, and the paper's Python and cURL subsets); embeddings
excluded. Each language runs in its own process, --jobs at a time, as `snakemake --cores 2`
would; prints instances per second and the peak memory of a job and of the jobs running together.

    python benchmarks/bench_splits.py [--per-language 113000] [--jobs 2] [--tokenizer DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from apipack.data import api_file_name, format_output, load_instances  # noqa: E402
from apipack.eval_prompts import examples_for  # noqa: E402
from apipack.files import write_json, write_jsonl  # noqa: E402
from apipack.languages import LANG_KEYS, LANGUAGES  # noqa: E402
from apipack.prompts import (  # noqa: E402
    group_by,
    make_truncator,
    sample_items,
    select_subset,
    test_records,
    training_records,
)
from apipack.settings import SplitSettings  # noqa: E402
from apipack.splits import make_splits, manifest, order_instances, statistics  # noqa: E402

WORDS = ("list get create update delete the a of for with user account item order invoice "
         "project repository file message channel token report metric alert policy").split()
# Training sets: every language whole (the all-1M mixture); Python and cURL also the paper's
# scaling subsets.
SUBSETS = {"python": (10_000, 20_000, 40_000, 80_000, "all"), "curl": (20_000, 40_000, 80_000, "all")}


def defaults() -> dict:
    """The schema's defaults (splits and prompts sections), as a run with an empty config sees them."""
    from snakemake.utils import validate

    cfg: dict = {"experiments": [{"model": "smollm2", "train_set": "base", "languages": ["python"]}]}
    validate(cfg, str(ROOT / "schemas/config.schema.yaml"))
    return cfg


def text(rng: random.Random, chars: int) -> str:
    out = []
    while sum(map(len, out)) + len(out) < chars:
        out.append(rng.choice(WORDS))
    return " ".join(out)


def synthetic(lang: str, n: int, seed: int) -> list[dict]:
    """``n`` valid instances: API sizes log-normal (median ~40), descriptions ~600 characters,
    instructions ~110, API calls ~650 (the published files' medians)."""
    rng, label, out, api = random.Random(f"{seed}-{lang}"), LANGUAGES[lang].label, [], 0
    while len(out) < n:
        size = min(n - len(out), max(1, int(rng.lognormvariate(3.7, 1.0))))
        name, desc, api = f"API {api}", text(rng, 600), api + 1
        for i in range(size):
            path = f"/v1/{text(rng, 20).replace(' ', '/')}/{i}"
            call = f"curl --request GET --url 'https://api{api}.example.com{path}' " + text(rng, 560)
            out.append({
                "api_name": name, "api_description": desc,
                "api_call_data": {"api_call": call, "lang": label, "functionality": text(rng, 40),
                                  "api_arguments": {}, "description": text(rng, 80), "domain": ["x"],
                                  "path": path},
                "instruction": text(rng, 110), "instruction_test": text(rng, 110), "input": "",
                "output": format_output(["x"], call, f"api{api}.example.com", label),
                "unique_id": f"{api_file_name(name)}_{i}",
            })
    return out


def job(lang: str, n: int, seed: int, workdir: str, tokenizer: str | None) -> dict:
    """One language: write its file, then time the rules' work on it."""
    cfg, folder = defaults(), Path(workdir) / lang
    folder.mkdir(parents=True)
    raw = folder / f"total_data_cleaned_{lang}.json"
    with open(raw, "w", encoding="utf-8") as fh:
        json.dump(synthetic(lang, n, seed), fh, ensure_ascii=False)
    start, cpu0 = time.perf_counter(), _cpu()
    splits_cfg, prompts_cfg = cfg["splits"], cfg["prompts"]
    total = order_instances(load_instances(raw, lang).instances, splits_cfg["order"], seed)
    splits = make_splits(total, SplitSettings.from_config(cfg))
    write_json(folder / "train.json", splits.train, indent=None)
    write_json(folder / "manifest.json", manifest(splits))
    stats = statistics(lang, splits)
    t_splits = time.perf_counter()
    trunc = make_truncator([tokenizer] if tokenizer else [])
    by_api, k = group_by(total, "api_name"), prompts_cfg["k"]
    for level, items in splits.levels.items():
        items = sample_items(items, cfg["evaluation"]["max_items"], seed, lang, str(level))
        for mode in ("zero_shot", "random_3shot"):
            examples = examples_for(mode, by_api, k, seed, None)
            recs = test_records(items, mode, examples, trunc, prompts_cfg["description_tokens"],
                                prompts_cfg["fewshot_tokens"], lang, level)
            write_jsonl(folder / f"L{level}_{mode}.jsonl", recs)
    t_prompts = time.perf_counter()
    by_desc, n_records = group_by(splits.train, "api_description"), 0
    for size in SUBSETS.get(lang, ("all",)):
        subset = select_subset(splits.train, size, "first", seed)
        recs = training_records(subset, by_desc, ["simple", "fewshot"], trunc,
                                prompts_cfg["description_tokens"], prompts_cfg["fewshot_tokens"], k, seed)
        n_records += write_jsonl(folder / f"train_{size}.jsonl", recs)
    end = time.perf_counter()
    shutil.rmtree(folder)  # ~0.5 GB of prompts per language
    return {"lang": lang, "instances": len(total), "train": len(splits.train),
            "test": sum(s["instances"] for s in stats if s["split"] != "train"),
            "training_records": n_records, "splits_s": t_splits - start, "test_prompts_s": t_prompts - t_splits,
            "train_sets_s": end - t_prompts, "seconds": end - start, "cpu_s": _cpu() - cpu0,
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _cpu() -> float:
    """CPU seconds of this process so far (unlike wall time, not inflated by other load)."""
    use = resource.getrusage(resource.RUSAGE_SELF)
    return use.ru_utime + use.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--per-language", type=int, default=113_000)
    ap.add_argument("--languages", nargs="+", default=list(LANG_KEYS))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--tokenizer", default=None, help="model folder whose tokenizer truncates; default 4 chars/token")
    ap.add_argument("--csv", type=Path, default=None)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp, ProcessPoolExecutor(a.jobs, max_tasks_per_child=1) as pool:
        start = time.perf_counter()
        futures = [pool.submit(job, lang, a.per_language, a.seed, tmp, a.tokenizer) for lang in a.languages]
        rows = [f.result() for f in futures]
        wall = time.perf_counter() - start
    df = pd.DataFrame(rows)
    print(df.round(1).to_string(index=False))
    n, work = df["instances"].sum(), df["seconds"].sum()
    print(f"{n:,} instances in {len(df)} languages; rule work {work:.0f} s of one core, "
          f"{n / work:,.0f} instances/s per job; wall {wall:.0f} s with {a.jobs} jobs "
          f"(including writing the synthetic files)")
    print(f"CPU {df['cpu_s'].sum():.0f} s in all, so about {df['cpu_s'].sum() / a.jobs / 60:.1f} min of rule work "
          f"on {a.jobs} idle cores; load average at the end {os.getloadavg()[0]:.1f}")
    print(f"peak memory: {df['peak_mb'].max():,.0f} MB per job, "
          f"{df['peak_mb'].nlargest(a.jobs).sum():,.0f} MB for {a.jobs} jobs together")
    if a.csv:
        a.csv.parent.mkdir(parents=True, exist_ok=True)
        df.to_csv(a.csv, index=False)


if __name__ == "__main__":
    main()
