"""Download published dataset files: resume, size and sha256 checks, retries, atomic rename.

Files come from ``{endpoint}/datasets/{repo}/resolve/{revision}/{name}``; a partial download is
kept as ``{dest}.part`` and resumed with an HTTP Range request. The token, if any, is read from
``HF_TOKEN`` and never printed.
"""

from __future__ import annotations

import hashlib
import os
import time
import urllib.error
import urllib.request
from pathlib import Path

CHUNK = 1 << 20


class DownloadError(RuntimeError):
    pass


def dataset_url(endpoint: str, repo: str, revision: str, name: str) -> str:
    return f"{endpoint.rstrip('/')}/datasets/{repo}/resolve/{revision}/{name}"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _request(url: str, start: int) -> urllib.request.Request:
    req = urllib.request.Request(url)
    token = os.environ.get("HF_TOKEN")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    if start:
        req.add_header("Range", f"bytes={start}-")
    return req


def _fetch_once(url: str, part: Path, timeout: float) -> None:
    start = part.stat().st_size if part.exists() else 0
    with urllib.request.urlopen(_request(url, start), timeout=timeout) as resp:
        if start and resp.status != 206:  # server ignored the range: start again
            start = 0
        expected = resp.headers.get("Content-Length")
        got = 0
        with open(part, "ab" if start else "wb") as fh:
            for block in iter(lambda: resp.read(CHUNK), b""):
                fh.write(block)
                got += len(block)
        if expected is not None and got != int(expected):
            raise DownloadError(f"{url}: connection closed after {got} of {expected} bytes")


def verify(path: Path, size: int | None, digest: str | None) -> str | None:
    """Return a reason if the file does not match the manifest entry, else None."""
    if size is not None and path.stat().st_size != size:
        return f"size {path.stat().st_size} != manifest {size}"
    if digest is not None and sha256(path) != digest:
        return "sha256 does not match the manifest"
    return None


def download(
    url: str,
    dest: str | Path,
    size: int | None = None,
    digest: str | None = None,
    retries: int = 5,
    backoff: float = 1.0,
    timeout: float = 60.0,
) -> Path:
    """Download ``url`` to ``dest``; only a verified file is renamed to ``dest``."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    last = ""
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(backoff * 2 ** (attempt - 1))
        try:
            _fetch_once(url, part, timeout)
        except urllib.error.HTTPError as err:
            if err.code in (401, 403, 404):
                raise DownloadError(f"{url}: HTTP {err.code}; check the repo, revision and HF_TOKEN") from err
            last = f"HTTP {err.code}"
            continue
        except (urllib.error.URLError, OSError, DownloadError) as err:
            last = str(getattr(err, "reason", err))
            continue
        problem = verify(part, size, digest)
        if problem is None:
            os.replace(part, dest)
            return dest
        last = problem
        part.unlink()  # a corrupt file is not resumable
    raise DownloadError(
        f"{url}: failed after {retries + 1} attempts ({last}). Offline? Download it by hand and "
        f"put it at {dest}, or use data.source: local with data.local_dir."
    )
