"""What the preflight measures on this machine: the GPU's peak FLOP/s, a training process's load
and save times and peak memory, and the sizes on disk that the projection scales (docs/preflight.md)."""

from __future__ import annotations

import time
from pathlib import Path

from .files import write_json


def measure_peak(dtype: str, size: int, repeats: int) -> dict:
    """FLOP/s of a square matmul in ``dtype`` on the first GPU (the CPU without one)."""
    import torch

    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    a, b = (torch.randn(size, size, dtype=getattr(torch, dtype), device=device) for _ in range(2))
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    for _ in range(2):  # warm-up: kernel selection, clocks
        a @ b
    sync()
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync()
    seconds = time.perf_counter() - start
    name = torch.cuda.get_device_name(0) if cuda else f"CPU ({torch.get_num_threads()} threads)"
    return {"device": name, "dtype": dtype, "size": size, "repeats": repeats, "seconds": seconds,
            "peak_flops": 2 * size**3 * repeats / seconds}


def write_timing(path: Path, processes: int, load: float, save: float) -> None:
    """The preflight's figures of this process: model load and final save times, peak memory
    (GPU: torch.cuda.max_memory_allocated; CPU: peak resident set size)."""
    import resource

    import torch

    gpu = torch.cuda.is_available()
    peak = torch.cuda.max_memory_allocated() if gpu else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    timing = {"processes": processes, "load_seconds": load, "save_seconds": save, "peak_memory_bytes": peak,
              "peak_memory_kind": "GPU, max_memory_allocated" if gpu else "CPU, peak RSS of rank 0"}
    write_json(path, timing)


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def tokenized_set(folder: Path) -> dict | None:
    """Sequences, tokens and bytes of the tokenized training set (Arrow files) in ``folder``."""
    from datasets import Dataset

    # a missing folder has no files; one that a killed job left half-written is skipped
    files = sorted(f for f in folder.rglob("*.arrow") if not any(p.endswith(".incomplete") for p in f.parts))
    if not files:
        return None
    lengths = [Dataset.from_file(str(f)).data.column("length").to_pylist() for f in files]
    return {"sequences": sum(map(len, lengths)), "tokens": sum(map(sum, lengths)),
            "bytes": sum(f.stat().st_size for f in files)}


def newest_checkpoint_bytes(folder: Path) -> int | None:
    """Bytes of the checkpoint a resumed run would start from (``train.latest_checkpoint``)."""
    from .train import latest_checkpoint  # train imports this module

    last = latest_checkpoint(folder)
    return dir_bytes(Path(last)) if last else None
