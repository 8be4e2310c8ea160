"""The workflow through profiles/slurm on a real SLURM cluster (scripts/slurm/setup_cluster.sh).

Skipped, with a message, where no cluster answers: `make test` passes on a laptop too.
"""

import re
import shutil
import subprocess
from pathlib import Path

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


# Optimizer steps of the time-limit test, on one thread: more than its first attempt can train
# before SLURM ends it (60-90 s after it starts; 0.044 CPU s a step, 110 s for all, unloaded), few
# enough that the retry finishes within its 15 minutes under load (0.15 s a step at load 8.6).
TIME_LIMIT_STEPS = 2500


def snakemake_slurm(tmp_path, config: dict, *extra) -> Run:
    return snakemake("--workflow-profile", "profiles/slurm", *LOCAL, *extra, workdir=tmp_path / "run",
                     config=config, check=False, timeout=900)


@pytest.fixture(scope="module")
def tiny_workflow(tmp_path_factory) -> tuple[Path, Run]:
    """The tiny workflow run through SLURM once; the time-limit test trains again in its folder."""
    tmp_path = tmp_path_factory.mktemp("slurm")
    config = yaml.safe_load((ROOT / "tests/configs/slurm.yaml").read_text())
    return tmp_path, snakemake_slurm(tmp_path, config, "--retries", "0")


def test_tiny_workflow_runs_through_slurm(tiny_workflow):
    tmp_path, res = tiny_workflow
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


def with_finetune_resources(*resources: str) -> list[str]:
    """LOCAL with more --set-resources of rule finetune (the option takes every word up to the next)
    and one thread for it (OMP_NUM_THREADS=1: two threads on 2 busy cores wait on each other)."""
    at = LOCAL.index("--set-resources") + 1
    args = [*LOCAL[:at], *resources, *LOCAL[at:]]
    args[args.index("finetune=2")] = "finetune=1"
    return args


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_training_killed_at_its_time_limit_resumes_in_the_retry(tiny_workflow):
    """Attempt 1 gets 1 minute (sbatch -t 1), less than its training takes: SLURM's SIGTERM at the
    limit makes it save a checkpoint (the only one: save_steps is beyond the run) and exit; Snakemake
    submits the job again (profile retries) with 15 minutes, and training resumes from that checkpoint
    (not from the tiny workflow's own checkpoints: other settings)."""
    tmp_path, first = tiny_workflow
    assert first.returncode == 0, first.out[-4000:]  # its data, splits, model and tokenized set are reused
    config = yaml.safe_load((ROOT / "tests/configs/slurm.yaml").read_text())
    config["finetune"].update(max_steps=TIME_LIMIT_STEPS, save_steps=100_000)
    run, target = tmp_path / "run", "results/models/ft/tiny/python"
    profile = yaml.safe_load((ROOT / "profiles/slurm/config.yaml").read_text())
    assert profile["set-resources"]["finetune"]["slurm_extra"].startswith("--signal=TERM@")
    res = snakemake("--workflow-profile", "profiles/slurm", *with_finetune_resources(
        "finetune:runtime=1+14*(attempt>1)", "finetune:slurm_extra=''"), "--retries", "1", target,
        workdir=run, config=config, check=False, timeout=1400)
    assert res.returncode == 0, res.out[-4000:]
    assert "Trying to restart job" in res.out
    slurm_logs = "\n".join(p.read_text() for p in (run / ".snakemake/slurm_logs").rglob("*.log"))
    assert "DUE TO TIME LIMIT" in slurm_logs
    log = (run / "logs/finetune/tiny/python.log").read_text()  # the retry's
    resumed = re.search(r"resuming from results/checkpoints/tiny/python/checkpoint-(\d+)", log)
    assert resumed and 2 < int(resumed[1]) < TIME_LIMIT_STEPS, log[-3000:]  # not the first run's checkpoint-2
    curve = pd.read_csv(run / "results/train_logs/tiny/python.csv")
    assert curve["step"].iloc[-1] == TIME_LIMIT_STEPS
    assert (run / target / "adapter_model.safetensors").is_file()
