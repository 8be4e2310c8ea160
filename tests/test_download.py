"""Hub downloads and the pin check through huggingface_hub against a local hub (127.0.0.1,
reached through HF_ENDPOINT) that answers file-resolution, tree, repo-info, auth-check and
commit-list requests and redirects LFS files to a CDN on a second host (127.0.0.2), which must
never see the token. The CDN can cut a transfer short or serve wrong bytes. Like the real hub, it
answers a revision it does not have with 404 and X-Error-Code RevisionNotFound, and a gated
repository's files with 401 (no token) or 403 (a token whose account was not granted access) and
X-Error-Code GatedRepo, so that huggingface_hub raises its own errors. Everything runs in a
subprocess, as in a rule, so that huggingface_hub reads HF_ENDPOINT, HF_HOME, HF_TOKEN and
HF_HUB_OFFLINE from the environment.
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
import yaml

from apipack.manifest import HASHES, model_hash, sha256_tree
from apipack.pins import config_pins, load_config
from conftest import ROOT

COMMIT = "0123456789abcdef0123456789abcdef01234567"
UNKNOWN = "fedcba9876543210fedcba9876543210fedcba98"  # a commit the hub does not have
DATA = "apipack/API-Pack-Dataset"
MODEL = "org/tiny-model"
GATED = "org/gated-model"  # gated: only GRANTED's account accepted its licence
BIG = bytes(range(256)) * 96_000  # 24.6 MB, an LFS file served by the CDN (over hf's 10 MB chunks)
SMALL = b'{"model_type": "llama"}\n'  # a regular git file, served by the hub itself
TOKEN = "hf_canary_token_0451"
GRANTED = "hf_granted_token_0452"


def git_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


FILES = {  # (repo type, repo) -> {name: bytes}; files over 100 kB are LFS files
    ("dataset", DATA): {"total_data_cleaned_python.json": BIG},
    ("model", MODEL): {"config.json": SMALL, "model.safetensors": BIG, "README.md": b"# not fetched\n"},
    ("model", GATED): {"config.json": SMALL},
}
COMMITS = [{"id": COMMIT, "title": "Upload 2 files", "message": "", "authors": [{"user": "org"}],
            "date": "2024-05-30T12:00:00.000Z"}]


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

    def _json(self, obj):
        body = json.dumps(obj).encode()
        self._send(200, {"Content-Type": "application/json", "Content-Length": str(len(body))}, body)

    def _error(self, code: int, error_code: str, message: str = ""):
        self._send(code, {"X-Error-Code": error_code, "X-Error-Message": message, "Content-Length": "0"})

    def _denied(self, repo: str) -> bool:
        """The hub's answer to a request for a gated repository's content without access."""
        if repo != GATED or self.headers.get("Authorization") == f"Bearer {GRANTED}":
            return False
        if self.headers.get("Authorization") is None:
            self._error(401, "GatedRepo", f"Access to model {repo} is restricted. You must have access to it "
                                          "and be authenticated to access it. Please log in.")
        else:
            self._error(403, "GatedRepo", f"Access to model {repo} is restricted and you are not in the "
                                          f"authorized list. Visit https://huggingface.co/{repo} to ask for access.")
        return True

    def do_HEAD(self):  # noqa: N802
        self._record()
        self._resolve()

    def do_GET(self):  # noqa: N802
        self._record()
        if self.path.startswith("/api/"):
            return self._api()
        self._resolve()

    def _api(self):  # /api/{models|datasets}/{org}/{name}/{tree|revision|auth-check|commits}[/{rev}]
        parts = self.path.split("?")[0].split("/")
        if len(parts) < 6:  # not a repository request (huggingface_hub also asks /api/agent-harnesses)
            return self._send(404, {"Content-Length": "0"})
        kind, repo, action, rev = parts[2][:-1], "/".join(parts[3:5]), parts[5], "/".join(parts[6:])
        files = FILES.get((kind, repo))
        if files is None:
            return self._error(404, "RepoNotFound")
        if action == "auth-check":
            return self._denied(repo) or self._json({})
        if action == "commits":
            return self._json(COMMITS)
        if rev != COMMIT:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        if action == "revision":  # repo info at a revision: public, also for a gated repository
            gated = "manual" if repo == GATED else False
            return self._json({"id": repo, "sha": COMMIT, "private": False, "gated": gated,
                               "siblings": [{"rfilename": name} for name in files]})
        entries = []
        for name, data in files.items():
            entry = {"type": "file", "path": name, "size": len(data), "oid": git_oid(data)}
            if lfs(data):
                entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 130}
            entries.append(entry)
        self._json(entries)

    def _resolve(self):  # /datasets/{repo}/resolve/{rev}/{name} or /{repo}/resolve/{rev}/{name}
        path = self.path.split("?")[0]
        kind, rest = ("dataset", path[len("/datasets/"):]) if path.startswith("/datasets/") else ("model", path[1:])
        repo, _, tail = rest.partition("/resolve/")
        rev, _, name = tail.partition("/")
        files = FILES.get((kind, repo))
        if files is None:
            return self._error(404, "RepoNotFound")
        if self._denied(repo):
            return
        if rev != COMMIT:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        data = files.get(name)
        if data is None:
            return self._error(404, "EntryNotFound")
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


def run_hub(tmp_path: Path, endpoint: str, args: list[str], offline: bool = False, token: str | None = TOKEN):
    """Run ``python args`` in a fresh interpreter with the hub's environment variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_ENDPOINT=endpoint, HF_HOME=str(tmp_path / "hf_home"), PYTHONPATH=str(ROOT / "scripts"),
               HF_HUB_DISABLE_XET="1", HF_HUB_ETAG_TIMEOUT="5", HF_HUB_DOWNLOAD_TIMEOUT="5")
    if token:
        env["HF_TOKEN"] = token
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    return subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=120)


