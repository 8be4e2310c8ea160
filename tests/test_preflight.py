"""The preflight's arithmetic (apipack.cost, apipack.preflight.projection) on cases worked out by
hand, and its parameter count against real models. The preflight run itself is checked in
tests/test_paper_path.py (on the CPU rehearsal) and planned there with both profiles."""

import json
import math

import pytest
import yaml
from datasets import Dataset

from apipack.config import ConfigError, check_references
from apipack.cost import Hardware, TrainJob, llama_shape, mfu, train_cost
from apipack.preflight import merged_config
from apipack.projection import preflight_job, projection, published
from conftest import ROOT, schema_config

# A Llama config small enough to count by hand.
TINY = {"hidden_size": 64, "num_hidden_layers": 2, "intermediate_size": 128, "vocab_size": 100,
        "num_attention_heads": 4, "num_key_value_heads": 4, "tie_word_embeddings": False}
# attention 4 x 64 x 64 = 16,384; MLP 3 x 64 x 128 = 24,576; 2 norms 128 -> 41,088 a layer;
# 2 layers + final norm 64 = 82,240; embeddings 2 x 100 x 64 = 12,800 -> 95,040 parameters;
# in matrix products: 82,240 + the output layer 6,400 = 88,640.
PARAMS, MATMUL = 95_040, 88_640


def test_parameter_count_by_hand_and_of_real_models():
    shape = llama_shape(TINY)
    assert (shape.params, shape.matmul_params) == (PARAMS, MATMUL)
    # F = 6 x 88,640 + 12 x 2 layers x 64 x 500 tokens = 531,840 + 768,000
    assert shape.flops_per_token(500) == 1_299_840
    # CodeLlama-7b-hf: 6,738,546,688 parameters (its safetensors index); Mistral-7B-v0.1: 7,241,732,096.
    import yaml

    known = yaml.safe_load((ROOT / "resources/model_configs.yaml").read_text())
    assert llama_shape(known["codellama/CodeLlama-7b-hf"]).params == 6_738_546_688
    assert llama_shape(known["mistralai/Mistral-7B-v0.1"]).params == 7_241_732_096
    with pytest.raises(ValueError, match="'hidden_size'"):
        llama_shape({"num_hidden_layers": 2})


