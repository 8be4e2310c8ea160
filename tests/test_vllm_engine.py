"""The vllm engine for real, on the CPU. vLLM's CPU build lives in its own venv (.venv-vllm, built by
`make venv-vllm`, which `make test` builds first); its interpreter runs the generate rule's script
(scripts/generate.py, with the rule's settings, as Snakemake's `script:` runs it: tests/vllm_rule.py)
on tiny Llama models: a base model, a fully fine-tuned folder and a LoRA adapter, greedy and seeded
sampling, and a resume from a partial file. The HF engine answers the same cells in this process;
both must get the same prompt ids and sampling values. Only tensor parallelism over GPUs is mocked
(a CPU has none): test_tensor_parallelism_over_gpus_is_asked_of_vllm.
"""

import json
import os
import subprocess
import sys
import types
from dataclasses import replace
from pathlib import Path

import pytest

from apipack.files import read_jsonl, write_jsonl
from apipack.generate import TOP_K, TOP_P, LocalEngine, cell_key, generate_cell, make_engine, plan_batches
from apipack.models import build_tiny, load_causal_lm, load_tokenizer, token_ids
from apipack.prompts import Truncator, zero_shot
from apipack.settings import GenerationSettings, ModelSource
from conftest import ROOT, make_instance, random_lora

VLLM_PYTHON = ROOT / ".venv-vllm" / "bin" / "python"
TINY = {"source": "tiny"}
# The longest prompts are cut (max_prompt_tokens) and their answers capped (max_total_tokens).
GEN = GenerationSettings(engine="vllm", batch_size=2, max_new_tokens=24, max_prompt_tokens=52, max_total_tokens=68,
                         do_sample=False, temperature=None, dtype="float32", trust_remote_code=False)
SAMPLE = replace(GEN, do_sample=True, temperature=0.7)
# vLLM on a CPU: a small KV cache, no usage statistics sent, nothing from the hub.
VLLM_ENV = {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1", "HF_HUB_OFFLINE": "1"}


@pytest.fixture(scope="module")
def vllm_python() -> Path:
    if not VLLM_PYTHON.exists():
        message = f"{VLLM_PYTHON.parent.parent} is absent: `make venv-vllm` builds vLLM's CPU build (`make test` does)"
        if os.environ.get("APIPACK_VLLM_REQUIRED"):
            pytest.fail(message)
        pytest.skip(message)
    return VLLM_PYTHON


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> dict[str, Path]:
    """Prompts of six items of three lengths, a tiny base model (head size 32, which vLLM's CPU attention
    supports), a fully fine-tuned folder (other weights, no adapter_config.json) and a LoRA adapter of
    rank 12 (served with max_lora_rank 16), with random LoRA weights so that it changes the answers."""
    import torch

    tmp = tmp_path_factory.mktemp("vllm")
    insts = [make_instance("Pets", i) for i in range(6)]
    asks = [x["instruction_test"] + " Show the whole call, please." * (i % 3) for i, x in enumerate(insts)]
    rows = [{"unique_id": x["unique_id"], "lang": "python", "ground_truth": x["output"],
             "prompt": zero_shot(x, ask, Truncator(), 64)} for x, ask in zip(insts, asks)]
    write_jsonl(tmp / "prompts.jsonl", rows)
    base, full, adapter = tmp / "base", tmp / "full", tmp / "adapter"
    build_tiny(base, [r["prompt"] + r["ground_truth"] for r in rows] * 5, seed=0, hidden_size=128)
    tok = load_tokenizer(base)
    torch.manual_seed(1)
    model = load_causal_lm(base)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    model.save_pretrained(full)
    tok.save_pretrained(full)
    random_lora(base, adapter, 12)
    tok.save_pretrained(adapter)
    return {"tmp": tmp, "prompts": tmp / "prompts.jsonl", "base": base, "full": full, "adapter": adapter}


def models_of(work: dict, tuned: str) -> tuple[str, str | None]:
    """(base, fine-tuned) folders as the rule's inputs: a full model or an adapter, or none."""
    return str(work["base"]), str(work[tuned]) if tuned != "base" else None


def run_rule(python: Path, work: dict, name: str, tuned: str, gen: GenerationSettings, seed: int,
             record: Path | None = None) -> tuple[list[dict], str]:
    """Rule generate's script in the vLLM venv; its output rows and its log."""
    out, log, job = (work["tmp"] / f"{name}{ext}" for ext in (".jsonl", ".log", ".job.json"))
    base, finetuned = models_of(work, tuned)
    job.write_text(json.dumps({
        "script": str(ROOT / "scripts" / "generate.py"), "rule": "generate", "threads": 2,
        "input": {"prompts": str(work["prompts"]), "base": base, "finetuned": finetuned or ""},
        "output": [str(out)], "log": [str(log)],
        "wildcards": {"model": "tiny", "trainset": tuned, "lang": "python", "level": "3", "mode": "zero_shot",
                      "seed": str(seed)},
        "params": {"generation": gen.param(), "model": TINY}, "resources": {"gpu": 0, "mem_mb": 8000},
        "config": {"models": {"tiny": TINY}}, "record": str(record) if record else None,
    }))
    res = subprocess.run([python, ROOT / "tests" / "vllm_rule.py", job], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, **VLLM_ENV}, timeout=600)
    text = log.read_text() if log.exists() else ""
    assert res.returncode == 0, f"{name}: {res.stderr[-3000:]}\n{text[-3000:]}"
    return read_jsonl(out), text