def fetch(tmp_path: Path, endpoint: str, code: str, **kw):
    """Run download code (apipack.download) as a rule script does."""
    script = f"from pathlib import Path\nfrom apipack.download import *\n{code}"
    return run_hub(tmp_path, endpoint, ["-c", script], **kw)


def get_dataset(tmp_path, endpoint, revision=COMMIT, **kw):
    dest = tmp_path / "results/data/raw/total_data_cleaned_python.json"
    pin = f"Pin('data.download', {DATA!r}, {revision!r}, 'dataset')"
    return fetch(tmp_path, endpoint, f"download_file({pin}, {dest.name!r}, Path({str(dest)!r}))", **kw), dest


def get_model(tmp_path, endpoint, repo=MODEL, revision=COMMIT, **kw):
    """What rule prepare_model runs for a hub model entry ``models.m``."""
    out = tmp_path / "results/models/base/m"
    source = f"ModelSource('hub', repo={repo!r}, revision={revision!r})"
    code = ("from apipack.models import prepare_model\nfrom apipack.settings import ModelSource\n"
            f"prepare_model({source}, Path({str(out)!r}), [], 'models.m')")
    return fetch(tmp_path, endpoint, code, **kw), out


def user_sees(res) -> str:
    """The error line a rule's log ends with."""
    return res.stderr.strip().splitlines()[-1]


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
    res, out = get_model(tmp_path, hub, token=None)
    assert res.returncode == 0, res.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors", HASHES]
    assert (out / "config.json").read_bytes() == SMALL and (out / "model.safetensors").read_bytes() == BIG
    recorded = json.loads((out / HASHES).read_text())["files"]  # the hub's sha256 of the weights
    assert recorded["model.safetensors"] == {"sha256": hashlib.sha256(BIG).hexdigest(), "size": len(BIG)}
    assert model_hash(out) == (sha256_tree(out), "recorded")
    assert all(e[4] is None for e in State.log)  # no HF_TOKEN: no token at all (not a token file)
    cached = {p.name for p in (tmp_path / "hf_home/hub").rglob("blobs/*")}
    assert cached == {git_oid(SMALL), hashlib.sha256(BIG).hexdigest()}


def no_content_fetched() -> bool:
    """No file was resolved on the hub nor fetched from the CDN."""
    return all(e[0] == "hub" and "/resolve/" not in e[2] for e in State.log)


@pytest.mark.parametrize("kind", ["model", "dataset"])
def test_unknown_revision_names_entry_repo_revision_and_how_to_list_commits(hub, tmp_path, kind):
    if kind == "model":
        (res, out), entry, repo, listing = get_model(tmp_path, hub, revision=UNKNOWN), "models.m", MODEL, MODEL
    else:
        (res, out), entry, repo = get_dataset(tmp_path, hub, revision=UNKNOWN), "data.download", DATA
        listing = f"{DATA} --repo-type dataset"
    assert res.returncode != 0 and not out.exists()
    line = user_sees(res)
    assert line.startswith(f"apipack.download.DownloadError: {entry} ({repo}@{UNKNOWN}): the hub has no revision")
    assert f"set it as {entry}.revision" in line and f"`python -m apipack.pins --commits {listing}`" in line
    assert "RevisionNotFoundError" in res.stderr  # huggingface_hub raised its own error on the 404
    assert TOKEN not in res.stdout + res.stderr


