"""The whole workflow: lint, formatting, and a tiny end-to-end run (twice).

Runs are `snakemake --configfile tests/configs/tiny.yaml --directory DIR` from the project root: a
--configfile replaces config.yaml (the Snakefile loads it only without one), so each run holds
exactly what a user gets from that command in a checkout; --directory keeps the two runs apart.
The paper config and its CPU rehearsal run from the root of a checkout copy (test_paper_path.py).
"""

import filecmp
import hashlib
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from apipack.data import load_instances
from apipack.files import read_json
from conftest import ROOT, job_stats, snakemake

TINY = ROOT / "tests" / "configs" / "tiny.yaml"
FAMILIES = ("model_battle", "scaling", "cross_lingual", "parity", "structural")


# Every run sees canary secrets, which must never reach a log, a result or the report.
SECRETS = {"HF_TOKEN": "hf_canaryQ7xV2mZ9", "OPENAI_API_KEY": "sk-canary-4Rt8LpW1"}


def tiny(*args, workdir: Path, config: Path = TINY) -> str:
    """A run of the tiny config (or another) in ``workdir``, from the project root."""
    return snakemake(*args, workdir=workdir, config=config, env=SECRETS).out


@pytest.fixture(scope="module")
def run_a(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("run_a")
    tiny("--cores", "2", workdir=d)
    return d


@pytest.fixture(scope="module")
def run_b(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("run_b")
    tiny("results/metrics/metrics.csv", "results/splits/statistics.csv", "results/metrics/cells.csv",
         "results/metrics/comparisons.csv", "results/metrics/leakage.csv", "--cores", "2", workdir=d)
    return d


def test_metrics_table_covers_every_cell(run_a):
    cfg = yaml.safe_load(TINY.read_text())
    table = pd.read_csv(run_a / "results/metrics/metrics.csv")
    expected = sum(len(e["languages"]) * len(e.get("levels", [1, 2, 3])) * len(e.get("prompt_modes", [0, 0]))
                   for e in cfg["experiments"])
    assert len(table) == expected
    assert table["n"].between(1, cfg["evaluation"]["max_items"]).all()
    for m in ("endpoint", "api_call"):
        assert ((table[f"{m}_lo"] <= table[f"{m}_acc"]) & (table[f"{m}_acc"] <= table[f"{m}_hi"])).all()
    labels = [c for c in table if c.startswith("error_")]
    assert (table[labels].sum(axis=1) == table["n"]).all()


def test_figures_exist_and_agree_with_the_metrics_table(run_a):
    table = pd.read_csv(run_a / "results/metrics/metrics.csv").groupby(
        ["train_set", "lang", "level", "mode"])[["endpoint_acc", "api_call_acc"]].mean()
    for family in FAMILIES:
        for ext in ("png", "pdf"):
            assert (run_a / f"results/figures/{family}.{ext}").stat().st_size > 5000, family
        data = pd.read_csv(run_a / f"results/figures/{family}.csv")
        if family == "parity":
            assert {"api_call_acc_ours", "api_call_acc_paper"} <= set(data)
            continue
        assert len(data), family
        for _, row in data[data["train_set"] != "none"].iterrows():
            ours = table.loc[(row["train_set"], row["lang"], row["level"], row["mode"])]
            assert ours["api_call_acc"] == pytest.approx(row["api_call_acc"], abs=1e-4), family


def test_comparisons_leakage_and_manifest(run_a):
    comps = pd.read_csv(run_a / "results/metrics/comparisons.csv")
    assert set(comps["metric"]) == {"endpoint", "api_call", "method", "host", "path"}
    assert {"finetune_vs_base", "level", "scaling", "mixture_vs_curl"} <= set(comps["claim"])
    assert (comps["p_holm"] >= comps["p_value"] - 1e-12).all() and comps["p_value"].between(0, 1).all()
    assert (comps.loc[comps["paired"], "n_a"] == comps.loc[comps["paired"], "n_b"]).all()
    cells = pd.read_csv(run_a / "results/metrics/cells.csv")
    zero = cells[cells["api_call_acc"] == 0]
    assert (zero["api_call_hi"] > 0).all()  # 0/n is not [0, 0]
    leak = pd.read_csv(run_a / "results/metrics/leakage.csv")
    assert set(leak["train_set"]) == {"python", "python-s", "curl", "curl-mix"}
    assert leak[["item_in_train", "call_in_train", "instruction_in_train"]].stack().between(0, 1).all()
    curl_only = leak[(leak["train_set"] == "curl") & (leak["lang"] != "curl")]
    assert len(curl_only) and (curl_only["item_in_train"] == 0).all()  # ids repeat across languages
    manifest = json.loads((run_a / "results/metrics/manifest.json").read_text())
    assert manifest["git"]["commit"] and manifest["packages"]["statsmodels"]
    finetuned = {f"ft/tiny/{name}" for name in ("python", "python-s", "curl", "curl-mix")}
    assert set(manifest["models"]) == {"base/tiny", *finetuned}
    for path, digest in manifest["files"].items():
        assert hashlib.sha256((run_a / path).read_bytes()).hexdigest() == digest, path
    assert any(p.startswith("results/splits/python/level1") for p in manifest["files"])


def test_built_data_is_in_the_published_format(run_a):
    for lang in ("curl", "python", "java"):
        loaded = load_instances(run_a / f"results/data/raw/total_data_cleaned_{lang}.json", lang)
        assert len(loaded.instances) > 50
    summary = pd.read_csv(run_a / "results/data/build_summary.csv").set_index("stage")
    assert summary.loc["specs_selected", "all"] == 12
    assert summary.loc["kept", "python"] == len(read_json(run_a / "results/data/raw/total_data_cleaned_python.json"))


def test_two_runs_are_byte_identical(run_a, run_b):
    files = ["results/metrics/metrics.csv", "results/splits/statistics.csv"]
    files += [f"results/metrics/{name}" for name in ("cells.csv", "comparisons.csv", "leakage.csv")]
    files += [str(p.relative_to(run_a)) for p in (run_a / "results/splits").rglob("manifest.json")]
    files += [str(p.relative_to(run_a)) for p in (run_a / "results/prompts").rglob("*.jsonl")]
    assert len(files) > 10
    for f in files:
        assert filecmp.cmp(run_a / f, run_b / f, shallow=False), f


# Every config edit reruns the two records of the config (effective_config, manifest) and `all`.
RECORDS = {"effective_config", "manifest", "all"}


def changed_config(tmp_path: Path, edit) -> Path:
    cfg = yaml.safe_load(TINY.read_text())
    edit(cfg)
    path = tmp_path / "changed.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def rerun(run: Path, config: Path, *args) -> dict[str, int]:
    """{rule: jobs} of a dry run (without the total)."""
    jobs = job_stats(tiny("-n", *args, workdir=run, config=config))
    return {rule: n for rule, n in jobs.items() if rule != "total"}


# (what changes, config edit, {rule: jobs} that rerun besides RECORDS)
RERUNS = [
    ("logging interval", lambda c: c["finetune"].update(logging_steps=2), {}),
    ("save interval", lambda c: c["finetune"].update(save_steps=3), {}),
    ("GPU count", lambda c: c["finetune"].update(gpus=2, accelerate_config="configs/accelerate/fsdp.yaml"), {}),
    ("nodes", lambda c: c["finetune"].update(nodes=2, gpus=4), {}),
    ("per-device batch", lambda c: c["finetune"].update(per_device_batch=2), {}),
    ("generation GPUs", lambda c: c["generation"].update(gpus=1), {}),
    ("reranker depth without a reranker", lambda c: c["prompts"]["retrieval"].update(reranker={"top": 9}), {}),
    # model_battle is no longer drawn (no curl cell of its train set): the other 4 figures
    ("a figures key", lambda c: c["figures"].update(model_battle_language="curl"), {"figure": 4}),
    # a new seed: its own 15 generations, not the existing ones
    ("a sampling seed", lambda c: c["generation"].update(seeds=[0, 1]),
     {"generate": 15, "score": 15, "metrics": 1, "comparisons": 1, "figure": 5}),
    # retrieval: the 3 retrieval 3-shot cells (python, levels 1-3) and what follows them
    ("retrieval embedder", lambda c: c["prompts"]["retrieval"].update(embedder="bm25"),
     {"eval_prompts": 3, "generate": 3, "score": 3, "metrics": 1, "comparisons": 1, "figure": 5}),
    ("retrieval batch size", lambda c: c["prompts"]["retrieval"].update(batch_size=2),
     {"embed": 1, "eval_prompts": 3, "generate": 3, "score": 3, "metrics": 1, "comparisons": 1, "figure": 5}),
    ("the learning rate", lambda c: c["finetune"].update(learning_rate=0.002),
     {"finetune_settings": 1, "finetune": 4, "loss_curve": 4, "generate": 13, "score": 13, "metrics": 1,
      "comparisons": 1, "figure": 5}),
]


@pytest.mark.parametrize("edit,expected", [r[1:] for r in RERUNS], ids=[r[0] for r in RERUNS])
def test_a_config_change_reruns_exactly_the_jobs_that_depend_on_it(run_a, tmp_path, edit, expected):
    assert rerun(run_a, TINY) == {}
    jobs = rerun(run_a, changed_config(tmp_path, edit))
    assert {rule: n for rule, n in jobs.items() if rule not in RECORDS} == expected
    assert set(jobs) >= RECORDS


def test_a_change_in_metric_code_rescores_but_never_retrains(run_a, tmp_path):
    """A copy of the workflow, once as it is and once with a changed apipack/metrics.py."""
    def copy(name: str) -> Path:
        wf = tmp_path / name
        wf.mkdir()
        for part in ("Snakefile", "rules", "scripts", "schemas", "profiles", "resources", "envs", "report",
                     "configs"):
            src = ROOT / part
            (shutil.copytree if src.is_dir() else shutil.copy)(src, wf / part)
        return wf

    same, changed = copy("same"), copy("changed")
    with open(changed / "scripts/apipack/metrics.py", "a") as fh:
        fh.write("\n# a fix in the metric code\n")
    before = rerun(run_a, TINY, "--snakefile", str(same / "Snakefile"))
    after = rerun(run_a, TINY, "--snakefile", str(changed / "Snakefile"))
    assert "score" not in before  # the copy alone moves paths only (figure inputs, manifest)
    assert after["score"] == 15 and after["metrics"] == after["comparisons"] == 1 and "figure" in after
    assert not {"finetune", "generate", "eval_prompts", "train_set", "splits"} & set(after)


def test_report_builds(run_a):
    tiny("--report", "report.html", workdir=run_a)
    html = (run_a / "report.html").read_text(errors="replace")
    for name in ("metrics.csv", "statistics.csv", "build_summary.csv", *[f"{f}.png" for f in FAMILIES]):
        assert name in html, name


def test_secrets_never_reach_logs_results_or_report(run_a):
    tiny("--report", "report.html", workdir=run_a)
    files = [p for p in run_a.rglob("*") if p.is_file()]
    scanned = {p.relative_to(run_a).parts[0] for p in files}
    assert {"results", "logs", "report.html", ".snakemake"} <= scanned
    for path in files:
        data = path.read_bytes()
        for name, value in SECRETS.items():
            assert value.encode() not in data, f"{name} leaked into {path}"
