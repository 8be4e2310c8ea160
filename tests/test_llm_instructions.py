"""LLM instruction writing: candidates, back-translation scores, choice; HF and OpenAI samplers."""


import pytest

from apipack.builder import build_instances, instruction_writer
from apipack.llm_instructions import (
    LogProbScorer,
    back_translation,
    choose,
    clean_candidate,
    llm_pairs,
    openai_sampler,
)
from apipack.models import build_tiny
from apipack.settings import BuildSettings
from conftest import chat_server

ROW = {"api_name": "Pet Store", "spec_id": "pets", "method": "GET", "path": "/pets", "endpoint": "listPets",
       "functionality": "List all pets", "description": "Returns every pet.", "lang": "cURL",
       "api_call": "curl --request GET --url https://p.example.com/pets", "api_description": "Pets.",
       "api_provider": "p", "domain": []}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("lm") / "m"
    build_tiny(out, [back_translation(ROW, "show me all pets")[0] + "Functionality: List all pets"] * 50, seed=1)
    return str(out)


def test_choose_picks_best_and_a_non_overlapping_test():
    assert choose(["a b", "a b c", "x y"], [0.9, 0.8, 0.1]) == ("a b", "x y")  # "a b c" contains "a b"
    assert choose(["only"], [1.0]) is None
    assert clean_candidate(' "List my pets"\nmore') == "List my pets"
    assert clean_candidate("Query: list pets") is None


def test_llm_pairs_choose_the_highest_back_translation_score(tiny):
    cands = ["show me all pets in the Pet Store", "zzz qqq", "list the pets of the Pet Store API"]
    sample = lambda prompts, seed: [cands for _ in prompts]  # noqa: E731
    scorer = LogProbScorer(tiny)
    pairs = llm_pairs([ROW, {**ROW, "lang": "Python"}], sample, scorer, seed=0)
    assert list(pairs) == [("pets", "GET", "/pets")]  # one operation, shared by its languages
    scores = scorer([back_translation(ROW, c) for c in sorted(cands)])
    best = sorted(cands)[max(range(3), key=lambda i: scores[i])]
    assert pairs[("pets", "GET", "/pets")][0] == best
    single = scorer([back_translation(ROW, best)])[0]
    assert single == pytest.approx(max(scores), abs=1e-4)  # padding does not change a score


def test_hf_sampler_feeds_the_builder(tiny):
    build = BuildSettings("hf", 400, 3, candidates=4, max_new_tokens=12, temperature=1.0, batch_size=2)
    writer = instruction_writer(build, {}, [tiny], [tiny])  # as rule build_dataset makes it
    rows = [{**ROW, "path": f"/pets/{i}", "api_call": ROW["api_call"] + f"/{i}"} for i in range(3)]
    instances, counts = build_instances(rows, writer(rows))
    made = counts["kept", "curl"] + counts["dropped_no_instruction", "curl"]
    assert made == 3
    for inst in instances["curl"]:
        assert inst["instruction"] != inst["instruction_test"] and ":" not in inst["instruction"]


def test_openai_sampler_against_local_server(tiny, monkeypatch):
    monkeypatch.setenv("APIPACK_TEST_KEY", "k")
    with chat_server(lambda body: f"Show me the pets of the Pet Store, variant {body['seed']}") as (url, seen):
        api = {"base_url": url, "model": "m", "api_key_env": "APIPACK_TEST_KEY"}
        pairs = llm_pairs([ROW], openai_sampler(api, 3, 16, 1.0), LogProbScorer(tiny), seed=10)
        inst, test = pairs[("pets", "GET", "/pets")]
        assert len(seen) == 3 and inst.startswith("Show me the pets") and inst != test
        build = BuildSettings("openai", 400, 10, candidates=3, max_new_tokens=16, temperature=1.0, batch_size=8,
                              api=(url, "m"))  # the key's name comes with the connection, not the settings
        instruction_writer(build, {"api_key_env": "APIPACK_TEST_KEY"}, [], [tiny])([ROW])
        assert len(seen) == 6 and {auth for _, auth in seen} == {"Bearer k"}