def run_hf(work: dict, name: str, tuned: str, gen: GenerationSettings, seed: int, record: list) -> list[dict]:
    """The same cell with the HF engine, in this process; what `generate` receives goes to ``record``."""
    import torch
    from transformers import LlamaForCausalLM

    generate, manual_seed = LlamaForCausalLM.generate, torch.manual_seed

    def recorded(model, **kwargs):
        record.append({**kwargs, "seed": seeds[-1]})
        return generate(model, **kwargs)

    seeds = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(LlamaForCausalLM, "generate", recorded)
        mp.setattr(torch, "manual_seed", lambda s: seeds.append(s) or manual_seed(s))
        out = work["tmp"] / f"{name}.hf.jsonl"
        generate_cell(str(work["prompts"]), str(out), ModelSource.of(TINY), models_of(work, tuned),
                      replace(gen, engine="hf"), seed, 0)
    return read_jsonl(out)


@pytest.fixture(scope="module")
def greedy(vllm_python, work) -> dict[str, tuple[list[dict], list[dict]]]:
    """(vLLM rows, HF rows) of the greedy cell for the base, fully fine-tuned and adapter models."""
    return {tuned: (run_rule(vllm_python, work, f"greedy-{tuned}", tuned, GEN, 0)[0],
                    run_hf(work, f"greedy-{tuned}", tuned, GEN, 0, []))
            for tuned in ("base", "full", "adapter")}


@pytest.fixture(scope="module")
def sampled(vllm_python, work) -> dict:
    """The seeded sampling cell: vLLM's rows and the SamplingParams it got, HF's rows and kwargs."""
    record, hf_record = work["tmp"] / "sampled.record.jsonl", []
    rows, log = run_rule(vllm_python, work, "sampled", "adapter", SAMPLE, 7, record)
    hf = run_hf(work, "sampled", "adapter", SAMPLE, 7, hf_record)
    return {"rows": rows, "log": log, "params": read_jsonl(record), "hf": hf, "hf_params": hf_record}


def outputs(rows: list[dict]) -> list[str]:
    return [r["output"] for r in rows]


@pytest.mark.parametrize("tuned", ["base", "full", "adapter"])
def test_greedy_vllm_answers_are_hf_answers(greedy, work, tuned):
    """fp32 greedy on the CPU: the same prompt ids, weights and token budget give the same answers."""
    vllm, hf = greedy[tuned]
    ids = [json.loads(line)["unique_id"] for line in work["prompts"].read_text().splitlines()]
    assert [r["unique_id"] for r in vllm] == ids and all(r["output"] for r in vllm)
    assert outputs(vllm) == outputs(hf)


def test_full_model_and_adapter_change_the_answers(greedy):
    """vLLM loads the fully fine-tuned folder as the model and serves the adapter on the base."""
    answers = {tuned: outputs(rows[0]) for tuned, rows in greedy.items()}
    assert answers["base"] != answers["full"] and answers["base"] != answers["adapter"]
    assert answers["full"] != answers["adapter"]


