"""The preflight report: the figures measured on this machine and the projected cost of a grid
there (apipack.cost for the arithmetic; docs/preflight.md)."""

from __future__ import annotations

import datetime
import json
from dataclasses import asdict
from pathlib import Path

import pandas as pd
import yaml

from . import tokenized
from .config import experiment_cells
from .cost import FORMULAS, Hardware, TrainJob, generation_cost, llama_shape, mfu, totals, train_cost
from .measure import dir_bytes, newest_checkpoint_bytes, tokenized_set

RESOURCES = Path(__file__).resolve().parents[2] / "resources"
KEPT_CHECKPOINTS = 2  # apipack.train: save_total_limit; removed after success unless finetune.keep_checkpoints
BASE_BYTES_PER_PARAM = 2  # the hub's bf16/fp16 safetensors of the paper's base models
GB = 1e9


def preflight_job(config: dict) -> tuple[str, str]:
    """(model, train set) of the first experiment that fine-tunes a local model."""
    for exp in config["experiments"]:
        if exp["train_set"] != "base" and config["models"][exp["model"]]["source"] != "openai":
            return exp["model"], exp["train_set"]
    raise ValueError("preflight: no experiment fine-tunes a model (experiments[*].train_set is base everywhere)")


def training(curve_csv: str, benchmark_tsv: str, shape, seq_tokens: float, peak: float) -> dict:
    """Throughput, MFU, memory and times of the preflight's training job (the run that finished)."""
    curve = pd.read_csv(curve_csv)
    timing_file = Path(curve_csv).with_suffix(".timing.json")
    timing = json.loads(timing_file.read_text()) if timing_file.is_file() else {}
    processes = timing.get("processes", 1)
    per_gpu = float(curve["tokens_per_second"].iloc[-1]) / processes
    flops = shape.flops_per_token(seq_tokens)
    bench = pd.read_csv(benchmark_tsv, sep="\t").iloc[-1]
    return {
        "processes": processes,
        "steps": int(curve["step"].max()),
        "tokens_per_s": per_gpu * processes,
        "tokens_per_s_per_gpu": per_gpu,
        "mean_sequence_tokens": seq_tokens,
        "flops_per_token": flops,
        "mfu": mfu(per_gpu, flops, peak),
        "peak_memory_bytes": timing.get("peak_memory_bytes"),
        "peak_memory_kind": timing.get("peak_memory_kind", "not recorded"),
        "job_max_rss_mb": float(bench["max_rss"]),
        "job_seconds": float(bench["s"]),
        "load_seconds": timing.get("load_seconds"),
        "save_seconds": timing.get("save_seconds"),
    }


def published() -> dict:
    return yaml.safe_load((RESOURCES / "published_dataset.yaml").read_text())


def model_config(name: str, grid: dict, results: Path) -> dict:
    """config.json of a grid model: its prepared folder if there is one, else resources/model_configs.yaml."""
    local = results / "models/base" / name / "config.json"
    if local.is_file():
        return json.loads(local.read_text())
    repo = grid["models"][name].get("repo", name)
    known = yaml.safe_load((RESOURCES / "model_configs.yaml").read_text())
    if repo not in known:
        raise ValueError(f"{name} ({repo}): no results/models/base/{name}/config.json and not in "
                         f"{RESOURCES / 'model_configs.yaml'}; prepare the model or add its config there")
    return known[repo]


def grid_job(model: str, train_set: str, grid: dict, results: Path, seq_tokens: float) -> TrainJob:
    """A training job of the grid: its tokenized set if it exists, else the published statistics."""
    found = tokenized_set(results.parent / tokenized.folder(grid["models"], model, train_set))
    if found:
        return TrainJob(model, train_set, found["sequences"], found["tokens"], "tokenized set (measured)")
    spec, counts = grid["train_sets"][train_set], published()["train_instances"]
    instances = sum(counts[lang] if n == "all" else min(n, counts[lang]) for lang, n in spec["mixture"].items())
    sequences = instances * len(spec["formats"])
    return TrainJob(model, train_set, sequences, sequences * seq_tokens, "published statistics (projected)")


