"""Hub downloads through huggingface_hub against a local hub (127.0.0.1, reached through
HF_ENDPOINT) that answers file-resolution and tree requests and redirects LFS files to a CDN on a
second host (127.0.0.2), which must never see the token. The CDN can cut a transfer short or
serve wrong bytes. Downloads run in a subprocess, as in a rule, so that huggingface_hub reads
HF_ENDPOINT, HF_HOME and HF_HUB_OFFLINE from the environment.
"""

import hashlib
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conftest import ROOT

COMMIT = "0123456789abcdef0123456789abcdef01234567"
DATA = "apipack/API-Pack-Dataset"
MODEL = "org/tiny-model"
BIG = bytes(range(256)) * 96_000  # 24.6 MB, an LFS file served by the CDN (over hf's 10 MB chunks)
SMALL = b'{"model_type": "llama"}\n'  # a regular git file, served by the hub itself
TOKEN = "hf_canary_token_0451"


def git_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


FILES = {  # (repo type, repo) -> {name: bytes}; files over 100 kB are LFS files
    ("dataset", DATA): {"total_data_cleaned_python.json": BIG},
    ("model", MODEL): {"config.json": SMALL, "model.safetensors": BIG, "README.md": b"# not fetched\n"},
}


class State:
    mode = "ok"  # ok | truncate (first CDN response cut short) | corrupt (CDN sends other bytes)
    log: list = []  # (host, method, path, range, authorization)


def lfs(data: bytes) -> bool:
    return len(data) > 100_000


class Hub(BaseHTTPRequestHandler):
    cdn = ""

    def _record(self):
        State.log.append(("hub", self.command, self.path, self.headers.get("Range"),
                          self.headers.get("Authorization")))

    def _send(self, code: int, headers: dict, body: bytes = b""):
        self.send_response(code)
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        if self.command == "GET":
            self.wfile.write(body)

    def do_HEAD(self):  # noqa: N802
        self._record()
        self._resolve()

    def do_GET(self):  # noqa: N802
        self._record()
        if self.path.startswith("/api/"):
            return self._tree()
        self._resolve()

    def _tree(self):  # /api/models/{repo}/tree/{rev}?recursive=...
        path = self.path.split("?")[0]
        files = FILES.get(("model", MODEL)) if path.startswith(f"/api/models/{MODEL}/tree/{COMMIT}") else None
        if files is None:
            return self._send(404, {"X-Error-Code": "RevisionNotFound", "Content-Length": "0"})
        entries = []
        for name, data in files.items():
            entry = {"type": "file", "path": name, "size": len(data), "oid": git_oid(data)}
            if lfs(data):
                entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 130}
            entries.append(entry)
        body = json.dumps(entries).encode()
        self._send(200, {"Content-Type": "application/json", "Content-Length": str(len(body))}, body)

    def _resolve(self):  # /datasets/{repo}/resolve/{rev}/{name} or /{repo}/resolve/{rev}/{name}
        path = self.path.split("?")[0]
        kind, rest = ("dataset", path[len("/datasets/"):]) if path.startswith("/datasets/") else ("model", path[1:])
        repo, _, tail = rest.partition("/resolve/")
        rev, _, name = tail.partition("/")
        data = FILES.get((kind, repo), {}).get(name)
        if data is None or rev != COMMIT:
            code = "EntryNotFound" if data is None else "RevisionNotFound"
            return self._send(404, {"X-Error-Code": code, "Content-Length": "0"})
        headers = {"X-Repo-Commit": COMMIT, "ETag": f'"{git_oid(data)}"'}
        if not lfs(data):
            return self._send(200, {**headers, "Content-Length": str(len(data))}, data)
        digest = hashlib.sha256(data).hexdigest()
        self._send(302, {**headers, "X-Linked-Etag": f'"{digest}"', "X-Linked-Size": str(len(data)),
                         "Location": f"{Hub.cdn}/blobs/{digest}?expires=1", "Content-Length": "0"})

    def log_message(self, *args):
        pass