def test_both_engines_receive_the_same_sampling_values(sampled, work):
    """Per batch, the same prompts; per prompt: its ids (BOS, cut on the left), temperature, top-k,
    top-p, seed and its own token budget (capped by max_total_tokens from its own length, as the
    reference's max_length); both stop at EOS only (the answer is cut at its **lang** line afterwards)."""
    vllm, hf = sampled["params"], sampled["hf_params"]
    assert len(vllm) == len(hf) == 3
    tok = load_tokenizer(work["base"])
    for v, h in zip(vllm, hf):
        mask = h["attention_mask"].bool()
        ids = [row[m].tolist() for row, m in zip(h["input_ids"], mask)]
        assert v["prompt_token_ids"] == ids
        caps = h["stopping_criteria"][0].caps  # HF: one budget per sequence, in its stopping criterion
        assert v["max_tokens"] == caps == [min(GEN.max_new_tokens, GEN.max_total_tokens - len(x)) for x in ids]
        assert h["max_new_tokens"] == max(caps)
        for name in ("temperature", "top_k", "top_p", "seed"):
            assert v[name] == [h[name]] * len(ids), name
        assert (h["temperature"], h["top_k"], h["top_p"], h["seed"]) == (0.7, TOP_K, TOP_P, 7)
        assert h["do_sample"] and v["stop"] == [[]] * len(ids) and not any(v["ignore_eos"])
    budgets = [b for v in vllm for b in v["max_tokens"]]
    longest = max(len(x) for v in vllm for x in v["prompt_token_ids"])
    assert longest == GEN.max_prompt_tokens  # the longest prompts are cut ...
    assert min(budgets) == GEN.max_total_tokens - longest < GEN.max_new_tokens  # ... and their answers capped
    assert max(budgets) == GEN.max_new_tokens
    full = token_ids(tok, [r["prompt"] for r in read_jsonl(work["prompts"])])
    assert max(map(len, full)) > GEN.max_prompt_tokens


def test_sampling_is_seeded_and_resumes_from_a_partial_file(vllm_python, work, sampled, greedy):
    """The sampling cell again, with its first batch left in the partial file as an interrupted run
    leaves it: the rule resumes after it, and the other items, sampled again with the same seed,
    are the same answers."""
    rows = sampled["rows"]
    assert outputs(rows) != outputs(greedy["adapter"][0])  # sampled, not greedy
    out = work["tmp"] / "resumed.jsonl"
    prompts, answers = read_jsonl(work["prompts"]), {r["unique_id"]: r for r in rows}
    sizes = LocalEngine(str(work["base"]), None, SAMPLE).sizes([p["prompt"] for p in prompts])
    first = plan_batches(sizes, SAMPLE.batch_size, SAMPLE.batch_tokens)[0]
    write_jsonl(str(out) + ".partial", [answers[prompts[i]["unique_id"]] for i in first])
    key = cell_key(str(work["prompts"]), ModelSource.of(TINY), models_of(work, "adapter"), SAMPLE, 7)
    Path(str(out) + ".partial.key").write_text(key + "\n")
    again, log = run_rule(vllm_python, work, "resumed", "adapter", SAMPLE, 7)
    assert "resuming after 2 finished items" in log and "generated 4 items" in log
    assert again == rows and not Path(str(out) + ".partial").exists()


class FakeLLM:
    """Stands in for vLLM where a CPU cannot run it: tensor parallelism over GPUs."""

    last = None

    def __init__(self, **kwargs):
        self.kwargs = kwargs
        FakeLLM.last = self


def test_tensor_parallelism_over_gpus_is_asked_of_vllm(work, monkeypatch):
    vllm = types.ModuleType("vllm")
    vllm.LLM = FakeLLM
    monkeypatch.setitem(sys.modules, "vllm", vllm)
    monkeypatch.setattr(os, "environ", dict(os.environ))  # the engine's VLLM_* defaults stay in this test
    make_engine(str(work["base"]), None, GEN, 4)
    assert FakeLLM.last.kwargs["tensor_parallel_size"] == 4 and not FakeLLM.last.kwargs["enforce_eager"]
    make_engine(str(work["base"]), None, GEN, 0)  # the CPU build: one process, no graph capture
    kw = FakeLLM.last.kwargs
    assert kw["tensor_parallel_size"] == 1 and kw["enforce_eager"] and kw["distributed_executor_backend"] == "uni"