def projection(grid: dict, results: Path, hw: Hardware, seq_tokens: float) -> dict:
    """Training and generation GPU-hours, node-hours and disk of every job of the grid."""
    ft, gen = grid["finetune"], grid["generation"]
    gpus, gen_gpus = max(1, ft["gpus"]), max(1, gen["gpus"])  # 0: one process on the CPU
    cells = experiment_cells(grid)
    pairs = sorted({(c["model"], c["train_set"]) for c in cells if c["train_set"] != "base"})
    shapes = {m: llama_shape(model_config(m, grid, results))
              for m in {c["model"] for c in cells} if grid["models"][m]["source"] != "openai"}
    jobs = [train_cost(grid_job(m, t, grid, results, seq_tokens), shapes[m], hw, ft["epochs"], gpus,
                       ft["nodes"], KEPT_CHECKPOINTS) for m, t in pairs]
    items = grid["evaluation"]["max_items"] * len(gen["seeds"])
    generation = []
    for model in sorted({c["model"] for c in cells}):
        n = items * sum(c["model"] == model for c in cells)
        if model in shapes:
            generation.append({"model": model, **generation_cost(n, shapes[model].params, hw, gen_gpus)})
        else:
            generation.append({"model": model, "items": n, "items_per_s": None, "gpu_hours": 0.0, "api": True})
    base_bytes = {m: s.params * BASE_BYTES_PER_PARAM for m, s in shapes.items()}
    train = totals(jobs, ("train_tokens", "gpu_hours", "wall_hours", "node_hours", "disk_bytes"))
    gen_hours = sum(g["gpu_hours"] for g in generation)
    dataset = published()["download_bytes"]
    return {
        "train_jobs": jobs,
        "generation": generation,
        "totals": {
            **{f"train_{k}": v for k, v in train.items()},
            "generation_gpu_hours": gen_hours,
            "generation_node_hours": gen_hours / gpus,
            "gpu_hours": train["gpu_hours"] + gen_hours,
            "node_hours": train["node_hours"] + gen_hours / gpus,
            "base_model_bytes": sum(base_bytes.values()),
            "dataset_bytes": dataset,
            "disk_bytes": train["disk_bytes"] + sum(base_bytes.values()) + dataset,
        },
        "gpus_per_node": gpus,
        "nodes": ft["nodes"],
    }


def report(config: dict, grid: dict, grid_path: str, results: Path, peak: dict, engines: dict[str, dict],
           curve_csv: str, benchmark_tsv: str) -> dict:
    """The preflight report: measured figures of this run and the projection of the grid."""
    model, train_set = preflight_job(config)
    shape = llama_shape(json.loads((results / "models/base" / model / "config.json").read_text()))
    run_dir = results / "checkpoints" / model / train_set
    data_dir = results.parent / tokenized.folder(config["models"], model, train_set)
    data = tokenized_set(data_dir)
    if data is None:
        raise FileNotFoundError(f"{data_dir}: no tokenized training set (Arrow files) of the preflight")
    seq_tokens = data["tokens"] / data["sequences"]
    train = training(curve_csv, benchmark_tsv, shape, seq_tokens, peak["peak_flops"])
    checkpoint = newest_checkpoint_bytes(run_dir)
    disk = {
        "model_bytes_per_param": dir_bytes(results / "models/ft" / model / train_set) / shape.params,
        "checkpoint_bytes_per_param": (checkpoint or 0) / shape.params,
        "bytes_per_token": data["bytes"] / data["tokens"],
    }
    local = {k: v for k, v in engines.items() if not v.get("skipped") and not v.get("api")}
    rate_engine = grid["generation"]["engine"] if grid["generation"]["engine"] in local else next(iter(local), None)
    if rate_engine is None:
        raise ValueError("preflight.engines: no local engine measured; the generation projection needs one")
    hw = Hardware(peak["peak_flops"], train["mfu"], local[rate_engine]["items_per_s"], shape.params, **disk)
    return {
        "date": datetime.date.today().isoformat(),
        "measured": {
            "device": peak,
            "model": {"name": model, "train_set": train_set, **asdict(shape)},
            "training": train,
            "tokenized_set": data,
            "disk": {**disk, "checkpoint_bytes": checkpoint},
            "generation": engines,
        },
        "projected": {"grid": grid_path, "generation_engine": rate_engine, **projection(grid, results, hw, seq_tokens)},
        "formulas": FORMULAS,
    }


def _num(x, digits: int = 1) -> str:
    if x is None:
        return "n/a"
    return f"{x:,.{digits}f}"


