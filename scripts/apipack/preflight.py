"""The preflight in one command (docs/preflight.md): ``python -m apipack.preflight
--workflow-profile profiles/workstation`` (or profiles/slurm) downloads on this node, trains the
preflight job and interrupts it after its first checkpoint, unlocks, then runs target
``preflight``: training resumes, the engines are timed and results/preflight/report.md written.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from .projection import preflight_job


def merged_config(files: list[str]) -> dict:
    """The config files merged as Snakemake merges several --configfile (later keys win)."""
    from snakemake.utils import update_config

    config: dict = {}
    for f in files:
        update_config(config, yaml.safe_load(Path(f).read_text()) or {})
    return config


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children, grandchildren, ...), read from /proc."""
    parent = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parent[int(stat.parent.name)] = int(fields[1])
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        kids = [p for p, pp in parent.items() if pp == current]
        found += kids
        todo += kids
    return found


def interrupt_after_checkpoint(cmd: list[str], cwd: Path, folder: Path, env: dict | None = None,
                               gentle: bool = False, timeout: float = 3600) -> None:
    """Run ``cmd`` (the training job) and interrupt it once ``folder`` holds a complete checkpoint:
    ``gentle``, Ctrl-C (Snakemake cancels its SLURM jobs), else kill -9 of every process of the
    workflow, as a node failure would (torchrun starts its workers in sessions of their own)."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    start = time.time()
    try:
        while not list(folder.glob("checkpoint-*/trainer_state.json")):
            if proc.poll() is not None:  # 0: nothing left to train
                if proc.returncode:
                    raise RuntimeError(f"{' '.join(cmd)}: failed (exit {proc.returncode}) before its first checkpoint")
                return
            if time.time() - start > timeout:
                raise TimeoutError(f"no checkpoint in {folder} after {timeout:.0f} s")
            time.sleep(0.5)
        if gentle:
            proc.send_signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(300)
    finally:
        for pid in [proc.pid, *descendants(proc.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Preflight of the paper path on this machine's GPUs "
                                     "(docs/preflight.md)")
    parser.add_argument("--workflow-profile", default="profiles/workstation")
    parser.add_argument("--configfile", nargs="+", default=["configs/paper.yaml", "configs/preflight.yaml"])
    parser.add_argument("--dry-run", action="store_true", help="plan every step, run nothing")
    a, extra = parser.parse_known_args(argv)
    smk = [sys.executable, "-m", "snakemake"]
    configs = ["--configfile", *a.configfile]
    profile = ["--workflow-profile", a.workflow_profile, *extra]
    model, train_set = preflight_job(merged_config(a.configfile))
    target = f"results/models/ft/{model}/{train_set}"
    slurm = (yaml.safe_load((Path(a.workflow_profile) / "config.yaml").read_text()) or {}).get("executor") == "slurm"
    steps = [
        [*smk, "download", "--cores", "4", *configs],  # the network: the login node, not the compute nodes
        [*smk, target, *profile, *configs],  # interrupted after its first checkpoint
        [*smk, "--unlock", *configs],
        [*smk, "preflight", *profile, *configs],  # resumes training, generates, reports
    ]
    if a.dry_run:
        for step in steps:
            print("$", " ".join(step), flush=True)
        subprocess.run([*steps[-1], "-n"], check=True)
        return
    subprocess.run(steps[0], check=True)
    print(f"training {target}; interrupting it after its first checkpoint", flush=True)
    interrupt_after_checkpoint(steps[1], Path.cwd(), Path(f"results/checkpoints/{model}/{train_set}"), gentle=slurm)
    subprocess.run(steps[2], check=True)
    subprocess.run(steps[3], check=True)
    print("report: results/preflight/report.md", flush=True)


if __name__ == "__main__":
    main()
