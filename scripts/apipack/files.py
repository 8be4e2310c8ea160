"""Atomic, deterministic file writing, JSON(L) reading and run fingerprints."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO


@contextmanager
def atomic_open(path: str | Path, mode: str = "w") -> Iterator[TextIO]:
    """Write to a temporary file beside ``path`` and rename it into place on success.

    A crash or an exception leaves no half-written file under the final name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def dumps(obj: Any) -> str:
    """Canonical JSON text: stable key order is the caller's, no ASCII escaping."""
    return json.dumps(obj, ensure_ascii=False)


def write_json(path: str | Path, obj: Any, indent: int | None = 1) -> None:
    with atomic_open(path) as fh:
        json.dump(obj, fh, ensure_ascii=False, indent=indent)
        fh.write("\n")


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> int:
    n = 0
    with atomic_open(path) as fh:
        for row in rows:
            fh.write(dumps(row) + "\n")
            n += 1
    return n


def read_json(path: str | Path) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def iter_jsonl(path: str | Path) -> Iterator[dict]:
    """The records of a JSONL file, one line at a time; a bad line raises an error naming the
    file and line number."""
    with open(path, encoding="utf-8") as fh:
        for i, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}: line {i}: invalid JSON ({err.msg})") from err


def read_jsonl(path: str | Path) -> list[dict]:
    return list(iter_jsonl(path))


HASH_LIMIT = 256 << 20  # larger files (model weights) count by size and mtime, not content


def fingerprint(settings: dict, paths: Iterable[str | Path]) -> str:
    """sha256 of the settings and of the files (or every file under the folders) a run reads.

    Resumable steps store it beside their partial state and resume only when it still matches.
    """
    h = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for root in map(Path, paths):
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        for f in files:
            st = f.stat()
            h.update(f"\n{f.relative_to(root) if root.is_dir() else f.name}:{st.st_size}:".encode())
            if st.st_size > HASH_LIMIT:
                h.update(str(st.st_mtime_ns).encode())
                continue
            with open(f, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
    return h.hexdigest()


def reset_unless_stamped(stamp: Path, key: str, discard: Callable[[], None]) -> None:
    """Call ``discard`` (drop a resumable step's partial state) unless ``stamp`` holds ``key``,
    then write ``key``: the stamp is written only once the old state is gone."""
    if stamp.is_file() and stamp.read_text().strip() == key:
        return
    discard()
    stamp.write_text(key + "\n")