class Cdn(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        State.log.append(("cdn", "GET", self.path, self.headers.get("Range"), self.headers.get("Authorization")))
        data = BIG if State.mode != "corrupt" else BIG[::-1]
        start = int(self.headers["Range"].split("=")[1].split("-")[0]) if self.headers.get("Range") else 0
        body = data[start:]
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(body)))
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        if State.mode == "truncate" and sum(e[0] == "cdn" for e in State.log) == 1:
            self.wfile.write(body[: 2 * len(body) // 3])  # then the connection closes
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def hub(tmp_path):
    State.mode, State.log = "ok", []
    cdn = ThreadingHTTPServer(("127.0.0.2", 0), Cdn)
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Hub)
    Hub.cdn = f"http://127.0.0.2:{cdn.server_port}"
    for s in (cdn, srv):
        threading.Thread(target=s.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_port}"
    for s in (cdn, srv):
        s.shutdown()


def fetch(tmp_path: Path, endpoint: str, code: str, offline: bool = False, token: str | None = TOKEN):
    """Run download code in a fresh interpreter with the hub's environment variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_ENDPOINT=endpoint, HF_HOME=str(tmp_path / "hf_home"), PYTHONPATH=str(ROOT / "scripts"),
               HF_HUB_DISABLE_XET="1", HF_HUB_ETAG_TIMEOUT="5", HF_HUB_DOWNLOAD_TIMEOUT="5")
    if token:
        env["HF_TOKEN"] = token
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    script = f"from pathlib import Path\nfrom apipack.download import *\n{code}"
    return subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)


def get_dataset(tmp_path, endpoint, revision=COMMIT, **kw):
    dest = tmp_path / "results/data/raw/total_data_cleaned_python.json"
    code = f"download_file({DATA!r}, {revision!r}, {dest.name!r}, Path({str(dest)!r}))"
    return fetch(tmp_path, endpoint, code, **kw), dest


def test_dataset_file_via_cdn_redirect_without_leaking_the_token(hub, tmp_path):
    res, dest = get_dataset(tmp_path, hub)
    assert res.returncode == 0, res.stderr[-2000:]
    assert dest.read_bytes() == BIG
    cdn = [e for e in State.log if e[0] == "cdn"]
    assert cdn and all(e[4] is None for e in cdn)  # the second host never sees the token
    assert any(e[0] == "hub" and e[4] == f"Bearer {TOKEN}" for e in State.log)  # the hub does
    blobs = list((tmp_path / "hf_home/hub").rglob("blobs/*"))
    assert len(blobs) == 1 and os.path.samefile(blobs[0], dest)  # one copy: a link into the cache
    assert TOKEN not in res.stdout + res.stderr


def test_truncated_transfer_resumes_with_a_range_request(hub, tmp_path):
    State.mode = "truncate"
    res, dest = get_dataset(tmp_path, hub)
    assert res.returncode == 0, res.stderr[-2000:]
    assert dest.read_bytes() == BIG
    ranges = [e[3] for e in State.log if e[0] == "cdn"]
    assert ranges[0] is None and len(ranges) == 2
    start = int(ranges[1].removeprefix("bytes=").removesuffix("-"))
    assert 0 < start <= 2 * len(BIG) // 3  # resumed where the cut transfer ended, not restarted


def test_wrong_bytes_fail_the_hash_check_and_leave_nothing(hub, tmp_path):
    State.mode = "corrupt"
    res, dest = get_dataset(tmp_path, hub)
    assert res.returncode != 0 and "does not match the hub's hash" in res.stderr
    assert not dest.exists() and not list((tmp_path / "hf_home/hub").rglob("blobs/*"))


def test_unpinned_revision_is_refused_before_any_request(hub, tmp_path):
    res, dest = get_dataset(tmp_path, hub, revision="main")
    assert res.returncode != 0 and "not a commit sha" in res.stderr and not State.log


def test_offline_mode_uses_the_cache_and_says_what_is_missing(hub, tmp_path):
    res, dest = get_dataset(tmp_path, hub, offline=True)  # nothing cached yet
    assert res.returncode != 0 and "HF_HUB_OFFLINE is set" in res.stderr
    assert "total_data_cleaned_python.json" in res.stderr and str(tmp_path / "hf_home") in res.stderr
    assert not State.log and not dest.exists()
    assert get_dataset(tmp_path, hub)[0].returncode == 0  # online: fills the cache
    dest.unlink()
    State.log.clear()
    res, dest = get_dataset(tmp_path, hub, offline=True)
    assert res.returncode == 0, res.stderr[-2000:]
    assert dest.read_bytes() == BIG and not State.log  # from the cache, no request at all


def test_model_snapshot_links_only_model_files(hub, tmp_path):
    out = tmp_path / "results/models/base/tiny"
    res = fetch(tmp_path, hub, f"download_snapshot({MODEL!r}, {COMMIT!r}, Path({str(out)!r}))", token=None)
    assert res.returncode == 0, res.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    assert (out / "config.json").read_bytes() == SMALL and (out / "model.safetensors").read_bytes() == BIG
    assert all(e[4] is None for e in State.log)  # no HF_TOKEN: no token at all (not a token file)
    cached = {p.name for p in (tmp_path / "hf_home/hub").rglob("blobs/*")}
    assert cached == {git_oid(SMALL), hashlib.sha256(BIG).hexdigest()}
