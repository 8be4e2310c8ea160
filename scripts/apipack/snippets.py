"""Stage 1 of the builder: openapi-snippet (Node, scripts/openapi_snippets.js) on each chosen
spec, in a process of its own bounded in time, memory and output (``data.build.limits``).

A spec that fails, runs out of time or memory, or yields too much becomes a reject; the others
are written exactly as if it were not there.
"""

from __future__ import annotations

import json
import resource
import signal
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from .builder import reject
from .files import atomic_open, dumps
from .specfile import SpecRejected, printable

if TYPE_CHECKING:
    from .settings import SpecLimits

SCRIPT = Path(__file__).resolve().parents[1] / "openapi_snippets.js"


def generate_snippets(manifest: list[dict], targets: str, out: str, limits: SpecLimits) -> list[dict]:
    """Write one snippet record per usable spec of ``manifest`` ({id, file}) to ``out`` (JSONL,
    manifest order); return the rejects (rows of rejects.csv) of the others."""
    rejects = []
    with atomic_open(out) as fh:
        for n, spec in enumerate(manifest, 1):
            try:
                fh.write(dumps(spec_snippets(spec, targets, limits)) + "\n")
            except SpecRejected as err:
                rejects.append(reject(spec["id"], "snippets", str(err)))
            if n % 25 == 0 or n == len(manifest):
                print(f"snippets: {n}/{len(manifest)} specs")
    return rejects


def spec_snippets(spec: dict, targets: str, limits: SpecLimits) -> dict:
    """The snippet record of one manifest entry; raises ``SpecRejected`` with the reason."""
    cmd = ["node", f"--max-old-space-size={limits.memory_mb}", str(SCRIPT), "spec", spec["file"], targets,
           str(limits.snippets_bytes)]
    try:
        res = subprocess.run(cmd, capture_output=True, timeout=limits.seconds, check=False,
                             preexec_fn=lambda: _limit_memory(limits.memory_mb))
    except subprocess.TimeoutExpired as err:  # the child is killed
        raise SpecRejected(f"snippets took longer than {limits.seconds:g} s (data.build.limits.seconds)") from err
    if res.returncode != 0:
        raise SpecRejected(_failure(res, limits))
    for line in res.stderr.decode("utf-8", "replace").splitlines()[:5]:  # openapi-sampler's warnings
        print(f"{printable(spec['id'])}: {printable(line[:300])}")
    record = json.loads(res.stdout)
    if "too_big" in record:
        raise SpecRejected(f"snippets of {record['too_big'] / 2**20:.3g} MB, over the limit of "
                           f"{limits.snippets_mb:g} MB (data.build.limits.snippets_mb)")
    if "error" in record:
        raise SpecRejected(f"openapi-snippet failed: {record['error'][:300]}")
    return {"id": spec["id"], "file": spec["file"], **record}


def _limit_memory(memory_mb: int) -> None:
    """In the child before exec: cap its data segment (heap, anonymous memory)."""
    limit = memory_mb * 2**20
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))


def _failure(res: subprocess.CompletedProcess, limits: SpecLimits) -> str:
    err = res.stderr.decode("utf-8", "replace")
    if "out of memory" in err.lower() or "OOM" in err or res.returncode == -signal.SIGABRT:
        return f"snippets needed more than {limits.memory_mb} MB (data.build.limits.memory_mb)"
    last = err.strip().splitlines()[-1][:300] if err.strip() else f"exit status {res.returncode}"
    return f"snippet process failed: {printable(last)}"
