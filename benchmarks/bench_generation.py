"""Generation speed: items per second of batched HF generation against batch size 1, on the
same model and prompts, measured in one run (0-shot and 3-shot prompts reported separately).

    python benchmarks/bench_generation.py --model results/models/base/smollm2 \
        --prompts results/prompts/test/python/L3_zero_shot.jsonl --batch 16 --items 16
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from apipack.files import read_jsonl  # noqa: E402
from apipack.generate import make_engine  # noqa: E402
from apipack.settings import GenerationSettings  # noqa: E402


def rate(engine, prompts: list[str], batch: int) -> tuple[float, list[str]]:
    start, out = time.perf_counter(), []
    for i in range(0, len(prompts), batch):
        out += engine(prompts[i : i + batch], 0)
    return len(prompts) / (time.perf_counter() - start), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--prompts", required=True, nargs="+")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--items", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    a = ap.parse_args()
    gen = GenerationSettings(engine="hf", batch_size=a.batch, max_new_tokens=a.max_new_tokens, max_prompt_tokens=4000,
                             max_total_tokens=None, do_sample=False, temperature=None, dtype="float32",
                             trust_remote_code=False)
    engine = make_engine({"source": "local"}, a.model, None, gen)
    for path in a.prompts:
        rows = read_jsonl(path)
        prompts = [rows[i % len(rows)]["prompt"] for i in range(a.items)]
        engine(prompts[:1], 0)  # warm-up
        batched, out_b = rate(engine, prompts, a.batch)
        single, out_s = rate(engine, prompts, 1)
        print(f"{Path(path).name}: {len(prompts)} items; batch {a.batch}: {batched:.2f} items/s; "
              f"batch 1: {single:.2f} items/s; ratio {batched / single:.1f}x; "
              f"identical outputs: {out_b == out_s}")


if __name__ == "__main__":
    main()
