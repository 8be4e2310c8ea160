"""Shared fixtures: valid instances built with the package's own format, and real snippets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from apipack.data import format_output  # noqa: E402
from apipack.languages import LANGUAGES  # noqa: E402
from apipack.settings import SpecLimits  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"
SCHEMA = ROOT / "schemas" / "config.schema.yaml"
# Shell rules call `python`/`accelerate` from PATH, as under `make`: the venv comes first.
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
SNAKEMAKE_ENV = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}


@dataclass
class Run:
    """A finished Snakemake process: its exit status and its stdout and stderr together."""

    returncode: int
    out: str


def snakemake(*args: str, cwd: Path = ROOT, workdir: Path | None = None, config: dict | Path | None = None,
              env: dict[str, str] | None = None, check: bool = True, timeout: float | None = None,
              prefix: Sequence[str] = ()) -> Run:
    """``python -m snakemake ARGS`` from ``cwd`` (the project root unless a checkout copy is given),
    as a user runs it. ``workdir``: ``--directory``; ``config``: a file, or a dict written to
    ``config.yaml`` in ``workdir`` (or ``cwd``), passed last as ``--configfile`` (which takes every
    word after it); ``env``: variables added to the environment. ``check``: a non-zero exit fails
    the test with the end of the output; ``prefix``: a command that runs Snakemake (e.g. to measure it)."""
    cmd = [*prefix, *SNAKEMAKE, *(["--directory", str(workdir)] if workdir else []), *args]
    if isinstance(config, dict):
        path = (workdir or cwd) / "config.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(config))
        config = path
    if config is not None:
        cmd += ["--configfile", str(config)]
    res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                         env={**SNAKEMAKE_ENV, **(env or {})})
    run = Run(res.returncode, res.stdout + res.stderr)
    if check and run.returncode:
        raise AssertionError(f"{' '.join(cmd)} exited {run.returncode}:\n{run.out[-6000:]}")
    return run


def checkout_copy(dest: Path) -> Path:
    """The working tree's tracked and untracked (not ignored) files, as a fresh clone has them."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT,
                           capture_output=True, check=True).stdout.decode().split("\0")
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-cf", "-", "--null", "-T", "-"], cwd=ROOT, input="\0".join(f for f in files if f).encode(),
                   stdout=open(dest / ".copy.tar", "wb"), check=True)
    subprocess.run(["tar", "-xf", ".copy.tar"], cwd=dest, check=True)
    (dest / ".copy.tar").unlink()
    if (ROOT / "node_modules").is_dir():  # npm ci's output, as `make venv` leaves it
        (dest / "node_modules").symlink_to(ROOT / "node_modules")
    return dest


def random_lora(base: Path, out: Path, r: int) -> None:
    """A peft LoRA adapter of rank ``r`` on the model in ``base``, saved to ``out`` without a
    tokenizer, with random (not zero) weights so that it changes the answers; seed torch first."""
    from peft import LoraConfig, get_peft_model

    from apipack.models import load_causal_lm

    lora = LoraConfig(r=r, lora_alpha=2 * r, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(load_causal_lm(base), lora).save_pretrained(out)


def schema_config(config: dict) -> dict:
    """``config`` with the schema's defaults filled in, as the workflow holds it after loading it."""
    from snakemake.utils import validate

    config = {"experiments": [{"model": "smollm2", "train_set": "base", "languages": ["python"]}], **config}
    validate(config, str(SCHEMA))
    return config


def make_instance(api: str, i: int, lang: str = "python", path: str | None = None) -> dict:
    """A valid published-format instance of API ``api`` with a Python call to ``path``."""
    path = path or f"/v1/{api.lower()}/item{i}"
    call = (
        'import http.client\n\nconn = http.client.HTTPSConnection("api.example.com")\n\n'
        f'conn.request("GET", "{path}")\n'
    )
    label = LANGUAGES[lang].label
    return {
        "api_name": api,
        "api_description": f"The {api} API.",
        "api_call_data": {
            "api_call": call,
            "lang": label,
            "functionality": f"get item {i}",
            "api_arguments": {},
            "description": f"Returns item {i}.",
            "domain": ["items"],
            "path": path,
        },
        "instruction": f"Please tell me how to get item {i} with the {api}",
        "instruction_test": f"How can I fetch item {i} from the {api}?",
        "input": "",
        "output": format_output(["items"], call, "example.com", label),
        "unique_id": f"{api}.json_{i}",
    }


@pytest.fixture
def snippets() -> dict[str, str]:
    """openapi-snippet output for one PATCH operation in the ten targets (tests/fixtures)."""
    return json.loads((FIXTURES / "openapi_snippet_patch.json").read_text())


def job_stats(out: str) -> dict[str, int]:
    """Snakemake's "Job stats" table of a (dry) run: {rule: count}; {} when nothing is to be done."""
    if "Job stats:" not in out:
        return {}
    lines = out.split("Job stats:")[1].splitlines()[3:]
    table = lines[: next(i for i, line in enumerate(lines) if not line.strip())]
    return {rule: int(n) for rule, n in (line.split() for line in table)}


def spec_limits(**changes) -> SpecLimits:
    """``data.build.limits`` with the schema's defaults, and ``changes``."""
    schema = yaml.safe_load((ROOT / "schemas" / "config.schema.yaml").read_text())
    limits = schema["properties"]["data"]["properties"]["build"]["properties"]["limits"]["properties"]
    return SpecLimits(**{key: changes.get(key, prop["default"]) for key, prop in limits.items()})


def write_json(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


@contextmanager
def chat_server(reply: Callable[[dict], str]) -> Iterator[tuple[str, list]]:
    """A local OpenAI-compatible /v1/chat/completions server on 127.0.0.1.

    ``reply`` maps a request body to the assistant's text, or to an HTTP error status (int);
    yields the base URL and the list of ``(request body, Authorization header)`` pairs received.
    """
    seen: list = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append((body, self.headers.get("Authorization")))
            text = reply(body)
            status = text if isinstance(text, int) else 200
            error = {"message": "unavailable"} if status != 404 else {  # as OpenAI's API answers it
                "message": f"The model `{body['model']}` does not exist or you do not have access to it.",
                "type": "invalid_request_error", "param": None, "code": "model_not_found"}
            data = json.dumps({"error": error} if status != 200 else
                              {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                               "choices": [{"index": 0, "finish_reason": "stop",
                                            "message": {"role": "assistant", "content": text}}]}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/v1", seen
    finally:
        server.shutdown()
