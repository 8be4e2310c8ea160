"""The paper path as a user runs it: configs/paper.yaml from the project root of a checkout, and
its CPU rehearsal (configs/paper.yaml + configs/rehearsal.yaml) through every code path the paper
config takes: 2-process full fine-tuning killed with kill -9 and resumed, generation from the full
model (sampling) and from a LoRA adapter (greedy), retrieval and reranked 3-shot, an API model
against a local server, every figure family and the report. The sharded training of the paper's
accelerate config is rehearsed in tests/test_sharded_training.py.

The workflow runs in a copy of the checkout (tracked and untracked files, no results), from its
root, exactly as the README says; a copy so that the developer's own results/ stay untouched.
"""

import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from apipack.cost import llama_shape
from apipack.files import read_jsonl
from apipack.preflight import interrupt_after_checkpoint
from conftest import SNAKEMAKE, SNAKEMAKE_ENV, chat_server, checkout_copy, job_stats, snakemake

PAPER, REHEARSAL = "configs/paper.yaml", "configs/rehearsal.yaml"
LANGS = ["curl", "python", "java", "go", "javascript", "libcurl", "node", "php", "ruby", "swift"]


def run_in(root: Path, *args, check=True) -> str:
    """Snakemake's output, run from the root of a checkout copy."""
    return snakemake(*args, cwd=root, check=check).out


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    return checkout_copy(tmp_path_factory.mktemp("checkout") / "apipack")


def test_paper_config_holds_the_papers_settings(checkout):
    """The config Snakemake itself holds after loading configs/paper.yaml from the project root."""
    run_in(checkout, "results/config.yaml", "--cores", "1", "--configfile", PAPER)
    cfg = yaml.safe_load((checkout / "results/config.yaml").read_text())
    assert cfg["languages"] == LANGS
    assert cfg["data"]["source"] == "download"
    assert cfg["splits"] == {"order": "file", "level1": {"pool": 20000, "size": 1000, "min_api_count": 5},
                             "level2": {"pool": 20000, "max_apis": 1000, "min_api_count": 4},
                             "level3": {"start": 80000, "size": 1000}}
    assert all(s["formats"] == ["simple", "fewshot"] and s["selection"] == "first" for s in cfg["train_sets"].values())
    assert cfg["train_sets"]["curl-mix"]["mixture"] == {"curl": "all", **{x: 500 for x in LANGS if x != "curl"}}
    ft = cfg["finetune"]
    assert (ft["method"], ft["learning_rate"], ft["epochs"], ft["cutoff_len"]) == ("full", 2e-5, 2, 4096)
    assert (ft["global_batch"], ft["warmup_ratio"], ft["optimizer"]) == (120, 0.03, "adamw_torch")
    assert ft["logging_steps"] == 10
    gen = cfg["generation"]
    assert (gen["do_sample"], gen["temperature"]) == (True, 0.7)
    assert (gen["max_total_tokens"], gen["max_prompt_tokens"]) == (4096, 4000)  # the reference's max_length ...
    assert gen["max_new_tokens"] >= gen["max_total_tokens"]  # ... alone caps the answers
    assert gen["batch_tokens"] <= 32768  # the worst batch of a 13B model fits 80 GB (docs/engines.md)
    assert cfg["evaluation"]["max_items"] == 1000 and cfg["evaluation"]["metric_mode"] == "paper"
    assert cfg["prompts"]["description_tokens"] == 512 and cfg["prompts"]["fewshot_tokens"] == 3072
    api = {name: m for name, m in cfg["models"].items() if m["source"] == "openai"}
    assert sorted(api) == ["gpt-3.5-1106", "gpt-4-1106"]
    assert all(m["source"] == "hub" and len(m["revision"]) == 40 for n, m in cfg["models"].items() if n not in api)
    # Nothing of the CPU study (config.yaml) leaks in.
    default = yaml.safe_load((checkout / "config.yaml").read_text())
    only_default = set(default["train_sets"]) - {"curl-mix"}
    assert only_default and not only_default & set(cfg["train_sets"]) and "smollm2" not in cfg["models"]


