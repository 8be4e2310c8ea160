"""Rules name existing envs (their contents: tests/test_envs.py); config errors name the key."""

import re

import pytest

from apipack.config import ConfigError, check_references, experiment_cells
from conftest import ROOT, snakemake


def test_every_rule_names_an_existing_env():
    for smk in (ROOT / "rules").glob("*.smk"):
        for env in re.findall(r'conda:\s*\n\s*"\.\./(envs/[\w.]+)"', smk.read_text()):
            assert (ROOT / env).is_file(), f"{smk.name}: {env}"


def dry_run(tmp_path, config: dict) -> tuple[int, str]:
    run = snakemake("-n", workdir=tmp_path, config=config, check=False)
    return run.returncode, run.out


BASE = {"experiments": [{"model": "smollm2", "train_set": "base", "languages": ["curl"]}]}


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"finetun": {}}, "finetun"),
        ({"finetune": {"method": "lora2"}}, "lora2"),
        ({"experiments": [{"model": "smollm2", "train_set": "base", "languages": ["curl"], "levels": [4]}]}, "4"),
        ({"generation": {"batch_size": 0}}, "batch_size"),
        ({"data": {"on_bad_record": "ignore"}}, "ignore"),
    ],
)
def test_schema_errors_stop_before_any_job(tmp_path, change, expected):
    rc, out = dry_run(tmp_path, {**BASE, **change})
    assert rc != 0
    assert expected in out and "validat" in out.lower()
    assert not (tmp_path / "results").exists()


def test_reference_errors_name_the_key(tmp_path):
    rc, out = dry_run(tmp_path, {"experiments": [{"model": "gpt9", "train_set": "base", "languages": ["curl"]}]})
    assert rc != 0 and "experiments[0].model: 'gpt9' is not in models" in out
    cfg = {"models": {"m": {"source": "hub", "repo": "x/y"}}, "languages": ["curl"], "train_sets": {},
           "prompts": {"tokenizer": None, "retrieval": {}}, "experiments": [],
           "data": {"build": {"instructions": "template"}}}
    with pytest.raises(ConfigError, match=r"models.m.revision: required"):
        check_references(cfg)
    cfg["models"]["m"]["revision"] = "abc"
    cfg["data"]["build"] = {"instructions": "hf", "llm": {"model": "nope", "scorer": None}}
    with pytest.raises(ConfigError, match=r"data.build.llm.scorer: 'nope' is not in models"):
        check_references(cfg)


def test_experiment_cells_are_the_grid():
    cfg = {"experiments": [{"model": "m", "train_set": "t", "languages": ["curl", "java"], "levels": [1, 3]},
                           {"model": "m", "train_set": "t", "languages": ["curl"], "levels": [1]}]}
    cells = experiment_cells(cfg)
    assert len(cells) == 2 * 2 * 2  # duplicates of the second entry are dropped
    assert {c["mode"] for c in cells} == {"zero_shot", "retrieval_3shot"}
