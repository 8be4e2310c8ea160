"""Training throughput: real (non-padding) tokens per second with padding-free packing
(DataCollatorWithFlattening) against plain padding, on the same model, data and steps, measured
in one run. On a GPU it also reports model FLOPs utilisation (6 x parameters x tokens/s over the
GPU's peak dense bf16 FLOPs; pass --peak-tflops for GPUs not in the table).

    python benchmarks/bench_packing.py --model results/models/base/smollm2 \
        --train results/prompts/train/python.jsonl --steps 4 --csv benchmarks/results/packing_cpu.csv
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from apipack.settings import RunSettings, TrainSettings  # noqa: E402
from apipack.train import run  # noqa: E402

PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0}


def finetune_settings(config: Path, steps: int) -> tuple[TrainSettings, RunSettings]:
    """The config's finetune settings with the schema's defaults, for a fixed number of steps."""
    from snakemake.utils import validate

    cfg = yaml.safe_load(config.read_text())
    validate(cfg, str(ROOT / "schemas/config.schema.yaml"))
    ft = replace(TrainSettings.from_config(cfg), max_steps=steps, group_by_length=False)
    return ft, replace(RunSettings.from_config(cfg), logging_steps=1, save_steps=10**6, report_to=())


def peak_tflops(override: float | None) -> float | None:
    import torch

    if override or not torch.cuda.is_available():
        return override
    name = torch.cuda.get_device_name()
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


def n_params(model_dir: str) -> int:
    from transformers import AutoConfig, AutoModelForCausalLM

    with __import__("torch").device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model_dir))
    return sum(p.numel() for p in model.parameters())


def measure(model: str, train: str, settings: tuple[TrainSettings, RunSettings], packing: bool, tmp: Path) -> dict:
    name = "packing" if packing else "padding"
    log = tmp / f"{name}.csv"
    ft, job = settings
    run(train, model, str(tmp / name / "out"), replace(ft, packing=packing), job, str(tmp / name / "ckpt"), str(log))
    df = pd.read_csv(log)
    return {
        "collator": name,
        "steps": int(df["step"].max()),
        "real_tokens": int(df["num_input_tokens_seen"].max()),
        "tokens_per_second": float(df["tokens_per_second"].iloc[-1]),
        "final_loss": float(df["loss"].iloc[-1]),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="results/models/base/smollm2")
    ap.add_argument("--train", default="results/prompts/train/python.jsonl")
    ap.add_argument("--config", default="config.yaml", type=Path)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--peak-tflops", type=float, default=None)
    ap.add_argument("--csv", type=Path, default=None, help="also write the table here")
    a = ap.parse_args()
    ft = finetune_settings(a.config, a.steps)
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure(a.model, a.train, ft, packing, Path(tmp)) for packing in (False, True)]
    df = pd.DataFrame(rows)
    peak = peak_tflops(a.peak_tflops)
    if peak:
        df["mfu"] = 6 * n_params(a.model) * df["tokens_per_second"] / (peak * 1e12)
    print(df.to_string(index=False))
    pad, pack = rows
    print(f"packing / padding real tokens per second: "
          f"{pack['tokens_per_second'] / pad['tokens_per_second']:.2f}x "
          f"(same real tokens: {pack['real_tokens'] == pad['real_tokens']})")
    if a.csv:
        a.csv.parent.mkdir(parents=True, exist_ok=True)
        df.to_csv(a.csv, index=False)


if __name__ == "__main__":
    main()