def test_paper_grid_plans_offline_and_downloads_on_the_login_node(checkout):
    out = run_in(checkout, "-n", "-p", "--configfile", PAPER)  # = make dry-run
    stats = job_stats(out)
    assert (stats["finetune"], stats["download_dataset"], stats["prepare_model"]) == (15, 10, 6)
    assert stats["generate"] == 203 and stats["generate_api"] == 2  # local models; the 2 GPT cells
    assert "accelerate launch --config_file" in out and "--num_processes 8" in out and "gpu=8" in out
    (checkout / "multi_node.yaml").write_text("finetune: {nodes: 2}\n")
    out = run_in(checkout, "-n", "-p", "--configfile", PAPER, "multi_node.yaml")
    assert "gres=gpu:8" in out and "nodes=2" in out and "tasks=2" in out and "mpi=srun" in out
    assert ("srun --nodes 2 --ntasks-per-node 1 --kill-on-bad-exit 1 bash -c 'accelerate launch --config_file" in out
            and "--num_processes 16 --num_machines 2 --machine_rank $SLURM_NODEID" in out)
    out = run_in(checkout, "download", "-n", "--cores", "4", "--configfile", PAPER)
    assert job_stats(out) == {"download_dataset": 10, "prepare_model": 6, "download": 1, "total": 17}


API_REPLY = ('**domain**:[items]\n**api_call**:import http.client\n\nconn = http.client.HTTPSConnection('
             '"api.example.com")\n\nconn.request("GET", "/v1/items")\n\n'
             '**api_provider**:example.com\n**lang**:Python\n')
FT_SET = "results/models/ft/codellama-13b/python-20k"


def configs(*extra: Path) -> list[str]:
    return ["--configfile", PAPER, REHEARSAL, *map(str, extra)]


def kill_after_first_checkpoint(root: Path, args: list[str], timeout: float = 600) -> None:
    """Run the training job and kill -9 the whole workflow once a complete checkpoint exists
    (as the preflight does on a workstation: apipack.preflight)."""
    cmd = [*SNAKEMAKE, FT_SET, "--cores", "2", *args]
    interrupt_after_checkpoint(cmd, root, root / "results/checkpoints/codellama-13b/python-20k", SNAKEMAKE_ENV,
                               timeout=timeout)
    assert not (root / FT_SET).exists()


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory):
    """The rehearsal run: killed during 2-process training, unlocked, run to the end, reported."""
    root = checkout_copy(tmp_path_factory.mktemp("rehearsal") / "apipack")
    with chat_server(lambda body: API_REPLY) as (url, seen):
        api = root / "api_server.yaml"
        api.write_text(f"models: {{gpt-4-1106: {{base_url: '{url}'}}}}\n")
        args = configs(api)
        kill_after_first_checkpoint(root, args)
        locked = run_in(root, "--cores", "2", *args, check=False)
        assert "LockException" in locked or "cannot be locked" in locked.lower()
        run_in(root, "--unlock", *args)  # README: after a kill, --unlock, then the same command
        start = time.time()
        run_in(root, "--cores", "2", *args)
        seconds = time.time() - start
        run_in(root, "--report", "results/report.html", *args)
    return root, seen, seconds, args


def test_rehearsal_trains_with_two_processes_and_resumes_after_kill(rehearsal):
    root, _, seconds, _ = rehearsal
    log = (root / "logs/finetune/codellama-13b/python-20k.log").read_text()
    assert "2 process(es)" in log and "gradient accumulation 2, global batch 8" in log
    resumed = int(log.split("resuming from")[1].split("\n")[0].rsplit("checkpoint-", 1)[1])
    train = read_jsonl(root / "results/prompts/train/python-20k.jsonl")
    assert len(train) == 32  # 16 instances in both formats (0-shot and 3-shot)
    assert sum("Given the following examples" in r["prompt"] for r in train) == 16
    for ft in (root / "results/models/ft").glob("*/*"):  # full fine-tuning: whole models, no adapters
        assert (ft / "model.safetensors").is_file() and not (ft / "adapter_config.json").exists(), ft
    curve = pd.read_csv(root / "results/train_logs/codellama-13b/python-20k.csv")
    assert curve["step"].max() == 8 and curve["loss"].notna().all()  # 2 epochs of 32 sequences / 8
    assert 0 < resumed < 8  # killed mid-way, resumed from its checkpoint
    print(f"rehearsal run after the kill: {seconds:.0f} s")