@pytest.mark.parametrize(("token", "status", "why"), [
    (None, 401, "HF_TOKEN is not set"),
    (TOKEN, 403, "the account of HF_TOKEN has not been granted access"),
])
def test_gated_model_says_accept_the_licence_and_set_hf_token(hub, tmp_path, token, status, why):
    res, out = get_model(tmp_path, hub, repo=GATED, token=token)
    assert res.returncode != 0 and not out.exists()
    assert "GatedRepoError" in res.stderr
    assert user_sees(res) == (
        f"apipack.download.DownloadError: models.m ({GATED}@{COMMIT}): model {GATED} is gated and {why} "
        f"(HTTP {status}). Log in on https://huggingface.co/{GATED}, accept its licence (access may take a while "
        "to be granted), then export HF_TOKEN=<a read token of that account, from "
        "https://huggingface.co/settings/tokens> and rerun"
    )
    assert TOKEN not in res.stdout + res.stderr


def test_gated_model_downloads_with_a_granted_token(hub, tmp_path):
    res, out = get_model(tmp_path, hub, repo=GATED, token=GRANTED)
    assert res.returncode == 0, res.stderr[-2000:]
    assert (out / "config.json").read_bytes() == SMALL


def check_pins(tmp_path: Path, hub: str, models: dict, token: str | None):
    cfg = {"data": {"source": "download", "download": {"repo": DATA, "revision": COMMIT}}, "models": models,
           "experiments": [{"model": next(iter(models)), "train_set": "base", "languages": ["python"]}]}
    path = tmp_path / "pins.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return run_hub(tmp_path, hub, ["-m", "apipack.pins", "--configfile", str(path)], token=token)


@pytest.mark.parametrize(("token", "gated"), [
    (None, f"PROBLEM: model {GATED} is gated and HF_TOKEN is not set (HTTP 401). Log in on https://huggingface.co/"),
    (TOKEN, f"PROBLEM: model {GATED} is gated and the account of HF_TOKEN has not been granted access (HTTP 403)"),
    (GRANTED, "OK"),
])
def test_pin_check_one_line_per_pin_without_downloading(hub, tmp_path, token, gated):
    models = {"good": {"source": "hub", "repo": MODEL, "revision": COMMIT},
              "moved": {"source": "hub", "repo": MODEL, "revision": UNKNOWN},
              "gated": {"source": "hub", "repo": GATED, "revision": COMMIT},
              "stand-in": {"source": "tiny"}}
    res = check_pins(tmp_path, hub, models, token)
    lines = res.stdout.splitlines()
    assert res.returncode == 1, res.stderr[-2000:]  # the unknown revision, whatever the token
    assert lines[0] == f"data.download: dataset {DATA}@{COMMIT} OK"
    assert lines[1] == f"models.good: model {MODEL}@{COMMIT} OK"
    assert lines[2].startswith(f"models.moved: model {MODEL}@{UNKNOWN} PROBLEM: the hub has no revision {UNKNOWN}")
    assert "set it as models.moved.revision" in lines[2]
    assert lines[2].endswith(f"newest: {COMMIT} 2024-05-30 Upload 2 files")
    assert lines[3].startswith(f"models.gated: model {GATED}@{COMMIT} {gated}")
    assert lines[4].startswith("4 pins checked against http://127.0.0.1:") and len(lines) == 5
    assert no_content_fetched() and not (tmp_path / "hf_home/hub").exists()
    assert TOKEN not in res.stdout + res.stderr and GRANTED not in res.stdout + res.stderr


def test_pin_check_passes_when_every_pin_is_on_the_hub(hub, tmp_path):
    models = {"good": {"source": "hub", "repo": MODEL, "revision": COMMIT},
              "gated": {"source": "hub", "repo": GATED, "revision": COMMIT}}
    res = check_pins(tmp_path, hub, models, GRANTED)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.splitlines()[-1].endswith("3 pins checked against " + hub + ", 0 with a problem")


def test_pin_check_reports_a_hub_it_cannot_reach(tmp_path):
    models = {"good": {"source": "hub", "repo": MODEL, "revision": COMMIT}}
    res = check_pins(tmp_path, "http://127.0.0.1:9", models, None)  # port 9 (discard): connection refused
    assert res.returncode == 1
    assert all("PROBLEM: the hub did not answer" in line for line in res.stdout.splitlines()[:2])


def test_commits_command_lists_the_hubs_commits(hub, tmp_path):
    res = run_hub(tmp_path, hub, ["-m", "apipack.pins", "--commits", MODEL])
    assert res.returncode == 0 and res.stdout == f"{COMMIT} 2024-05-30 Upload 2 files\n"


def test_every_pin_of_the_paper_config_is_checked():
    pins = config_pins(load_config([ROOT / "configs/paper.yaml"]))
    paper = yaml.safe_load((ROOT / "configs/paper.yaml").read_text())
    hub_models = {f"models.{n}": (m["repo"], m["revision"]) for n, m in paper["models"].items() if m["source"] == "hub"}
    assert {p.entry: (p.repo, p.revision) for p in pins} == {
        "data.download": (paper["data"]["download"]["repo"], paper["data"]["download"]["revision"]), **hub_models}
    assert len(hub_models) == 6 and pins[0].repo_type == "dataset"