def test_parameter_count_of_a_built_model():
    """The count from config.json equals the parameters of the model transformers builds."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    for tied, kv in ((False, 4), (True, 2)):
        cfg = {**TINY, "tie_word_embeddings": tied, "num_key_value_heads": kv}
        with torch.device("meta"):  # shapes only
            model = LlamaForCausalLM(LlamaConfig(**cfg))
        assert llama_shape(cfg).params == sum(p.numel() for p in model.parameters())


def test_mfu_by_hand():
    # 1,000 tokens/s per GPU x 1,299,840 FLOPs per token / 2.59968e9 FLOP/s = 50 %
    assert mfu(1000, 1_299_840, 2.59968e9) == pytest.approx(0.5)


HW = Hardware(peak_flops=1e12, mfu=0.5, items_per_s=2.0, preflight_params=PARAMS // 2, model_bytes_per_param=2.0,
              checkpoint_bytes_per_param=6.0, bytes_per_token=8.0)


def test_train_job_cost_by_hand():
    job = TrainJob("m", "t", sequences=2000, tokens=1_000_000, source="published statistics (projected)")
    cost = train_cost(job, llama_shape(TINY), HW, epochs=2, gpus=4, nodes=2, kept_checkpoints=2)
    # 2,000 sequences of 500 tokens, 2 epochs: 2e6 tokens x 1,299,840 FLOPs = 2.59968e12 FLOPs
    # at 0.5 x 1e12 FLOP/s = 5.19936 GPU-seconds
    assert cost["train_tokens"] == 2_000_000 and cost["flops_per_token"] == 1_299_840
    assert cost["gpu_hours"] == pytest.approx(5.19936 / 3600)
    assert cost["wall_hours"] == pytest.approx(5.19936 / 3600 / 8)  # 4 GPUs x 2 nodes
    assert cost["node_hours"] == pytest.approx(5.19936 / 3600 / 4)  # = wall hours x 2 nodes
    # model 95,040 x 2 B = 190,080; 2 checkpoints x 95,040 x 6 B = 1,140,480; 1e6 tokens x 8 B
    assert cost["disk_bytes"] == 190_080 + 1_140_480 + 8_000_000


def grid(tmp_path):
    results = tmp_path / "results"
    (results / "models/base/m").mkdir(parents=True)
    (results / "models/base/m/config.json").write_text(json.dumps(TINY))
    # (m, tokenized): a tokenized set of 3 sequences, 100 + 200 + 300 tokens
    Dataset.from_dict({"length": [100, 200, 300]}).save_to_disk(results / "tokenized/m/tokenized")
    config = schema_config({
        "languages": ["python", "curl"],
        "models": {"m": {"source": "tiny"}, "api": {"source": "openai", "base_url": "http://x/v1", "api_model": "a"}},
        "train_sets": {"py": {"mixture": {"python": 1000}}, "all": {"mixture": {"python": "all", "curl": 500}},
                       "tokenized": {"mixture": {"python": 3}}},
        "finetune": {"epochs": 2, "gpus": 4, "nodes": 2},
        "generation": {"seeds": [0, 1], "gpus": 1},
        "evaluation": {"max_items": 10},
        "experiments": [
            {"model": "m", "train_set": "py", "languages": ["python"], "levels": [3], "prompt_modes": ["zero_shot"]},
            {"model": "m", "train_set": "all", "languages": ["python"], "levels": [3], "prompt_modes": ["zero_shot"]},
            {"model": "m", "train_set": "tokenized", "languages": ["python"], "levels": [3],
             "prompt_modes": ["zero_shot"]},
            {"model": "api", "train_set": "base", "languages": ["python"], "levels": [3],
             "prompt_modes": ["zero_shot"]},
        ],
    })
    return config, results


def test_grid_projection_by_hand(tmp_path):
    config, results = grid(tmp_path)
    proj = projection(config, results, HW, seq_tokens=500)
    jobs = {j["train_set"]: j for j in proj["train_jobs"]}
    python_all = published()["train_instances"]["python"]  # 98,914
    # py: 1,000 instances in 2 formats = 2,000 sequences x 500 tokens; all: (98,914 + 500) x 2
    assert (jobs["py"]["sequences"], jobs["py"]["train_tokens"]) == (2000, 2000 * 500 * 2)
    assert jobs["all"]["sequences"] == (python_all + 500) * 2 and jobs["all"]["source"].startswith("published")
    # tokenized: its own 3 sequences and 600 tokens (mean 200: F = 531,840 + 12 x 2 x 64 x 200)
    tok = jobs["tokenized"]
    assert (tok["sequences"], tok["train_tokens"], tok["source"]) == (3, 1200, "tokenized set (measured)")
    assert tok["gpu_hours"] == pytest.approx(1200 * (531_840 + 307_200) / 0.5e12 / 3600)
    # generation: 4 cells x 10 items x 2 seeds; m at 2 items/s x (47,520 / 95,040) = 1 item/s
    gen = {g["model"]: g for g in proj["generation"]}
    assert gen["m"]["items"] == 60 and gen["m"]["items_per_s"] == pytest.approx(1.0)
    assert gen["m"]["gpu_hours"] == pytest.approx(60 / 3600)
    assert gen["api"] == {"model": "api", "items": 20, "items_per_s": None, "gpu_hours": 0.0, "api": True}
    total = proj["totals"]
    train_hours = math.fsum(j["gpu_hours"] for j in jobs.values())
    assert total["gpu_hours"] == pytest.approx(train_hours + 60 / 3600)
    assert total["node_hours"] == pytest.approx((train_hours + 60 / 3600) / 4)
    assert total["disk_bytes"] == pytest.approx(
        sum(j["disk_bytes"] for j in jobs.values()) + PARAMS * 2 + published()["download_bytes"])


def test_preflight_config_keeps_the_papers_gpu_paths_and_is_checked():
    """configs/preflight.yaml over configs/paper.yaml: the paper's sharding, optimizer, precision,
    checkpointing and cutoff, a few dozen steps of the paper's batch, and its first job a Llama."""
    cfg = merged_config([str(ROOT / "configs/paper.yaml"), str(ROOT / "configs/preflight.yaml")])
    ft, paper = cfg["finetune"], yaml.safe_load((ROOT / "configs/paper.yaml").read_text())["finetune"]
    assert ft["accelerate_config"] == "configs/accelerate/fsdp.yaml" and ft["method"] == "full"
    keys = ("optimizer", "precision", "gradient_checkpointing", "cutoff_len", "accelerate_config", "global_batch")
    assert {k: ft[k] for k in keys} == {k: paper[k] for k in keys}
    model, train_set = preflight_job(cfg)
    sequences = cfg["train_sets"][train_set]["mixture"]["python"] * 2  # both formats
    steps = sequences * ft["epochs"] // ft["global_batch"]
    assert 24 <= steps <= 60 and ft["save_steps"] < steps  # a few dozen steps, a checkpoint mid-way
    assert cfg["models"][model]["source"] in ("smollm2_wheel", "hub") and cfg["data"]["source"] == "download"
    assert cfg["preflight"]["engines"] == ["hf", "vllm"] and cfg["generation"]["gpus"] >= 1
    bad = schema_config({"models": {"smollm2": {"source": "smollm2_wheel"}}, "preflight": {"api_models": ["smollm2"]}})
    with pytest.raises(ConfigError, match="preflight.api_models: 'smollm2' is not a models entry with source openai"):
        check_references(bad)
    with pytest.raises(ValueError, match="no experiment fine-tunes"):
        preflight_job({"models": {"m": {"source": "tiny"}}, "experiments": [{"model": "m", "train_set": "base"}]})
