"""Hub downloads (the published dataset, base models) through huggingface_hub.

huggingface_hub resolves files at a pinned commit, follows the redirect to the CDN (without the
token), resumes a broken transfer with a Range request, checks the size, and keeps every file
once in the user's hub cache (``HF_HOME`` / ``HF_HUB_CACHE``); it honours ``HF_ENDPOINT`` and
``HF_HUB_OFFLINE``. Each file is then checked against the hash the hub gave for it (the sha256
of an LFS file, the git blob id of a small one) and linked, not copied, to the workflow's
output. The token comes from ``HF_TOKEN`` only (a token saved by ``hf auth login`` is not read).
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

CHUNK = 1 << 20
COMMIT = re.compile(r"[0-9a-f]{40}")
# Files a model folder needs: configs, safetensors weights, tokenizer files.
MODEL_FILES = ["*.json", "*.safetensors", "tokenizer*", "*.model", "*.txt", "*.jinja"]


class DownloadError(RuntimeError):
    pass


def _token() -> str | bool:
    return os.environ.get("HF_TOKEN") or False  # False: never the token file on disk


def pinned(revision: str, what: str) -> str:
    if not COMMIT.fullmatch(revision):
        raise DownloadError(
            f"{what}: revision {revision!r} is not a commit sha (40 hex digits); pin one, e.g. from "
            f"HfApi().list_repo_commits(repo), so that reruns read the same bytes"
        )
    return revision


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def git_blob_id(path: Path) -> str:
    """The git object id of a file (what the hub sends as the ETag of a non-LFS file)."""
    h = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def verify_blob(path: Path) -> None:
    """Check a cached file against its blob name (the hub's ETag); a bad blob is deleted."""
    blob = path.resolve()
    name = blob.name
    if len(name) == 64:
        ok = sha256(blob) == name
    elif len(name) == 40:
        ok = git_blob_id(blob) == name
    else:
        raise DownloadError(f"{path}: the hub gave no hash for it (blob {name}); cannot check it")
    if not ok:
        blob.unlink()
        if path.is_symlink():
            path.unlink()
        raise DownloadError(f"{path}: content does not match the hub's hash {name}; removed, retry")


def link(src: Path, dest: Path) -> None:
    """``dest`` becomes a hard link to the cached blob (a symlink across file systems)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".link")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src.resolve(), tmp)
    except OSError:
        tmp.symlink_to(src.resolve())
    os.replace(tmp, dest)


def _explain(err: Exception, what: str) -> DownloadError:
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return DownloadError(
            f"{what}: HF_HUB_OFFLINE is set and it is not in the hub cache {constants.HF_HUB_CACHE}. "
            f"Download it where the network is (same HF_HOME), or unset HF_HUB_OFFLINE."
        )
    return DownloadError(
        f"{what}: {type(err).__name__}: {err} (endpoint {constants.ENDPOINT}; check repo, "
        f"revision and HF_TOKEN, or use data.source: local with data.local_dir)"
    )


def download_file(repo: str, revision: str, filename: str, dest: Path, repo_type: str = "dataset") -> Path:
    """One file at a pinned commit, verified, then linked to ``dest``."""
    from huggingface_hub import hf_hub_download

    what = f"{repo_type} {repo}@{revision[:12]}/{filename}"
    rev = pinned(revision, what)
    try:
        cached = hf_hub_download(repo, filename, repo_type=repo_type, revision=rev, token=_token())
    except Exception as err:  # noqa: BLE001 (hub, HTTP and offline errors: one clear message)
        raise _explain(err, what) from err
    verify_blob(Path(cached))
    link(Path(cached), Path(dest))
    return Path(dest)


def download_snapshot(repo: str, revision: str, out: Path, repo_type: str = "model") -> Path:
    """A model repository's files (``MODEL_FILES``) at a pinned commit, verified and linked."""
    from huggingface_hub import snapshot_download

    what = f"{repo_type} {repo}@{revision[:12]}"
    rev = pinned(revision, what)
    try:
        folder = snapshot_download(
            repo, repo_type=repo_type, revision=rev, token=_token(), allow_patterns=MODEL_FILES
        )
    except Exception as err:  # noqa: BLE001
        raise _explain(err, what) from err
    files = sorted(p for p in Path(folder).rglob("*") if p.is_file())
    if not files:
        raise DownloadError(f"{what}: no model files ({', '.join(MODEL_FILES)}) in the repository")
    for path in files:
        verify_blob(path)
        link(path, Path(out) / path.relative_to(folder))
    return Path(out)


def check_manifest(path: Path, entry: dict) -> None:
    """Optional extra check against a manifest entry ``{size, sha256}``."""
    if "size" in entry and path.stat().st_size != entry["size"]:
        raise DownloadError(f"{path}: size {path.stat().st_size} != manifest {entry['size']}")
    if "sha256" in entry and sha256(path) != entry["sha256"]:
        raise DownloadError(f"{path}: sha256 does not match the manifest")