def test_rehearsal_generates_from_full_models_and_the_api(rehearsal):
    root, seen, _, _ = rehearsal
    metrics = pd.read_csv(root / "results/metrics/metrics.csv")
    assert len(metrics) == 20 and set(metrics["mode"]) == {"zero_shot", "retrieval_3shot", "rerank_3shot"}
    api = read_jsonl(root / "results/generations/gpt-4-1106/base/python/L3_retrieval_3shot_s0.jsonl")
    assert len(api) == 4 and all(r["output"] == API_REPLY.strip() for r in api)
    assert len(seen) == 4 and all(body["model"] == "gpt-4-1106-preview" for body, _ in seen)
    assert not (root / "results/models/base/gpt-4-1106").exists()  # an API model is never downloaded
    prompts = read_jsonl(root / "results/prompts/test/python/L3_rerank_3shot.jsonl")
    assert all(p["prompt"].count("**instruction**") >= 2 for p in prompts)
    for family in ("model_battle", "scaling", "cross_lingual", "parity"):
        assert (root / f"results/figures/{family}.png").stat().st_size > 10_000, family
    assert "metrics.csv" in (root / "results/report.html").read_text(errors="replace")


def test_rehearsal_sampling_is_seeded(rehearsal):
    root, _, _, args = rehearsal
    cell = "results/generations/codellama-13b/python-20k/python/L1_zero_shot_s0.jsonl"
    before = (root / cell).read_text()
    run_in(root, cell, "--cores", "2", "--forcerun", "generate", *args)
    assert (root / cell).read_text() == before


def test_rehearsal_lora_adapter_with_greedy_decoding(rehearsal):
    root, _, _, args = rehearsal
    lora = root / "lora_greedy.yaml"
    lora.write_text("finetune: {method: lora, learning_rate: 0.002, precision: fp32}\ngeneration: {do_sample: false}\n")
    cell = "results/scores/codellama-13b/python-10k/python/L3_retrieval_3shot_s0.jsonl"
    out = run_in(root, cell, "--cores", "2", *args, str(lora))
    assert "rule finetune" in out
    adapter = root / "results/models/ft/codellama-13b/python-10k"
    assert (adapter / "adapter_config.json").is_file() and not (adapter / "model.safetensors").exists()
    rows = read_jsonl(root / cell)
    assert len(rows) == 4 and all("endpoint_match" in r for r in rows)


