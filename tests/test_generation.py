"""Generation batches (token budget) and API cells (what they are keyed on,
an unknown model, where they run)."""

import random
from dataclasses import replace

import pytest
import yaml

from apipack.files import read_jsonl, write_jsonl
from apipack.generate import UnknownModel, api_cell_key, generate_api_cell, plan_batches
from apipack.settings import ApiRequest, ModelSource
from conftest import SNAKEMAKE_ENV, Run, chat_server, checkout_copy, schema_config, snakemake


def padded(sizes: list[tuple[int, int]], batch: list[int]) -> int:
    """The tokens a left-padded batch can grow to: items x (longest prompt + largest budget)."""
    return len(batch) * (max(sizes[i][0] for i in batch) + max(sizes[i][1] for i in batch))


def test_batches_keep_to_the_token_budget_in_the_same_order_every_run():
    rng = random.Random(3)
    lengths = [rng.choice([40, 700, 1500, 2200, 3900, 4000]) + rng.randint(0, 30) for _ in range(300)]
    sizes = [(n, min(512, 4096 - n)) for n in lengths]  # as the paper config's caps give them
    for batch_size, budget in ((16, 32768), (16, None), (4, 10000), (16, 20000)):
        plan = plan_batches(sizes, batch_size, budget)
        order = [i for batch in plan for i in batch]
        assert order == sorted(range(300), key=lambda i: (-lengths[i], i))  # longest first, ties in file order
        for batch, following in zip(plan, plan[1:] + [[]]):
            assert len(batch) <= batch_size and (budget is None or padded(sizes, batch) <= budget)
            longer = batch + following[:1]  # a batch is cut only where the next item would break a bound
            assert not following or len(longer) > batch_size or padded(sizes, longer) > (budget or float("inf"))
        assert plan == plan_batches(list(sizes), batch_size, budget)
    assert max(map(len, plan_batches(sizes, 16, 32768))) == 16  # short prompts: batch_size binds
    assert all(len(b) == 1 for b in plan_batches(sizes, 16, 1000))  # each over the budget: alone


def test_unknown_api_model_ends_the_job_at_once_and_names_it(tmp_path):
    prompts = tmp_path / "p.jsonl"
    write_jsonl(prompts, [{"unique_id": f"u{i}", "prompt": f"P{i}"} for i in range(40)])
    with chat_server(lambda body: 404) as (url, seen):
        model = ModelSource(source="openai", base_url=url, api_model="gpt-4-1106-preview")
        with pytest.raises(UnknownModel) as err:
            server = {"api_key_env": "APIPACK_TEST_KEY", "require_key": False, "max_concurrency": 2}
            generate_api_cell(str(prompts), str(tmp_path / "g.jsonl"), model, server, ApiRequest(64, 0.0), 0,
                              "gpt-4-1106")
    message = str(err.value)
    assert "models.gpt-4-1106" in message and "'gpt-4-1106-preview'" in message and url in message
    assert "does not exist" in message and "api_model" in message  # the server's words, and the fix
    assert len(seen) <= 4 and not (tmp_path / "g.jsonl").exists()  # 2 in flight, at most one more each


def request_of(**generation) -> ApiRequest:
    return ApiRequest.from_config(schema_config({"generation": generation}))


def test_api_request_holds_only_what_is_sent(tmp_path):
    same = request_of()
    for local in ({"engine": "vllm"}, {"batch_size": 3}, {"batch_tokens": 4000}, {"dtype": "bfloat16"},
                  {"max_prompt_tokens": 100}, {"max_total_tokens": 300}, {"gpus": 2}, {"temperature": 0.3}):
        assert request_of(**local) == same, local  # greedy: the temperature sent is 0
    assert request_of(max_new_tokens=7).max_tokens == 7 and request_of(do_sample=True).temperature == 0.7
    assert request_of(do_sample=True, temperature=0.3) != request_of(do_sample=True)
    prompts = tmp_path / "p.jsonl"
    write_jsonl(prompts, [{"unique_id": "u0", "prompt": "P"}])
    model = ModelSource(source="openai", base_url="u", api_model="a")
    key = api_cell_key(str(prompts), model, same, 0)
    assert key != api_cell_key(str(prompts), replace(model, api_model="b"), same, 0)
    assert key != api_cell_key(str(prompts), model, same, 1)
    write_jsonl(prompts, [{"unique_id": "u0", "prompt": "Q"}])
    assert key != api_cell_key(str(prompts), model, same, 0)


def test_api_cells_run_locally_and_are_not_rerun_for_local_settings(tmp_path):
    """The workflow through profiles/slurm: an API cell is a local job of the submitting node
    (generation.api_local; sbatch here only records that it was called, and fails), or a SLURM job
    with api_local false; changing the local engine, batches, precision or prompt cap does not
    rerun it, changing the token cap does."""
    root = checkout_copy(tmp_path / "apipack")
    cell = "results/generations/gpt/base/python/L3_zero_shot_s0.jsonl"
    write_jsonl(root / "results/prompts/test/python/L3_zero_shot.jsonl",
                [{"unique_id": f"u{i}", "lang": "python", "prompt": f"P{i}"} for i in range(3)])
    stub = tmp_path / "bin" / "sbatch"
    stub.parent.mkdir()
    stub.write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path / 'sbatch.log'}\nexit 1\n")
    stub.chmod(0o755)
    path = {"PATH": f"{stub.parent}:{SNAKEMAKE_ENV['PATH']}"}

    def run(*args: str, **generation) -> Run:
        (root / "extra.yaml").write_text(yaml.safe_dump({"generation": generation}))
        return snakemake(cell, "--workflow-profile", "profiles/slurm", "--slurm-no-account", "--retries", "0",
                         "--slurm-init-seconds-before-status-checks", "1", "--allowed-rules", "generate_api", *args,
                         "--configfile", "config.yaml", "api.yaml", "extra.yaml", cwd=root, env=path, check=False,
                         timeout=300)

    with chat_server(lambda body: f"re:{body['messages'][0]['content']}") as (url, seen):
        (root / "api.yaml").write_text(yaml.safe_dump({
            "models": {"gpt": {"source": "openai", "base_url": url, "api_model": "m", "require_key": False}},
            "experiments": [{"model": "gpt", "train_set": "base", "languages": ["python"], "levels": [3],
                             "prompt_modes": ["zero_shot"]}]}))
        res = run()
        assert res.returncode == 0 and "localrule generate_api:" in res.out, res.out[-3000:]
        assert not (tmp_path / "sbatch.log").exists()  # not submitted
        assert [r["output"] for r in read_jsonl(root / cell)] == ["re:P0", "re:P1", "re:P2"]
        assert len(seen) == 3 and {body["max_tokens"] for body, _ in seen} == {192}  # config.yaml's max_new_tokens
        local = {"engine": "vllm", "batch_size": 2, "batch_tokens": 900, "dtype": "bfloat16", "max_prompt_tokens": 99,
                 "max_total_tokens": 300, "gpus": 1}
        assert "Nothing to be done" in run("-n", **local).out
        res = run(max_new_tokens=100, api_local=False)
    assert res.returncode != 0 and "rule generate_api:" in res.out and "localrule" not in res.out
    assert "params" in res.out.lower() and "generate_api" in (tmp_path / "sbatch.log").read_text()
    assert len(seen) == 3
