"""Disjoint GPUs for concurrent jobs on one workstation.

``snakemake --resources gpu=N`` only counts GPUs: it lets jobs start whose requests sum to N,
but sets no ``CUDA_VISIBLE_DEVICES``, so every job would use GPU 0. A job claims its GPUs here
with an exclusive ``flock`` on one lock file per GPU (machine-wide, in the temp folder), held
until the process exits (the kernel drops the lock even after a crash), and then sees only
those GPUs. Inside a SLURM job SLURM has already chosen them, so nothing is claimed.

    python -m apipack.gpu_slots N -- command args...   # run a command on N free GPUs
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_held: list = []  # open lock files: a lock lasts as long as its file stays open


def visible_gpus() -> list[str]:
    """GPU ids this process may use: CUDA_VISIBLE_DEVICES if set, else those nvidia-smi lists."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g for g in env.split(",") if g.strip()]
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return []
    return [str(i) for i, line in enumerate(out.stdout.splitlines()) if line.startswith("GPU ")]


def lock_dir() -> Path:
    folder = Path(os.environ.get("APIPACK_GPU_LOCKS", Path(tempfile.gettempdir()) / "apipack-gpus"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def claim(n: int, timeout: float = 600.0, poll: float = 1.0) -> list[str]:
    """Lock ``n`` free GPUs, set CUDA_VISIBLE_DEVICES to them and return their ids.

    No-op (returns []) for ``n == 0``, inside a SLURM job, and on a machine without GPUs, where
    ``n`` processes share the CPU (the CPU rehearsal). Waits up to ``timeout`` seconds for GPUs
    that other jobs still hold.
    """
    if n <= 0 or os.environ.get("SLURM_JOB_ID"):
        return []
    pool = visible_gpus()
    if not pool:
        print(f"no GPU visible: the job's {n} processes run on the CPU", file=sys.stderr, flush=True)
        return []
    if len(pool) < n:
        raise RuntimeError(
            f"this job asks for {n} GPU(s) but only {len(pool)} are visible "
            f"({','.join(pool) or 'none'}); lower finetune.gpus / generation.gpus"
        )
    deadline = time.monotonic() + timeout
    while True:
        got = _try_lock(pool, n)
        if got is not None:
            os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(got)
            return got
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {n} free GPU(s) of {','.join(pool)} within {timeout:.0f} s")
        time.sleep(poll)


def _try_lock(pool: list[str], n: int) -> list[str] | None:
    folder, mine = lock_dir(), []
    for gpu in pool:
        fh = open(folder / f"gpu{gpu}.lock", "w")  # noqa: SIM115 (held open on purpose)
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            continue
        mine.append((gpu, fh))
        if len(mine) == n:
            _held.extend(fh for _, fh in mine)
            return [g for g, _ in mine]
    for _, fh in mine:  # not enough free: give back the partial claim
        fh.close()
    return None


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print(__doc__, file=sys.stderr)
        return 2
    gpus = claim(int(argv[0]))
    if gpus:
        print(f"CUDA_VISIBLE_DEVICES={','.join(gpus)}", file=sys.stderr, flush=True)
    child = subprocess.Popen(argv[2:])  # the child inherits the env; the locks stay with us
    # SIGTERM (a time limit) is the child's to handle: pass it on and wait for it to save and exit.
    signal.signal(signal.SIGTERM, lambda signum, frame: child.send_signal(signum))
    return child.wait()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
