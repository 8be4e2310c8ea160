"""The recipe of docs/own-model.md: configs/own_model.yaml evaluates a local folder, a LoRA adapter
trained outside the workflow on a base model, and an OpenAI-compatible endpoint. Run with the
tiny config's data and stand-in models made here (a random Llama, a peft adapter on it), from the
project root of a checkout copy, as the recipe says."""

import json

import pandas as pd
import pytest
import yaml

from apipack.config import ConfigError, check_references
from apipack.files import read_jsonl
from apipack.generate import generate_file, make_engine
from apipack.models import build_tiny
from apipack.settings import GenerationSettings, ModelSource
from conftest import ROOT, chat_server, checkout_copy, random_lora, schema_config, snakemake

RECIPE = "configs/own_model.yaml"
REPLY = "**api_call**:\ncurl https://api.example.com/v1/items\n**api_provider**: example"


def test_recipe_evaluates_a_folder_an_adapter_and_an_endpoint(tmp_path):
    import torch

    root = checkout_copy(tmp_path / "apipack")
    recipe = yaml.safe_load((root / RECIPE).read_text())
    models = root / "my_models"
    texts = ["conn.request('GET', '/v1/items')", "**api_call**: curl https://api.example.com"] * 50
    build_tiny(models / "model", texts, seed=1)
    build_tiny(models / "base", texts, seed=2)
    torch.manual_seed(0)
    random_lora(models / "base", models / "lora", 4)  # an adapter trained elsewhere: no tokenizer
    with chat_server(lambda body: REPLY) as (url, seen):
        server = root / "server.yaml"
        server.write_text(yaml.safe_dump({"models": {"my-endpoint": {"base_url": url}}}))
        # the tiny config's data in place of the default study's (config.yaml): fast stand-ins
        run = snakemake("--cores", "2", "--configfile",
                        str(ROOT / "tests/configs/tiny.yaml"), RECIPE, str(server), cwd=root)
    cells = pd.read_csv(root / "results/metrics/cells.csv")
    expected = {(e["model"], lvl, mode) for e in recipe["experiments"] for lvl in e["levels"]
                for mode in e["prompt_modes"]}
    assert set(zip(cells["model"], cells["level"], cells["mode"])) == expected
    assert (cells["train_set"] == "base").all() and (cells["n"] == 4).all()
    assert "rule finetune" not in run.out  # evaluated as they are, never trained
    assert not (root / "results/models/base/my-endpoint").exists()
    assert len(seen) == 4 and all(body["model"] == "my-model" for body, _ in seen)
    endpoint = read_jsonl(root / "results/generations/my-endpoint/base/python/L3_zero_shot_s0.jsonl")
    assert all(r["output"] == REPLY for r in endpoint)
    # the adapter was applied: the base model alone answers the same prompts otherwise
    cell = "python/L3_zero_shot"
    lora = read_jsonl(root / f"results/generations/my-lora/base/{cell}_s0.jsonl")
    gen = GenerationSettings.from_config(yaml.safe_load((root / "results/config.yaml").read_text()))
    generate_file(str(root / f"results/prompts/test/{cell}.jsonl"), str(tmp_path / "plain.jsonl"),
                  make_engine(str(models / "base"), None, gen), gen.batch_size, 0)
    assert [r["output"] for r in lora] != [r["output"] for r in read_jsonl(tmp_path / "plain.jsonl")]
    models = json.loads((root / "results/metrics/manifest.json").read_text())["models"]
    assert set(models) == {"base/my-model", "base/my-lora", "adapter/my-lora"}  # the endpoint has no files
    assert models["adapter/my-lora"]["weights_sha256"] != models["base/my-lora"]["weights_sha256"]


def test_an_adapter_entry_is_evaluated_only_as_it_is():
    config = schema_config({"models": {"mine": {"source": "local", "path": "b", "adapter": "a"}},
                            "train_sets": {"py": {"mixture": {"python": 8}}},
                            "experiments": [{"model": "mine", "train_set": "py", "languages": ["python"]}]})
    with pytest.raises(ConfigError, match=r"experiments\[0\].train_set: 'mine' has an adapter"):
        check_references(config)
    config["experiments"][0]["train_set"] = "base"
    check_references(config)
    config["models"]["mine"] = {"source": "openai", "base_url": "u", "api_model": "m", "adapter": "a"}
    with pytest.raises(ConfigError, match=r"models.mine.adapter: an API model"):
        check_references(config)
    source = ModelSource.from_config(config, "mine")
    assert source.param()["adapter"] == "a" and "adapter" not in source.without_adapter().param()
