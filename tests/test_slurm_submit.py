"""The sbatch and srun lines of a training job under profiles/slurm (1 node x 8 GPUs, 15 nodes x
8 GPUs): the real Snakemake, SLURM plugin and jobstep plugin, with sbatch, srun, sacctmgr and
accelerate replaced by stand-ins that record their arguments (no test cluster takes a 120-GPU
job). The jobstep command that sbatch would run is then run as SLURM would, to see every srun.
"""

import os
import re
import shlex
import subprocess
from pathlib import Path

import yaml

from conftest import ROOT, SNAKEMAKE_ENV, snakemake

SHIMS = {
    # sbatch: record the call, then refuse it (nothing is submitted)
    "sbatch": 'printf "%s\\0" "$@" > "$SHIM_LOG/sbatch"; echo "stand-in sbatch" >&2; exit 1',
    "sacctmgr": "echo testacct",
    # srun: record; run the command of the jobstep plugin's own `srun -n1 --cpu-bind=q ...`
    "srun": (
        'f=$(mktemp "$SHIM_LOG/srun.XXXXXX"); printf "%s\\0" "$@" > "$f"\n'
        'case " $* " in *" --cpu-bind=q "*) ;; *) exit 3;; esac\n'
        'while [ "${1#-}" != "$1" ]; do shift; done; exec "$@"'
    ),
    "accelerate": 'printf "%s\\0" "$@" > "$SHIM_LOG/accelerate"; exit 3',
}


def read_args(path: Path) -> list[str]:
    return path.read_text().split("\0")[:-1]


def submit(tmp_path: Path, gpus: int, nodes: int) -> tuple[list[str], Path]:
    """Run the finetune job through profiles/slurm; return the sbatch arguments."""
    bin_dir, log, run = tmp_path / "bin", tmp_path / "log", tmp_path / "run"
    for folder in (bin_dir, log, run / "results/tokenized/tiny/python", run / "results/models/base/tiny",
                   run / "results/settings/finetune"):
        folder.mkdir(parents=True)
    for name, body in SHIMS.items():
        (bin_dir / name).write_text(f"#!/bin/bash\n{body}\n")
        (bin_dir / name).chmod(0o755)
    (run / "results/tokenized/tiny/python/tokenized.json").write_text("{}")
    (run / "results/models/base/tiny/config.json").write_text("{}")
    (run / "results/settings/finetune/tiny.json").write_text("{}")
    config = yaml.safe_load((ROOT / "tests/configs/slurm.yaml").read_text())
    config["finetune"].update(gpus=gpus, nodes=nodes)
    env = {"PATH": f"{bin_dir}{os.pathsep}{SNAKEMAKE_ENV['PATH']}", "SHIM_LOG": str(log)}
    res = snakemake("results/models/ft/tiny/python", "--workflow-profile", "profiles/slurm", "--retries", "0",
                    "--allowed-rules", "finetune", "--slurm-init-seconds-before-status-checks", "1",
                    "--default-resources", "slurm_account=testacct", "slurm_partition=cpu", "gpu=0",
                    workdir=run, config=config, env=env, check=False, timeout=300)
    assert "stand-in sbatch" in res.out, res.out[-3000:]
    return read_args(log / "sbatch"), {**SNAKEMAKE_ENV, **env}


def run_jobstep(sbatch: list[str], env: dict, run: Path) -> None:
    """Run the command of --wrap as the batch script would, inside a fake allocation."""
    wrap = next(a for a in sbatch if a.startswith("--wrap="))[len("--wrap="):]
    for path in re.findall(r"--wait-for-files '([^']+)'", wrap):
        Path(path).mkdir(parents=True, exist_ok=True)  # the submitting run removed its tmp dir
    job_env = {**env, "SLURM_JOB_ID": "4242", "SLURM_JOB_NODELIST": "gpu[001-015]"}
    res = subprocess.run(["bash", "-c", wrap], cwd=run, capture_output=True, text=True,
                         timeout=300, env=job_env)
    assert res.returncode != 0  # the stand-in launchers fail on purpose


def srun_calls(log: Path) -> list[list[str]]:
    return [read_args(p) for p in sorted(log.glob("srun.*"))]


def test_one_node_eight_gpus(tmp_path):
    sbatch, env = submit(tmp_path, 8, 1)
    line = " ".join(sbatch)
    assert "--gpus=8" in sbatch and "--nodes=1" in sbatch and "-p gpu" in line
    assert "--cpus-per-gpu=8" in sbatch and "-A testacct" in line
    assert " --signal=TERM@600 " in f" {line} "  # SIGTERM 10 min before the limit: save and exit
    assert not any(a.startswith(("--ntasks", "--gres")) for a in sbatch)
    run_jobstep(sbatch, env, tmp_path / "run")
    calls = srun_calls(tmp_path / "log")
    assert len(calls) == 1, calls  # the jobstep's own srun; the rule adds none
    assert calls[0][:2] == ["-n1", "--cpu-bind=q"] and "--gpus=8" in calls[0]
    acc = read_args(tmp_path / "log/accelerate")
    assert acc[:4] == ["launch", "--multi_gpu", "--num_processes", "8"]
    assert "--num_machines" not in acc and acc[acc.index("-m") + 1] == "apipack.train"


def test_fifteen_nodes_eight_gpus_each(tmp_path):
    sbatch, env = submit(tmp_path, 8, 15)
    assert "--nodes=15" in sbatch and "--ntasks=15" in sbatch  # one task (launcher) per node
    assert "--gres=gpu:8" in sbatch  # --gres counts per node; --gpus would count per job
    assert not any(a.startswith(("--gpus", "--ntasks-per-gpu")) for a in sbatch)
    run_jobstep(sbatch, env, tmp_path / "run")
    calls = srun_calls(tmp_path / "log")
    assert len(calls) == 1, calls  # the rule's srun only: the jobstep does not wrap MPI jobs
    srun = calls[0]
    assert srun[:5] == ["--nodes", "15", "--ntasks-per-node", "1", "--kill-on-bad-exit"]
    script = srun[srun.index("-c") + 1]
    words = shlex.split(script)
    assert words[:4] == ["accelerate", "launch", "--multi_gpu", "--num_processes"]
    assert words[4] == "120" and words[words.index("--num_machines") + 1] == "15"
    assert "$SLURM_NODEID" in script and "$SLURM_JOB_NODELIST" in script
    assert "--data" in srun and srun[srun.index("--base") + 1] == "results/models/base/tiny"
