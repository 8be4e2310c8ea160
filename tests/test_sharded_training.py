"""The paper's training step under the paper's sharding, on 2 CPU processes (gloo).

``accelerate launch`` with each shipped config of configs/accelerate/ starts ``apipack.train``
(through tests/fsdp_cpu.py, which lets accelerate shard on a CPU) with the finetune settings of
configs/paper.yaml, so the optimizer is the one the Trainer builds for the paper's ``optimizer``
on parameters sharded by the config's FSDP version. A few steps, a sharded checkpoint (weights
and optimizer states per rank), then the final model gathered, saved in the training precision
and loaded back: its weights are the checkpoint's, which no rank held whole; and a job resumed
from the previous sharded checkpoint ends with the same model.
"""

import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import yaml

from apipack import tokenized
from apipack.files import write_jsonl
from apipack.manifest import HASHES, model_hash, sha256_tree
from apipack.models import build_tiny, load_causal_lm
from apipack.settings import RunSettings, TrainSettings
from conftest import ROOT, SNAKEMAKE_ENV, schema_config

PAPER = yaml.safe_load((ROOT / "configs/paper.yaml").read_text())
SHIPPED = sorted((ROOT / "configs/accelerate").glob("*.yaml"))


def paper_settings() -> TrainSettings:
    """configs/paper.yaml's finetune settings (optimizer, precision, method, schedule), at a size
    that takes 3 steps of 2 processes x 1 sequence."""
    config = schema_config({"finetune": PAPER["finetune"], "seed": PAPER["seed"]})
    return replace(TrainSettings.from_config(config), max_steps=3, global_batch=2, cutoff_len=64,
                   learning_rate=1e-3)


def test_paper_config_trains_with_a_shipped_sharded_config():
    ft = PAPER["finetune"]
    assert ROOT / ft["accelerate_config"] in SHIPPED and ft["gpus"] * ft["nodes"] > 1
    assert ft["method"] == "full" and ft["precision"] == "bf16"


@pytest.mark.parametrize("config", SHIPPED, ids=lambda p: p.name)
def test_trainer_steps_saves_sharded_and_gathers_the_full_model(tmp_path, config):
    accel = yaml.safe_load(config.read_text())
    assert accel["distributed_type"] == "FSDP", f"{config}: only FSDP configs are rehearsed on a CPU; add its own"
    ft = paper_settings()
    base, data, settings = tmp_path / "base", tmp_path / "train.jsonl", tmp_path / "ft.json"
    build_tiny(base, ["conn.request('GET', '/v1/items')"] * 50, seed=0)
    write_jsonl(data, [{"prompt": f"List items of page {i}:", "completion": f"GET /v1/items?page={i}"}
                       for i in range(8)])
    tokens = tmp_path / "tokenized"  # what rule tokenize writes before the job starts
    tokenized.build(str(data), str(base), ft.cutoff_len, False, tokens, workers=1)
    settings.write_text(json.dumps(ft.param()))
    job = RunSettings(per_device_batch=1, gradient_checkpointing=True, logging_steps=1, save_steps=2,
                      keep_checkpoints=True)
    out, ckpt = tmp_path / "model", tmp_path / "ckpt"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config), "--num_processes", "2",
           "--main_process_port", "0", str(ROOT / "tests/fsdp_cpu.py"), "--data", str(tokens), "--base", str(base),
           "--out", str(out), "--settings", str(settings), "--checkpoints", str(ckpt), "--log-csv",
           str(tmp_path / "log.csv"), *job.arguments().split()]
    env = {**SNAKEMAKE_ENV, "PYTHONPATH": f"{ROOT / 'scripts'}:{ROOT / 'tests'}"}
    log = launch(cmd, env, tmp_path)
    assert "2 process(es)" in log and "gradient accumulation 1, global batch 2" in log
    # Sharded checkpoint: each rank wrote its part of the weights and of the optimizer states.
    last = ckpt / "checkpoint-3"
    assert accel["fsdp_config"]["fsdp_state_dict_type"] == "SHARDED_STATE_DICT"
    assert sorted(p.name for p in (last / "pytorch_model_fsdp_0").glob("*.distcp")) == ["__0_0.distcp", "__1_0.distcp"]
    assert len(list((last / "optimizer_0").glob("*.distcp"))) == 2 and not (last / "model.safetensors").exists()
    # The final model: gathered from the shards, in the training precision, loads back.
    final = load_causal_lm(out, "bfloat16")
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"
    assert {p.dtype for p in final.parameters()} == {torch.bfloat16}
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    dcp_to_torch_save(last / "pytorch_model_fsdp_0", tmp_path / "ckpt.pt")
    sharded = torch.load(tmp_path / "ckpt.pt", weights_only=True)["model"]
    initial = load_causal_lm(base).state_dict()
    moved = 0
    for name, value in final.state_dict().items():
        assert torch.equal(value, sharded[name].to(torch.bfloat16)), name
        moved += not torch.equal(value, initial[name].to(torch.bfloat16))
    assert moved > len(initial) // 2, "the optimizer steps left the weights as they were"
    # The sha256 of its files recorded at save time, as the manifest reports them.
    assert model_hash(out) == (sha256_tree(out), "recorded") and (out / HASHES).is_file()
    # A job killed after checkpoint-2 resumes from its shards (weights, optimizer, schedule) to the same model.
    shutil.rmtree(last)
    shutil.rmtree(out)
    assert f"resuming from {ckpt / 'checkpoint-2'}" in launch(cmd, env, tmp_path)
    again = load_causal_lm(out, "bfloat16").state_dict()
    assert all(torch.equal(again[name], value) for name, value in final.state_dict().items())


def launch(cmd: list[str], env: dict, cwd: Path) -> str:
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, timeout=300)
    log = res.stdout + res.stderr
    assert res.returncode == 0, log[-4000:]
    return log


def test_adafactor_on_fsdp2_stops_before_training_with_the_fix():
    from types import SimpleNamespace

    from apipack.train import check_sharding

    with pytest.raises(ValueError, match="adafactor does not step on FSDP2.*use adamw_torch"):
        check_sharding("adafactor", SimpleNamespace(is_fsdp2=True))
    check_sharding("adafactor", SimpleNamespace(is_fsdp2=False))  # FSDP1, DDP or one process
    check_sharding("adamw_torch", SimpleNamespace(is_fsdp2=True))
