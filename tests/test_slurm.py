"""The workflow through profiles/slurm on a real SLURM cluster (scripts/slurm/setup_cluster.sh).

Skipped, with a message, where no cluster answers: `make test` passes on a laptop too.
"""

import shutil
import subprocess

import pandas as pd
import pytest
import yaml

from apipack.config import figure_families
from conftest import ROOT, Run, snakemake


def cluster_up() -> bool:
    if shutil.which("sinfo") is None:
        return False
    res = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
    return res.returncode == 0 and any(s in res.stdout for s in ("idle", "mixed", "allocated"))


pytestmark = [
    pytest.mark.slurm,
    pytest.mark.skipif(
        not cluster_up(),
        reason="no SLURM cluster answers sinfo; start one with scripts/slurm/setup_cluster.sh (root)",
    ),
]

# Local values for the site-specific lines of profiles/slurm (a 2-CPU node, partition debug).
LOCAL = [
    "--slurm-no-account",
    "--slurm-init-seconds-before-status-checks", "2",
    "--jobs", "4",
    "--latency-wait", "5",
    "--default-resources", "slurm_partition=debug", "runtime=30", "mem_mb=1500", "gpu=0",
    "--set-resources", "finetune:mem_mb=3000", "generate:mem_mb=3000", "prepare_model:mem_mb=2000",
    "--set-threads", "finetune=2", "generate=2",
]


def snakemake_slurm(tmp_path, config: dict, *extra) -> Run:
    return snakemake("--workflow-profile", "profiles/slurm", *LOCAL, *extra, workdir=tmp_path / "run",
                     config=config, check=False, timeout=900)


def test_tiny_workflow_runs_through_slurm(tmp_path):
    config = yaml.safe_load((ROOT / "tests/configs/slurm.yaml").read_text())
    res = snakemake_slurm(tmp_path, config, "--retries", "0")
    out = res.out
    assert res.returncode == 0, out[-4000:]
    assert "slurm" in out.lower() and "Job " in out
    metrics = pd.read_csv(tmp_path / "run/results/metrics/metrics.csv")
    assert len(metrics) == 1 and metrics.loc[0, "n"] == 3
    # One fine-tuned Python cell at level 3: the families it fills are drawn, and no other.
    families = figure_families(yaml.safe_load((tmp_path / "run/results/config.yaml").read_text()))
    assert {"model_battle", "parity", "structural"} <= set(families)
    drawn = sorted(p.stem for p in (tmp_path / "run/results/figures").glob("*.png"))
    assert drawn == sorted(families)
    assert all((tmp_path / f"run/results/figures/{fam}.png").stat().st_size > 0 for fam in families)
    assert (tmp_path / "run/results/models/ft/tiny/python/adapter_model.safetensors").is_file()


def test_failing_job_is_reported_and_retried(tmp_path):
    config = yaml.safe_load((ROOT / "tests/configs/slurm.yaml").read_text())
    config["data"]["build"]["specs"] = str(tmp_path / "no-such-folder")
    res = snakemake_slurm(tmp_path, config, "--retries", "1", "results/data/specs/manifest.json")
    out = res.out
    assert res.returncode != 0
    assert "Error in rule select_specs" in out and "no-such-folder" in out
    assert "failed" in out.lower() and "Trying to restart job" in out
