"""Concurrent GPU jobs on one workstation get disjoint CUDA_VISIBLE_DEVICES (apipack.gpu_slots)."""

import os
import subprocess
import sys
import time

from conftest import ROOT

# Each job prints the GPUs it was given, then holds them for a moment.
JOB = "import os, time; print(os.environ['CUDA_VISIBLE_DEVICES'], flush=True); time.sleep(1.5)"


def start(n: int, env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "apipack.gpu_slots", str(n), "--", sys.executable, "-c", JOB],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def workstation_env(tmp_path, visible: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.update(CUDA_VISIBLE_DEVICES=visible, APIPACK_GPU_LOCKS=str(tmp_path / "locks"),
               PYTHONPATH=str(ROOT / "scripts"))
    return env


def test_concurrent_jobs_get_disjoint_gpus(tmp_path):
    env = workstation_env(tmp_path, "0,1,2,3")
    jobs = [start(2, env), start(1, env), start(1, env)]  # 4 GPUs asked, 4 there: all at once
    got = [p.communicate(timeout=60)[0].split() for p in jobs]
    assert all(p.returncode == 0 for p in jobs)
    ids = [g for out in got for g in out[0].split(",")]
    assert sorted(ids) == ["0", "1", "2", "3"] and [len(o[0].split(",")) for o in got] == [2, 1, 1]


def test_a_job_waits_until_gpus_are_free(tmp_path):
    env = workstation_env(tmp_path, "5")
    t0 = time.monotonic()
    first, second = start(1, env), start(1, env)
    outs = [p.communicate(timeout=60)[0].strip() for p in (first, second)]
    assert outs == ["5", "5"] and time.monotonic() - t0 > 2.9  # one after the other


def test_too_many_gpus_and_slurm_jobs(tmp_path):
    env = workstation_env(tmp_path, "0")
    res = subprocess.run(
        [sys.executable, "-m", "apipack.gpu_slots", "2", "--", "true"],
        env=env, capture_output=True, text=True,
    )
    assert res.returncode != 0 and "asks for 2 GPU(s) but only 1 are visible" in res.stderr
    slurm = {**env, "SLURM_JOB_ID": "7", "CUDA_VISIBLE_DEVICES": "3,4"}  # SLURM chose them
    out = subprocess.run(
        [sys.executable, "-m", "apipack.gpu_slots", "2", "--", sys.executable, "-c", JOB],
        env=slurm, capture_output=True, text=True,
    ).stdout
    assert out.strip() == "3,4"


def test_a_machine_without_gpus_runs_the_processes_on_the_cpu(tmp_path):
    """The CPU rehearsal asks for 2 "GPUs" (processes); with none visible nothing is claimed."""
    env = workstation_env(tmp_path, "")
    res = subprocess.run([sys.executable, "-m", "apipack.gpu_slots", "2", "--", sys.executable, "-c", JOB],
                         env=env, capture_output=True, text=True)
    assert res.returncode == 0 and "run on the CPU" in res.stderr
    assert res.stdout.strip() == ""  # CUDA_VISIBLE_DEVICES stays as it was (empty)
    assert not list((tmp_path / "locks").glob("*.lock"))