def test_rehearsal_preflight_report_measures_and_projects(rehearsal):
    """The preflight report of the rehearsal run (2 processes, resumed after kill -9): each measured
    figure from its sources, and the projection of configs/paper.yaml's 15 training jobs."""
    root = rehearsal[0]
    with chat_server(lambda body: API_REPLY) as (url, _):
        api = root / "api_server_preflight.yaml"
        api.write_text(f"models: {{gpt-4-1106: {{base_url: '{url}'}}}}\n")
        run_in(root, "results/preflight/report.md", "--cores", "2", *configs(api))
    rep = json.loads((root / "results/preflight/report.json").read_text())
    measured, projected = rep["measured"], rep["projected"]
    train = measured["training"]
    curve = pd.read_csv(root / "results/train_logs/codellama-13b/python-20k.csv")
    assert train["processes"] == 2 and train["tokens_per_s"] == pytest.approx(curve["tokens_per_second"].iloc[-1])
    assert train["tokens_per_s_per_gpu"] == pytest.approx(train["tokens_per_s"] / 2)
    shape = llama_shape(json.loads((root / "results/models/base/codellama-13b/config.json").read_text()))
    tokenized = measured["tokenized_set"]
    assert tokenized["sequences"] == 32  # the training set of test_rehearsal_trains_...
    flops = shape.flops_per_token(tokenized["tokens"] / 32)
    assert train["mfu"] == pytest.approx(train["tokens_per_s_per_gpu"] * flops / measured["device"]["peak_flops"])
    assert 0 < train["mfu"] < 1 and measured["device"]["dtype"] == "bfloat16"  # the paper's precision
    assert train["load_seconds"] > 0 and train["save_seconds"] > 0 and train["peak_memory_bytes"] > 10**7
    assert train["peak_memory_kind"] == "CPU, peak RSS of rank 0"
    gen = measured["generation"]  # 7 cells of the preflight model (6 + rerank), 2 items each
    assert gen["hf"]["items"] == 14 and gen["hf"]["items_per_s"] > 0 and gen["hf"]["load_seconds"] > 0
    assert gen["gpt-4-1106"]["items"] == 14 and gen["gpt-4-1106"]["api"]  # the local API server
    jobs = {(j["model"], j["train_set"]): j for j in projected["train_jobs"]}
    assert len(jobs) == 15 and projected["grid"] == "configs/paper.yaml"
    here = jobs["codellama-13b", "python-20k"]  # tokenized by the rehearsal: its own count
    assert here["source"] == "tokenized set (measured)" and here["sequences"] == 32
    assert jobs["codellama-13b", "all-1M"]["sequences"] == 2 * 994_705  # published, both formats
    shared = jobs["codellama-7b", "python-20k"]  # codellama-13b trains on codellama-7b's tokenized sets
    assert (shared["source"], shared["sequences"]) == ("tokenized set (measured)", 32)
    assert jobs["llama-2-13b", "python-20k"]["sequences"] == 40_000  # not trained by the rehearsal
    assert jobs["llama-2-13b", "python-20k"]["source"] == "published statistics (projected)"
    assert projected["totals"]["gpu_hours"] == pytest.approx(
        sum(j["gpu_hours"] for j in jobs.values()) + sum(g["gpu_hours"] for g in projected["generation"]))
    text = (root / "results/preflight/report.md").read_text()
    for part in ("## Measured: training", "## Projected: the grid of configs/paper.yaml", "## Formulas",
                 "GPU-hours = training tokens x F(model)", "| gpt-4-1106 | 14 |"):
        assert part in text, part


def test_preflight_command_plans_with_both_profiles(checkout):
    """The README's one command, dry-run: its steps, then the preflight's jobs as each profile submits them."""
    for profile in ("profiles/workstation", "profiles/slurm"):
        res = subprocess.run([sys.executable, "-m", "apipack.preflight", "--dry-run", "--workflow-profile", profile],
                             cwd=checkout, env=SNAKEMAKE_ENV, capture_output=True, text=True, timeout=300)
        out = res.stdout + res.stderr
        assert res.returncode == 0, out[-3000:]
        steps = [line for line in out.splitlines() if line.startswith("$ ")]
        assert len(steps) == 4 and " download " in steps[0] and " --unlock " in steps[2]
        assert "results/models/ft/preflight-llama/preflight-python" in steps[1] and profile in steps[1]
        stats = job_stats(out)
        assert (stats["finetune"], stats["peak_flops"], stats["preflight_report"]) == (1, 1, 1)
        assert (stats["preflight_engine"], stats["preflight_vllm"]) == (2, 1)  # hf and the GPT-4 cell; vLLM
        assert stats["generate"] == 6  # 3 levels x (0-shot, retrieval 3-shot), with the paper's engine
        assert "accelerate launch --config_file" in out and "--num_processes 8" in out
        if profile.endswith("slurm"):
            for rule in ("peak_flops", "preflight_vllm", "finetune"):
                assert "slurm_partition=gpu" in out.split(f"rule {rule}:")[1].split("rule ")[0], rule

