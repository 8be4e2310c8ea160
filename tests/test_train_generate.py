"""Fine-tuning (LoRA, full, resume after kill -9) and generation engines on a tiny local model."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from apipack.files import read_jsonl, write_jsonl
from apipack.generate import HFEngine, OpenAIEngine, complete_answer, generate_file, make_engine, trim_answer
from apipack.manifest import model_hash, sha256_tree
from apipack.models import build_tiny, load_tokenizer, prompt_ids, token_ids
from apipack.prompts import Truncator, zero_shot
from apipack.settings import GenerationSettings, RunSettings, TrainSettings
from apipack.tokenized import IGNORE, CompletionIds, build, encode, line_shards, load
from apipack.train import (
    STOPPED,
    arrow_trainer,
    build_model,
    checkpoint_key,
    claim_checkpoints,
    grad_accumulation,
    training_args,
)
from conftest import ROOT, chat_server, make_instance

FT = TrainSettings(
    method="lora", learning_rate=0.003, epochs=1, max_steps=30, global_batch=4, cutoff_len=256, warmup_ratio=0.0,
    lr_scheduler="constant", optimizer="adamw_torch", precision="fp32", packing=False, group_by_length=False,
    lora_r=8, lora_alpha=16, lora_dropout=0.0, lora_target_modules=("q_proj", "v_proj"), seed=5,
    trust_remote_code=False,
)
JOB = RunSettings(per_device_batch=4, gradient_checkpointing=False, logging_steps=1, save_steps=1000)
GEN = GenerationSettings(engine="hf", batch_size=2, max_new_tokens=24, max_prompt_tokens=512, max_total_tokens=None,
                         do_sample=False, temperature=None, dtype="float32", trust_remote_code=False)


def records(n=16):
    insts = [make_instance("Pets", i % 4) for i in range(n)]
    return [{"prompt": zero_shot(x, x["instruction"], Truncator(), 64), "completion": x["output"]} for x in insts]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tiny") / "model"
    texts = [r["prompt"] + r["completion"] for r in records()]
    build_tiny(out, texts * 5, seed=0)
    return out


def train_command(tmp: Path, base: Path, ft: TrainSettings, job: RunSettings, name: str) -> list[str]:
    """The training command as rule finetune runs it: the set tokenized (rule tokenize) once per base
    model and cutoff, TrainSettings in a file, RunSettings as options."""
    data = tmp / f"tokenized-{base.parent.name}-{ft.cutoff_len}"
    if not data.is_dir():
        write_jsonl(tmp / "train.jsonl", records())
        build(str(tmp / "train.jsonl"), str(base), ft.cutoff_len, False, data, 1)
    cfg = tmp / f"{name}.json"
    cfg.write_text(json.dumps(ft.param()))
    return [sys.executable, "-m", "apipack.train", "--data", str(data), "--base", str(base),
            "--out", str(tmp / name / "model"), "--settings", str(cfg), "--checkpoints", str(tmp / name / "ckpt"),
            "--log-csv", str(tmp / name / "log.csv"), *job.arguments().split()]


def train(tmp: Path, base: Path, ft: TrainSettings, name="run", job: RunSettings = JOB) -> pd.DataFrame:
    subprocess.run(train_command(tmp, base, ft, job, name), check=True, cwd=ROOT, capture_output=True)
    return pd.read_csv(tmp / name / "log.csv")


def test_completion_only_labels(tiny):
    tok = load_tokenizer(tiny)
    rec = records(1)[0]
    enc = encode(rec, tok, 4096)
    n_prompt = len(prompt_ids(tok, rec["prompt"]))
    assert enc["input_ids"][0] == tok.bos_token_id  # the tiny tokenizer adds BOS, as Llama's
    assert enc["labels"][:n_prompt] == [IGNORE] * n_prompt
    assert enc["labels"][n_prompt:] == enc["input_ids"][n_prompt:]
    assert enc["input_ids"][-1] == tok.eos_token_id
    short = encode(rec, tok, n_prompt + 3)
    assert len(short["input_ids"]) == n_prompt + 3 and short["labels"][-3:] == short["input_ids"][-3:]


def test_completion_ids_tokenize_a_text_once_until_reused_and_stay_bounded(tiny):
    tok = load_tokenizer(tiny)
    a, b, c, d, e = (f"GET /pets/{i} HTTP/1.1" for i in range(5))
    ids = CompletionIds(tok, limit=3)

    def check(texts):
        assert ids(texts) == token_ids(tok, texts)

    check([a, b, c, a])  # a twice in one batch: tokenized once, kept once
    assert list(ids.kept) == [a, b, c] and ids.reused == 0
    check([a, d])  # a comes again: reused and dropped, which makes room for d
    assert list(ids.kept) == [b, c, d] and ids.reused == 1
    check([e])  # full: the oldest (b) goes
    assert list(ids.kept) == [c, d, e]
    check([b])  # b was dropped: tokenized anew, not reused
    assert ids.reused == 1 and list(ids.kept) == [d, e, b]


def test_tokenized_set_is_memory_mapped_and_refuses_another_tokenizer_or_cutoff(tmp_path, tiny):
    tok, recs = load_tokenizer(tiny), records(16)
    data_file, out = tmp_path / "train.jsonl", tmp_path / "tokenized" / "tiny" / "python"
    write_jsonl(data_file, recs)
    out.parent.mkdir(parents=True)
    assert build(str(data_file), str(tiny), 40, False, out, 2) == 16
    assert sorted(p.name for p in out.parent.iterdir()) == ["python"]  # no .part, no build cache left
    data = load(out, tok, 40)
    for row, rec in zip(data, recs):
        enc = encode(rec, tok, 40)
        assert row["input_ids"] == enc["input_ids"] and row["labels"] == enc["labels"]
        assert row["length"] == len(enc["input_ids"]) <= 40
    files = [Path(f["filename"]) for f in data.cache_files]
    assert files and all(f.is_file() and out in f.parents for f in files)  # mapped, not in memory
    with pytest.raises(ValueError, match="cutoff_len 40, but finetune.cutoff_len is 64"):
        load(out, tok, 64)
    other = tmp_path / "other"
    build_tiny(other, [r["completion"] for r in recs] * 5, seed=1)  # another vocabulary
    with pytest.raises(ValueError, match="made by another tokenizer.*tokenizer_of"):
        load(out, load_tokenizer(other), 40)
    same = load_tokenizer(tiny)
    same("a padded batch", padding="max_length", max_length=12, truncation=True)  # state, not definition
    assert len(load(out, same, 40)) == 16
    trainer = arrow_trainer()(model=build_model(str(tiny), FT), train_dataset=data,
                              args=training_args(replace(FT, group_by_length=True), JOB, tmp_path / "c", 1))
    assert trainer._get_train_sampler().lengths == data["length"][:]  # one list, read at once


def test_lora_loads_the_base_in_the_configured_precision(tiny):
    import torch

    for precision, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16), ("fp32", torch.float32)):
        model = build_model(str(tiny), replace(FT, precision=precision))
        base = {p.dtype for n, p in model.named_parameters() if "lora_" not in n}
        adapters = {p.dtype for n, p in model.named_parameters() if "lora_" in n}
        assert base == {dtype} and adapters == {torch.float32}
    full = build_model(str(tiny), replace(FT, method="full", precision="bf16"))
    assert {p.dtype for p in full.parameters()} == {torch.float32}  # fp32 weights, bf16 autocast


def test_training_file_errors_and_shards(tmp_path, tiny):
    bad = tmp_path / "bad.jsonl"
    write_jsonl(bad, records(3))
    with open(bad, "a") as fh:
        fh.write('{"prompt": "no completion"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl: the line ending at byte \d+ is not a prompt/completion"):
        build(str(bad), str(tiny), 256, False, tmp_path / "out", 1)
    assert not (tmp_path / "out").exists()
    lines = b"".join(b'{"n": %d}\n' % i for i in range(1000))
    bad.write_bytes(lines)
    shards = line_shards(str(bad), 7)
    assert shards[0][0] == 0 and shards[-1][1] == len(lines) and len(shards) == 7
    assert all(a[1] == b[0] and lines[b[0] - 1 : b[0]] == b"\n" for a, b in zip(shards, shards[1:]))


def test_global_batch_does_not_depend_on_gpu_count():
    assert grad_accumulation(120, 1, 8) == 15 and grad_accumulation(120, 1, 120) == 1
    with pytest.raises(ValueError, match="global_batch=10"):
        grad_accumulation(10, 4, 1)


def test_lora_learns_and_writes_adapter_and_curve(tmp_path, tiny):
    log = train(tmp_path, tiny, FT)
    assert len(log) == 30 and log["num_input_tokens_seen"].is_monotonic_increasing
    assert log["loss"].tail(5).mean() < 0.7 * log["loss"].head(5).mean()
    assert (tmp_path / "run" / "model" / "adapter_model.safetensors").is_file()
    assert (log["tokens_per_second"] > 0).all()


def test_full_finetuning_and_packing(tmp_path, tiny):
    """The final model in the training precision with the sha256 of its files; checkpoints gone."""
    from safetensors import safe_open

    log = train(tmp_path, tiny, replace(FT, method="full", max_steps=6, packing=True, learning_rate=1e-3,
                                        precision="bf16"), job=replace(JOB, save_steps=2))
    assert len(log) == 6 and log["loss"].notna().all()
    out = tmp_path / "run" / "model"
    with safe_open(out / "model.safetensors", "pt") as fh:
        assert {fh.get_slice(k).get_dtype() for k in fh.keys()} == {"BF16"}
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"
    assert model_hash(out) == (sha256_tree(out), "recorded")
    assert not list((tmp_path / "run" / "ckpt").glob("checkpoint-*"))  # removed after the final save


def test_killed_training_resumes_to_the_same_final_loss(tmp_path, tmp_path_factory):
    """The resumed job runs with other run settings (per-device batch 2 with gradient accumulation
    2, as on twice the GPUs; other logging and save intervals): the checkpoints are still its own."""
    base = tmp_path_factory.mktemp("slow") / "model"
    build_tiny(base, [r["prompt"] + r["completion"] for r in records()] * 5, seed=0, hidden_size=384, layers=4)
    ft, job = replace(FT, max_steps=12), replace(JOB, save_steps=2)
    whole = train(tmp_path, base, ft, "whole", job)
    ckpt = tmp_path / "killed" / "ckpt"
    proc = subprocess.Popen(train_command(tmp_path, base, ft, job, "killed"), cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (ckpt / "checkpoint-4" / "trainer_state.json").exists():
        assert proc.poll() is None and time.time() < deadline, "training ended before the kill"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "killed" / "model").exists()
    other = replace(job, per_device_batch=2, save_steps=3)
    out = subprocess.run(train_command(tmp_path, base, ft, other, "killed"), cwd=ROOT, capture_output=True,
                         text=True, check=True)
    assert "resuming from" in out.stdout
    resumed = pd.read_csv(tmp_path / "killed" / "log.csv")
    assert resumed["step"].iloc[-1] == 12
    # the same data order and steps; sums over 2 x 2 sequences instead of 4 differ in rounding only
    assert resumed["loss"].iloc[-1] == pytest.approx(whole["loss"].iloc[-1], rel=1e-4)
    assert (resumed["tokens_per_second"] < 1.5 * whole["tokens_per_second"]).all()  # own tokens only


def test_sigterm_saves_a_checkpoint_exits_and_the_rerun_resumes(tmp_path, tiny):
    ft = replace(FT, max_steps=6)
    proc = subprocess.Popen(train_command(tmp_path, tiny, ft, JOB, "run"), cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    proc.stdout.readline()  # the handler is installed before this first line ("... sequences")
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == STOPPED, out[-3000:]
    assert "received SIGTERM" in out and "stopped by SIGTERM at step 1" in out
    assert [p.name for p in (tmp_path / "run/ckpt").glob("checkpoint-*")] == ["checkpoint-1"]  # save_steps 1000
    assert not (tmp_path / "run/model").exists() and not (tmp_path / "run/log.csv").exists()
    rerun = subprocess.run(train_command(tmp_path, tiny, ft, JOB, "run"), cwd=ROOT, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert f"resuming from {tmp_path / 'run/ckpt/checkpoint-1'}" in rerun.stdout
    assert pd.read_csv(tmp_path / "run/log.csv")["step"].tolist() == [1, 2, 3, 4, 5, 6]  # step 1 from the checkpoint


def test_sigterm_to_one_rank_stops_both_at_the_same_checkpoint(tmp_path, tiny):
    """2 gloo processes; only rank 1 gets SIGTERM: the ranks agree (all-reduce) and both stop after
    saving the same step's checkpoint, so none waits alone in a collective."""
    cmd = train_command(tmp_path, tiny, replace(FT, max_steps=200, global_batch=8), JOB, "run")
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m",
              *cmd[2:]]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "scripts"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(launch, cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    head: list[str] = []
    while not head or "sequences, 2 process(es)" not in head[-1]:  # rank 0, just before training starts
        head.append(proc.stdout.readline())
        assert head[-1], "".join(head)
    rank1 = next(pid for pid in map(int, Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split())
                 if b"\0RANK=1\0" in b"\0" + Path(f"/proc/{pid}/environ").read_bytes())
    os.kill(rank1, signal.SIGTERM)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode != 0 and "received SIGTERM" in out, out[-3000:]
    steps = re.findall(r"stopped by SIGTERM at step (\d+)", out)
    assert len(steps) == 2 and steps[0] == steps[1], out[-3000:]  # rank 0 stops too, at the same step
    assert [p.name for p in (tmp_path / "run/ckpt").glob("checkpoint-*")] == [f"checkpoint-{steps[0]}"]
    assert int(steps[0]) < 200


def test_changed_settings_do_not_resume_stale_checkpoints(tmp_path, tiny):
    first, job = replace(FT, max_steps=6), replace(JOB, save_steps=2, keep_checkpoints=True)
    train(tmp_path, tiny, first, "run", job)
    assert (tmp_path / "run" / "ckpt" / "checkpoint-6").is_dir()
    changed = replace(first, learning_rate=0.01)
    rerun = train(tmp_path, tiny, changed, "run", job)
    fresh = train(tmp_path, tiny, changed, "fresh", job)
    assert rerun["loss"].tolist() == pytest.approx(fresh["loss"].tolist(), rel=1e-5)
    assert (rerun["tokens_per_second"] > 0).all()


def test_checkpoint_key_covers_data_settings_and_base(tmp_path, tiny):
    def tokenized(n: int, cutoff: int = 256) -> Path:
        write_jsonl(tmp_path / "train.jsonl", records(n))
        out = tmp_path / f"set{n}-{cutoff}"
        build(str(tmp_path / "train.jsonl"), str(tiny), cutoff, False, out, 1)
        return out

    data = tokenized(4)
    key = checkpoint_key(FT, data, str(tiny))
    assert checkpoint_key(FT, data, str(tiny)) == key
    assert checkpoint_key(replace(FT, seed=6), data, str(tiny)) != key
    assert checkpoint_key(FT, tokenized(5), str(tiny)) != key  # another training file
    assert checkpoint_key(FT, tokenized(4, 128), str(tiny)) != key  # another cutoff
    other = tmp_path / "base"
    shutil.copytree(tiny, other)
    (other / "config.json").write_text((other / "config.json").read_text() + " ")
    assert checkpoint_key(FT, data, str(other)) != key
    folder = tmp_path / "ckpt"
    (folder / "checkpoint-2").mkdir(parents=True)
    claim_checkpoints(folder, key)  # checkpoints without a fingerprint are not trusted
    assert not (folder / "checkpoint-2").exists()
    (folder / "checkpoint-4").mkdir()
    claim_checkpoints(folder, key)
    assert (folder / "checkpoint-4").is_dir()


def test_answer_stop_and_trim():
    assert not complete_answer("**api_call**:x\n**lang**:Py")
    assert complete_answer("**api_call**:x\n**lang**:Python\nmore")
    assert trim_answer(" a\n**lang**:Python\n### junk") == "a\n**lang**:Python"


def test_batched_generation_equals_one_by_one(tiny):
    engine = make_engine(str(tiny), None, GEN)
    prompts = [r["prompt"] for r in records(6)][:3] + ["**api_description**:x\n"]
    batched = engine(prompts, 0)
    single = [engine([p], 0)[0] for p in prompts]
    assert batched == single and len(batched) == 4


def test_greedy_answers_do_not_depend_on_the_token_budget(tmp_path, tiny):
    """Each prompt's answer is capped by its own length (max_total_tokens), whichever prompts share
    its batch: in one batch and each alone (token budget 1), the answers are the same."""
    prompts = tmp_path / "p.jsonl"
    write_jsonl(prompts, [{"unique_id": f"u{i}", "prompt": "x " * (6 * i) + r["prompt"]}
                          for i, r in enumerate(records(4))])
    engine = make_engine(str(tiny), None, GEN)
    longest = max(n for n, _ in engine.sizes([r["prompt"] for r in read_jsonl(prompts)]))
    engine.gen = replace(GEN, max_new_tokens=16, max_total_tokens=longest + 4)  # budgets from 4 up to 16
    caps = [cap for _, cap in engine.sizes([r["prompt"] for r in read_jsonl(prompts)])]
    assert min(caps) == 4 and max(caps) == 16
    answers = {}
    for budget, batches in ((None, 1), (1, 4)):
        stats = generate_file(str(prompts), str(tmp_path / f"{budget}.jsonl"), engine, 4, 0, batch_tokens=budget)
        assert stats["batches"] == batches
        answers[budget] = [r["output"] for r in read_jsonl(tmp_path / f"{budget}.jsonl")]
    assert answers[None] == answers[1] and len(set(map(len, answers[1]))) > 1  # the same, of several lengths


def test_generation_resumes_from_partial_file(tmp_path):
    prompts = tmp_path / "p.jsonl"
    write_jsonl(prompts, [{"unique_id": f"u{i}", "prompt": f"P{i}", "lang": "curl"} for i in range(5)])
    out = str(tmp_path / "g.jsonl")
    write_jsonl(out + ".partial", [{"unique_id": f"u{i}", "lang": "curl", "output": "old"} for i in range(3)])
    seen = []

    def engine(batch, seed):
        seen.extend(batch)
        return [f"out {p}" for p in batch]

    # batches of 2 (equal lengths: in file order): u0 u1 finished, u2 u3 generated again whole, u4
    stats = generate_file(str(prompts), out, engine, 2, 0)
    assert stats["items"] == 3 and stats["batches"] == 2 and seen == ["P2", "P3", "P4"]
    rows = read_jsonl(out)
    assert [r["unique_id"] for r in rows] == [f"u{i}" for i in range(5)]
    assert [r["output"] for r in rows] == ["old", "old", "out P2", "out P3", "out P4"]
    assert not Path(out + ".partial").exists()


GENERATE = """
import json, sys
from apipack.generate import generate_file, make_engine
from apipack.settings import GenerationSettings
prompts, out, base, gen = sys.argv[1:5]
generate_file(prompts, out, make_engine(base, None, GenerationSettings.of(json.loads(gen))), 1, 0)
"""


def test_killed_generation_resumes_to_the_same_outputs_and_metrics(tmp_path, tiny):
    insts = [make_instance("Pets", i) for i in range(12)]
    prompts = tmp_path / "prompts.jsonl"
    write_jsonl(prompts, [{"unique_id": x["unique_id"], "lang": "python", "ground_truth": x["output"],
                           "prompt": zero_shot(x, x["instruction_test"], Truncator(), 64)} for x in insts])
    gen = json.dumps(replace(GEN, max_new_tokens=48).param())

    def cmd(name):
        return [sys.executable, "-c", GENERATE, str(prompts), str(tmp_path / name), str(tiny), gen]

    subprocess.run(cmd("whole.jsonl"), cwd=ROOT, check=True, capture_output=True)
    partial = tmp_path / "killed.jsonl.partial"
    proc = subprocess.Popen(cmd("killed.jsonl"), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (partial.exists() and partial.read_text().count("\n") >= 3):
        assert proc.poll() is None and time.time() < deadline, "generation ended before the kill"
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = partial.read_text().count("\n")
    assert not (tmp_path / "killed.jsonl").exists() and finished < 12
    rerun = subprocess.run(cmd("killed.jsonl"), cwd=ROOT, check=True, capture_output=True, text=True)
    assert f"resuming after {finished} finished items" in rerun.stdout
    assert (tmp_path / "killed.jsonl").read_bytes() == (tmp_path / "whole.jsonl").read_bytes()
    for name in ("whole", "killed"):
        subprocess.run([sys.executable, "-m", "apipack.score", str(tmp_path / f"{name}.jsonl"),
                        str(tmp_path / f"{name}.scored.jsonl")], cwd=ROOT, check=True, capture_output=True)
    assert read_jsonl(tmp_path / "killed.scored.jsonl") == read_jsonl(tmp_path / "whole.scored.jsonl")


def test_partial_items_of_another_run_are_not_reused(tmp_path):
    prompts = tmp_path / "p.jsonl"
    write_jsonl(prompts, [{"unique_id": f"u{i}", "prompt": f"P{i}", "lang": "curl"} for i in range(3)])
    out = str(tmp_path / "g.jsonl")
    old = [{"unique_id": "u0", "lang": "curl", "output": "old"}]
    engine = lambda b, s: [f"new {p}" for p in b]  # noqa: E731
    for stamp, expected in ((None, "new P0"), ("run-a", "new P0"), ("run-b", "old")):
        write_jsonl(out + ".partial", old)
        if stamp:
            Path(out + ".partial.key").write_text(stamp)
        generate_file(str(prompts), out, engine, 1, 0, key="run-b")
        assert read_jsonl(out)[0]["output"] == expected, stamp
        assert not Path(out + ".partial.key").exists()


def test_torn_partial_line_is_redone(tmp_path):
    prompts = tmp_path / "p.jsonl"
    write_jsonl(prompts, [{"unique_id": f"u{i}", "prompt": f"P{i}", "lang": "curl"} for i in range(3)])
    out = str(tmp_path / "g.jsonl")
    Path(out + ".partial").write_text('{"unique_id": "u0", "lang": "curl", "output": "old"}\n{"unique_id": "u1", "la')
    seen = []
    generate_file(str(prompts), out, lambda b, s: seen.extend(b) or [f"new {p}" for p in b], 1, 0)
    assert sorted(seen) == ["P1", "P2"]
    assert [r["output"] for r in read_jsonl(out)] == ["old", "new P1", "new P2"]


API = {"source": "openai", "api_model": "m", "api_key_env": "APIPACK_TEST_KEY", "require_key": True}


def test_openai_model_against_local_server(tmp_path, monkeypatch):
    with chat_server(lambda body: f"echo:{body['messages'][0]['content']}\n**lang**:cURL\n") as (url, seen):
        spec = {**API, "base_url": url}
        monkeypatch.delenv("APIPACK_TEST_KEY", raising=False)
        with pytest.raises(RuntimeError, match="APIPACK_TEST_KEY"):
            OpenAIEngine(spec, GEN.max_new_tokens, 0.0)
        monkeypatch.setenv("APIPACK_TEST_KEY", "sk-secret-123")
        prompts = tmp_path / "p.jsonl"
        write_jsonl(prompts, [{"unique_id": f"u{i}", "prompt": f"P{i}"} for i in range(3)])
        generate_file(str(prompts), str(tmp_path / "g.jsonl"), OpenAIEngine(spec, GEN.max_new_tokens, 0.0), 2, 0)
        rows = read_jsonl(tmp_path / "g.jsonl")
        assert [r["output"] for r in rows] == [f"echo:P{i}\n**lang**:cURL" for i in range(3)]
        assert [auth for _, auth in seen] == ["Bearer sk-secret-123"] * 3
        assert {body["model"] for body, _ in seen} == {"m"}
        assert "sk-secret" not in (tmp_path / "g.jsonl").read_text()


def test_openai_model_bounds_concurrency_and_retries(monkeypatch):
    import threading

    lock, state = threading.Lock(), {"now": 0, "peak": 0, "calls": {}}

    def reply(body):
        prompt = body["messages"][0]["content"]
        with lock:
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
            state["calls"][prompt] = state["calls"].get(prompt, 0) + 1
            first = state["calls"][prompt] == 1
        time.sleep(0.2)
        with lock:
            state["now"] -= 1
        if first and prompt == "P3":
            return 503  # the first try of P3 fails: the client retries it
        return f"re:{prompt}"

    monkeypatch.setenv("APIPACK_TEST_KEY", "k")
    with chat_server(reply) as (url, _):
        engine = OpenAIEngine({**API, "base_url": url, "max_concurrency": 3, "retries": 2}, GEN.max_new_tokens, 0.0)
        out = engine([f"P{i}" for i in range(9)], 0)
    assert out == [f"re:P{i}" for i in range(9)]  # in prompt order
    assert state["peak"] == 3  # bounded, and used
    assert state["calls"]["P3"] == 2


def test_training_and_generation_feed_the_same_prompt_ids():
    """A Llama-style tokenizer (BOS first): the prompt part of a training sequence is exactly
    what generation feeds the model for the same prompt."""
    from transformers import LlamaTokenizer

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, "▁": 3, "*": 4, "a": 5, "p": 6, "i": 7, "\n": 8, "x": 9}
    tok = LlamaTokenizer(vocab=vocab, merges=[], add_bos_token=True)
    tok.pad_token = tok.unk_token
    rec = {"prompt": "**api**\nx", "completion": "pax"}
    enc = encode(rec, tok, 4096)
    n_prompt = enc["labels"].index(next(t for t in enc["labels"] if t != IGNORE))
    engine = HFEngine.__new__(HFEngine)  # only the tokenizer side of the engine
    engine.tok, engine.gen = tok, replace(GEN, max_prompt_tokens=100)
    engine.tok.padding_side = "left"
    engine.prefix = [1]
    batch = engine.encode([rec["prompt"], rec["prompt"] + "x"])
    assert enc["input_ids"][0] == tok.bos_token_id == 1
    assert batch["input_ids"][0][batch["attention_mask"][0] == 1].tolist() == enc["input_ids"][:n_prompt]
    assert prompt_ids(tok, rec["prompt"]) == enc["input_ids"][:n_prompt]


def test_full_finetuned_model_generates_without_adapter(tmp_path, tiny):
    train(tmp_path, tiny, replace(FT, method="full", max_steps=2))
    full = tmp_path / "run" / "model"
    assert not (full / "adapter_config.json").exists()
    engine = make_engine(str(tiny), str(full), GEN)
    from apipack.models import load_causal_lm

    weights = load_causal_lm(full).state_dict()
    base = load_causal_lm(tiny).state_dict()
    assert all((engine.model.state_dict()[k] == v).all() for k, v in weights.items())
    assert any((base[k] != v).any() for k, v in weights.items())  # the tuned weights, not the base


def test_only_safetensors_weights_are_loaded(tmp_path, tiny):
    import shutil

    import torch
    from transformers import AutoModelForCausalLM

    from apipack.models import load_causal_lm

    pickled = tmp_path / "pickled"  # the same weights as a pickle, which can run code on load
    pickled.mkdir()
    shutil.copy(tiny / "config.json", pickled)
    torch.save(AutoModelForCausalLM.from_pretrained(tiny).state_dict(), pickled / "pytorch_model.bin")
    with pytest.raises(OSError, match="safetensors"):
        load_causal_lm(pickled)
    assert load_causal_lm(tiny).num_parameters() > 0


PROCESS_GROUP = """
import torch, torch.distributed as dist
from apipack.train import process_state
state = process_state(7)
backend = dist.distributed_c10d._get_default_group()._get_backend(torch.device("cpu"))
print(f"rank {state.process_index} of {state.num_processes}: {dist.get_backend()} {backend.options._timeout}")
"""


def test_process_group_timeout_reaches_the_process_group(tmp_path):
    """2 gloo processes, as a CPU launch: the group created for training waits the configured 7 minutes
    (not torch's default 30, nor NCCL's 10)."""
    script = tmp_path / "group.py"
    script.write_text(PROCESS_GROUP)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "scripts"), "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                          str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    lines = sorted(re.findall(r"rank \d+ of \d+: \w+ [\d:]+", res.stdout))  # the two may write at once
    assert lines == ["rank 0 of 2: gloo 0:07:00", "rank 1 of 2: gloo 0:07:00"], res.stdout
