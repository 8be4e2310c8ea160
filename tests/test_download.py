"""Downloads against a local HTTP server that truncates, corrupts and delays responses."""

import hashlib
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from apipack.download import DownloadError, dataset_url, download

PAYLOAD = bytes(range(256)) * 4000  # 1 MB
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()


class Flaky(BaseHTTPRequestHandler):
    mode = "ok"
    calls: list = []

    def do_GET(self):  # noqa: N802
        Flaky.calls.append((self.path, self.headers.get("Range"), self.headers.get("Authorization")))
        if "missing" in self.path:
            self.send_error(404)
            return
        start = int(self.headers["Range"].split("=")[1].rstrip("-")) if self.headers.get("Range") else 0
        body = PAYLOAD[start:]
        if Flaky.mode == "corrupt":
            body = b"x" * len(body)
        if Flaky.mode == "delay" and len(Flaky.calls) == 1:
            time.sleep(1.5)
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if Flaky.mode == "truncate" and len(Flaky.calls) == 1:
            self.wfile.write(body[: len(body) // 3])  # then the connection closes
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    Flaky.calls = []
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_port}"
    srv.shutdown()


def url(base, name="total_data_cleaned_curl.json"):
    return dataset_url(base, "apipack/API-Pack-Dataset", "abc123", name)


def test_truncated_download_resumes_with_range(server, tmp_path):
    Flaky.mode = "truncate"
    dest = download(url(server), tmp_path / "d.json", len(PAYLOAD), DIGEST, retries=3, backoff=0.01)
    assert dest.read_bytes() == PAYLOAD
    assert Flaky.calls[1][1] == f"bytes={len(PAYLOAD) // 3}-"  # resumed, not restarted
    assert not (tmp_path / "d.json.part").exists()


def test_corrupt_download_fails_without_a_final_file(server, tmp_path):
    Flaky.mode = "corrupt"
    with pytest.raises(DownloadError, match="sha256 does not match") as err:
        download(url(server), tmp_path / "d.json", len(PAYLOAD), DIGEST, retries=2, backoff=0.01)
    assert "put it at" in str(err.value)
    assert not (tmp_path / "d.json").exists() and len(Flaky.calls) == 3


def test_slow_response_times_out_and_retries(server, tmp_path):
    Flaky.mode = "delay"
    dest = download(url(server), tmp_path / "d.json", None, DIGEST, retries=2, backoff=0.01, timeout=0.5)
    assert dest.read_bytes() == PAYLOAD and len(Flaky.calls) >= 2


def test_missing_file_fails_at_once(server, tmp_path):
    Flaky.mode = "ok"
    with pytest.raises(DownloadError, match="HTTP 404; check the repo, revision"):
        download(url(server, "missing.json"), tmp_path / "m.json", retries=5, backoff=0.01)
    assert len(Flaky.calls) == 1


def test_token_is_sent_but_never_in_the_message(server, tmp_path, monkeypatch):
    Flaky.mode = "corrupt"
    monkeypatch.setenv("HF_TOKEN", "hf_secret_token_123")
    with pytest.raises(DownloadError) as err:
        download(url(server), tmp_path / "d.json", None, DIGEST, retries=0)
    assert Flaky.calls[0][2] == "Bearer hf_secret_token_123"
    assert "hf_secret" not in str(err.value)


def test_offline_message_says_what_to_download_and_where(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    with pytest.raises(DownloadError) as err:
        download(url(f"http://127.0.0.1:{port}"), tmp_path / "d.json", retries=1, backoff=0.01)
    msg = str(err.value)
    assert "total_data_cleaned_curl.json" in msg and str(tmp_path / "d.json") in msg and "data.source: local" in msg