def markdown(rep: dict) -> str:
    """The report as Markdown: every figure labelled measured or projected, formulas shown."""
    m, p = rep["measured"], rep["projected"]
    dev, tr, disk = m["device"], m["training"], m["disk"]
    mem = tr["peak_memory_bytes"]
    lines = [
        f"# Preflight report ({rep['date']})",
        "",
        f"Device: **{dev['device']}**; peak {dev['dtype']} matmul (measured, {dev['size']}x{dev['size']}): "
        f"**{dev['peak_flops'] / 1e12:,.3f} TFLOP/s**.",
        "",
        f"## Measured: training ({m['model']['name']} on {m['model']['train_set']})",
        "",
        "| figure | value |",
        "|---|---|",
        f"| processes (GPUs) | {tr['processes']} |",
        f"| optimizer steps (last run) | {tr['steps']} |",
        f"| tokens/s, all GPUs | {_num(tr['tokens_per_s'])} |",
        f"| tokens/s per GPU | {_num(tr['tokens_per_s_per_gpu'])} |",
        f"| parameters N (matmul) | {m['model']['params']:,} ({m['model']['matmul_params']:,}) |",
        f"| mean tokens per sequence T | {_num(tr['mean_sequence_tokens'])} |",
        f"| FLOPs per token F | {tr['flops_per_token']:.4g} |",
        f"| MFU | {tr['mfu']:.2%} |",
        f"| peak memory ({tr['peak_memory_kind']}) | {f'{mem / GB:,.2f} GB' if mem else 'n/a'} |",
        f"| job peak RSS (Snakemake benchmark) | {_num(tr['job_max_rss_mb'] / 1000, 2)} GB |",
        f"| model load / final save | {_num(tr['load_seconds'])} s / {_num(tr['save_seconds'])} s |",
        f"| job wall time (last run) | {_num(tr['job_seconds'])} s |",
        f"| saved model, bytes per parameter | {disk['model_bytes_per_param']:.2f} |",
        f"| one checkpoint, bytes per parameter | {disk['checkpoint_bytes_per_param']:.2f} |",
        f"| tokenized set, bytes per token | {disk['bytes_per_token']:.2f} |",
        "",
        "## Measured: generation",
        "",
        "| engine | items | items/s | load s |",
        "|---|---|---|---|",
    ]
    for name, g in m["generation"].items():
        if g.get("skipped"):
            lines.append(f"| {name} | skipped: {g['skipped']} | | |")
        else:
            lines.append(f"| {name} | {g['items']} | {g['items_per_s']:.3f} | {_num(g['load_seconds'])} |")
    t = p["totals"]
    lines += [
        "",
        f"## Projected: the grid of {p['grid']} on this device",
        "",
        f"{p['gpus_per_node']} GPUs per node x {p['nodes']} node(s); MFU and peak as measured above; generation "
        f"scaled from the {p['generation_engine']} engine's items/s.",
        "",
        "| model | train set | tokens source | sequences | train tokens (x epochs) | GPU-h | wall h | node-h "
        "| disk GB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for j in p["train_jobs"]:
        lines.append(
            f"| {j['model']} | {j['train_set']} | {j['source']} | {j['sequences']:,} | {j['train_tokens']:.4g} "
            f"| {_num(j['gpu_hours'])} | {_num(j['wall_hours'])} | {_num(j['node_hours'])} "
            f"| {_num(j['disk_bytes'] / GB)} |"
        )
    lines += ["", "| generation: model | items | items/s (projected) | GPU-h |", "|---|---|---|---|"]
    for g in p["generation"]:
        rate = "API" if g.get("api") else f"{g['items_per_s']:.3f}"
        lines.append(f"| {g['model']} | {g['items']:,} | {rate} | {_num(g['gpu_hours'])} |")
    lines += [
        "",
        "| total (projected) | value |",
        "|---|---|",
        f"| training GPU-hours | {_num(t['train_gpu_hours'])} |",
        f"| generation GPU-hours | {_num(t['generation_gpu_hours'])} |",
        f"| GPU-hours in all | {_num(t['gpu_hours'])} |",
        f"| node-hours in all | {_num(t['node_hours'])} |",
        f"| training wall hours (jobs one after another) | {_num(t['train_wall_hours'])} |",
        f"| disk: training jobs at their peak (models, {KEPT_CHECKPOINTS} checkpoints each, tokenized sets) "
        f"| {_num(t['train_disk_bytes'] / GB)} GB |",
        f"| disk: base models ({BASE_BYTES_PER_PARAM} bytes/parameter) + dataset | "
        f"{_num((t['base_model_bytes'] + t['dataset_bytes']) / GB)} GB |",
        f"| disk in all | {_num(t['disk_bytes'] / GB)} GB |",
        "",
        "## Formulas",
        "",
        *[f"- {name}: `{text}`" for name, text in rep["formulas"].items()],
        "",
    ]
    return "\n".join(lines)
