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
from dataclasses import dataclass
from pathlib import Path

CHUNK = 1 << 20
COMMIT = re.compile(r"[0-9a-f]{40}")
# Files a model folder needs: configs, safetensors weights, tokenizer files.
MODEL_FILES = ["*.json", "*.safetensors", "tokenizer*", "*.model", "*.txt", "*.jinja"]


class DownloadError(RuntimeError):
    pass


@dataclass(frozen=True)
class Pin:
    """A hub repository pinned in the config: the entry's key (``models.<name>``, ``data.download``)."""

    entry: str
    repo: str
    revision: str
    repo_type: str = "model"


def hub_token() -> str | bool:
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


def verify_blob(path: Path) -> str:
    """Check a cached file against its blob name (the hub's ETag); a bad blob is deleted.

    Returns its sha256: the blob name of an LFS file (the weights), computed for a small one."""
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
    return name if len(name) == 64 else sha256(blob)


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


def hub_page(repo: str, repo_type: str) -> str:
    """The repository's page on huggingface.co, where a gated repository's licence is accepted."""
    return f"https://huggingface.co/{'datasets/' if repo_type == 'dataset' else ''}{repo}"


def list_commits_command(repo: str, repo_type: str) -> str:
    """The command that lists a repository's commits (``apipack.pins --commits``)."""
    return f"`python -m apipack.pins --commits {repo}{' --repo-type dataset' if repo_type == 'dataset' else ''}`"


def hub_fix(err: Exception, pin: Pin) -> str | None:
    """What the user does about a hub answer that names the pin's problem; None for other errors.

    Checked in this order because GatedRepoError is a RepositoryNotFoundError."""
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    page = hub_page(pin.repo, pin.repo_type)
    if isinstance(err, RevisionNotFoundError):
        return (
            f"the hub has no revision {pin.revision} of {pin.repo_type} {pin.repo}. Pick a commit it has and "
            f"set it as {pin.entry}.revision; list them with {list_commits_command(pin.repo, pin.repo_type)} "
            f"or on {page}/commits/main"
        )
    if isinstance(err, GatedRepoError):
        status = err.response.status_code if err.response is not None else None
        why = "HF_TOKEN is not set" if not hub_token() else "the account of HF_TOKEN has not been granted access"
        return (
            f"{pin.repo_type} {pin.repo} is gated and {why} (HTTP {status}). Log in on {page}, accept its "
            f"licence (access may take a while to be granted), then export HF_TOKEN=<a read token of that "
            f"account, from https://huggingface.co/settings/tokens> and rerun"
        )
    if isinstance(err, RepositoryNotFoundError):
        return (
            f"the hub has no {pin.repo_type} {pin.repo}, or it is private and HF_TOKEN has no access to it. "
            f"Check {pin.entry}.repo against {page}"
        )
    return None


def _explain(err: Exception, pin: Pin, what: str) -> DownloadError:
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return DownloadError(
            f"{what}: HF_HUB_OFFLINE is set and it is not in the hub cache {constants.HF_HUB_CACHE}. "
            f"Download it where the network is (same HF_HOME), or unset HF_HUB_OFFLINE."
        )
    fix = hub_fix(err, pin)
    if fix:
        return DownloadError(f"{pin.entry} ({pin.repo}@{pin.revision}): {fix}")
    return DownloadError(
        f"{what} ({pin.entry}): {type(err).__name__}: {err} (endpoint {constants.ENDPOINT}; check repo, "
        f"revision and HF_TOKEN, or use data.source: local with data.local_dir)"
    )


def download_file(pin: Pin, filename: str, dest: Path) -> Path:
    """One file of ``pin``'s repository at its pinned commit, verified, then linked to ``dest``."""
    from huggingface_hub import hf_hub_download

    what = f"{pin.repo_type} {pin.repo}@{pin.revision[:12]}/{filename}"
    rev = pinned(pin.revision, f"{pin.entry}.revision")
    try:
        cached = hf_hub_download(pin.repo, filename, repo_type=pin.repo_type, revision=rev, token=hub_token())
    except Exception as err:  # noqa: BLE001 (hub, HTTP and offline errors: one clear message)
        raise _explain(err, pin, what) from err
    verify_blob(Path(cached))
    link(Path(cached), Path(dest))
    return Path(dest)


def download_snapshot(pin: Pin, out: Path) -> Path:
    """A model repository's files (``MODEL_FILES``) at its pinned commit, verified and linked,
    with their sha256 recorded beside them (``manifest.record_hashes``: the hub's for LFS files)."""
    from huggingface_hub import snapshot_download

    from .manifest import record_hashes

    what = f"{pin.repo_type} {pin.repo}@{pin.revision[:12]}"
    rev = pinned(pin.revision, f"{pin.entry}.revision")
    try:
        folder = snapshot_download(
            pin.repo, repo_type=pin.repo_type, revision=rev, token=hub_token(), allow_patterns=MODEL_FILES
        )
    except Exception as err:  # noqa: BLE001
        raise _explain(err, pin, what) from err
    files = sorted(p for p in Path(folder).rglob("*") if p.is_file())
    if not files:
        raise DownloadError(f"{what}: no model files ({', '.join(MODEL_FILES)}) in the repository")
    hashes = {}
    for path in files:
        hashes[path.relative_to(folder).as_posix()] = verify_blob(path)
        link(path, Path(out) / path.relative_to(folder))
    record_hashes(out, hashes)
    return Path(out)


def check_manifest(path: Path, entry: dict) -> None:
    """Optional extra check against a manifest entry ``{size, sha256}``."""
    if "size" in entry and path.stat().st_size != entry["size"]:
        raise DownloadError(f"{path}: size {path.stat().st_size} != manifest {entry['size']}")
    if "sha256" in entry and sha256(path) != entry["sha256"]:
        raise DownloadError(f"{path}: sha256 does not match the manifest")
