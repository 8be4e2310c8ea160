"""Level splits by the reference's rules, and the prompt templates."""

import json

import numpy as np

from apipack.models import build_tiny, load_tokenizer
from apipack.prompts import (
    Truncator,
    few_shot,
    few_shot_block,
    random_examples,
    select_subset,
    training_records,
    zero_shot,
)
from apipack.retrieval import (
    Reranker,
    candidates,
    example_picker,
    minilm_path,
    reranked_ids,
    top_k_bm25,
    top_k_embedding,
)
from apipack.settings import SplitSettings
from apipack.splits import make_splits, manifest, order_instances, statistics
from conftest import make_instance, schema_config

SIZES = {"A": 6, "B": 2, "C": 5, "D": 4, "E": 3}


def corpus() -> list[dict]:
    return [make_instance(api, i) for api, n in SIZES.items() for i in range(n)]


def split_settings(splits: dict) -> SplitSettings:
    """The schema's level rules with ``splits`` changed, as a run with that config holds them."""
    return SplitSettings.from_config(schema_config({"splits": splits}))


def ids(rows):
    return [r["unique_id"].replace(".json_", "") for r in rows]


def test_levels_follow_the_reference_rules():
    p = split_settings({"level1": {"pool": 10, "size": 4, "min_api_count": 5},
                        "level2": {"pool": 20, "max_apis": 2, "min_api_count": 4},
                        "level3": {"start": 8, "size": 5}})
    s = make_splits(corpus(), p)
    assert ids(s.levels[1]) == ["A0", "A1", "A2", "A3"]  # stays in training
    assert ids(s.levels[2]) == ["A0", "C0"]  # first instance per API, max 2 APIs
    assert ids(s.levels[3]) == ["D0", "D1", "D2", "D3", "E0"]  # from training[8:], not A/C
    assert ids(s.train) == ["A1", "A2", "A3", "A4", "A5", "B0", "B1", "C1", "C2", "C3", "C4"]
    stats = {r["split"]: (r["apis"], r["instances"]) for r in statistics("python", s)}
    assert stats == {"train": (3, 11), "level1": (1, 4), "level2": (2, 2), "level3": (2, 5)}


def test_level3_apis_leave_training_entirely():
    s = make_splits(corpus(), split_settings({"level1": {"pool": 20}, "level2": {"pool": 20, "max_apis": 1},
                                                "level3": {"start": 0, "size": 3}}))
    held = {r["api_name"] for r in s.levels[3]}
    assert held and not held & {r["api_name"] for r in s.train}


def test_splits_are_deterministic_and_order_is_seeded():
    a = json.dumps(manifest(make_splits(order_instances(corpus(), "shuffle_apis", 3), split_settings({}))))
    b = json.dumps(manifest(make_splits(order_instances(corpus(), "shuffle_apis", 3), split_settings({}))))
    c = json.dumps(manifest(make_splits(order_instances(corpus(), "shuffle_apis", 4), split_settings({}))))
    assert a == b and a != c
    shuffled = order_instances(corpus(), "shuffle_apis", 3)
    assert sorted(ids(shuffled)) == sorted(ids(corpus()))


def test_zero_shot_prompt_is_the_reference_layout():
    inst = make_instance("Pets", 0)
    assert zero_shot(inst, "Q?", Truncator(), 512) == (
        "**api_description**:The Pets API.\n**lang**:Python\n\n"
        "Your actual task:\n**instruction**\nQ?\n**output**\n"
    )


def test_few_shot_block_is_truncated_but_task_is_kept():
    inst = make_instance("Pets", 0)
    ex = [make_instance("Pets", i) for i in (1, 2, 3)]
    full = few_shot(inst, "Q?", ex, Truncator(), 512, 100_000)
    assert full.count("**instruction**\n") == 4 and "Given the following examples:" in full
    cut = few_shot(inst, "Q?", ex, Truncator(), 512, 50)  # 50 tokens = 200 characters
    assert cut.endswith("Your actual task:\n**instruction**\nQ?\n**output**\n")
    assert len(cut) == 200 + len("Your actual task:\n**instruction**\nQ?\n**output**\n")


def test_truncation_with_a_tokenizer_equals_cutting_every_text(tmp_path):
    insts = [make_instance("Pets", i) for i in range(8)]
    insts[3]["output"] = "conn.request('GET', '/v1/pets/é日本')\n" * 40  # long and non-ASCII
    insts[5]["api_description"] = "The Pets API lists, creates and deletes pets. " * 30
    build_tiny(tmp_path / "tok", [x["output"] + x["api_description"] for x in insts] * 3, seed=0)
    tok = load_tokenizer(tmp_path / "tok")
    trunc = Truncator(tok)
    blocks = [few_shot_block(x, [insts[(i + j) % 8] for j in (1, 2, 3)], trunc, 64) for i, x in enumerate(insts)]
    for text, bound in blocks:  # the bound never undercounts
        assert bound >= len(tok(text, add_special_tokens=False)["input_ids"])
    for budget in (40, 200, 700, 5000):
        expected = []
        for text, _ in blocks:  # the plain way: tokenize every text, cut the long ones
            ids = tok(text, add_special_tokens=False)["input_ids"]
            expected.append(text if len(ids) <= budget else tok.decode(ids[:budget]))
        assert trunc.cut_many([b for b, _ in blocks], budget, [n for _, n in blocks]) == expected
    assert sum(n <= 5000 for _, n in blocks) >= 6  # at 5000 tokens most blocks are not tokenized


def test_random_examples_exclude_item_and_respect_filter():
    pool = [make_instance("Pets", i) for i in range(10)]
    pool[5]["output"] = pool[0]["output"]
    for seed in range(5):
        ex = random_examples(pool[0], pool, 3, seed, lambda c: c["output"] != pool[0]["output"])
        assert len(ex) == 3 and all(e["unique_id"] not in ("Pets.json_0", "Pets.json_5") for e in ex)
    assert random_examples(pool[0], pool, 3, 1, lambda c: True) == random_examples(
        pool[0], pool, 3, 1, lambda c: True
    )


def test_training_set_has_each_instance_in_both_formats():
    train = [make_instance("Pets", i) for i in range(4)]
    recs = list(training_records(train, {"The Pets API.": train}, ["simple", "fewshot"], Truncator(), 512, 3072, 3, 0))
    assert [r["format"] for r in recs] == ["simple"] * 4 + ["fewshot"] * 4
    assert [r["unique_id"] for r in recs[:4]] == [r["unique_id"] for r in recs[4:]]
    assert all(r["completion"] == t["output"] for r, t in zip(recs, train + train))
    assert recs[4]["prompt"].count("**instruction**\n") == 4  # 3 examples + the task


def test_subsets_first_and_random():
    train = [make_instance("Pets", i) for i in range(10)]
    assert ids(select_subset(train, 3, "first", 0)) == ["Pets0", "Pets1", "Pets2"]
    r = select_subset(train, 3, "random", 0)
    assert len(r) == 3 and r == select_subset(train, 3, "random", 0)
    assert select_subset(train, "all", "first", 0) == train


def test_retrieval_orders_most_similar_last_and_skips_same_output():
    item = make_instance("Pets", 0)
    pool = [make_instance("Pets", i) for i in range(5)]
    cands = candidates(item, {"Pets": pool})
    assert [c["unique_id"] for c in cands] == [f"Pets.json_{i}" for i in range(1, 5)]
    keys = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [0.8, 0.6]])
    top = top_k_embedding(np.array([1.0, 0.0]), keys, cands, 3)
    assert [c["unique_id"] for c in top] == ["Pets.json_2", "Pets.json_4", "Pets.json_1"]


def test_bm25_ranks_the_lexical_match_last():
    item = make_instance("Pets", 0)
    item["instruction_test"] = "delete the zebra record"
    pool = [make_instance("Pets", i) for i in range(1, 6)]
    pool[2]["instruction"] = "please delete a zebra record now"
    top = top_k_bm25(item["instruction_test"], pool, 3)
    assert top[-1]["unique_id"] == pool[2]["unique_id"] and len(top) == 3


def tiny_cross_encoder(folder) -> str:
    """A random-init BERT cross-encoder (one logit) with the MiniLM tokenizer, saved locally."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    tok = AutoTokenizer.from_pretrained(minilm_path())
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, num_labels=1)
    BertForSequenceClassification(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


def test_reranker_reorders_the_top_embedding_hits(tmp_path):
    item = make_instance("Pets", 0)
    pool = [make_instance("Pets", i) for i in range(7)]
    for i, inst in enumerate(pool):
        inst["instruction"] = f"call number {i}: " + " ".join(["fetch", "list", "update", "remove"][: 1 + i % 4])
    cands = candidates(item, {"Pets": pool})  # Pets 1..6
    angles = np.linspace(0.0, 1.2, len(cands))  # cosine falls with the index: Pets 6 is outside the top 5
    arrays = {"key_ids": np.array([c["unique_id"] for c in cands]),
              "keys": np.stack([np.cos(angles), np.sin(angles)], axis=1),
              "query_ids": np.array([item["unique_id"]]), "queries": np.array([[1.0, 0.0]])}
    reranker = Reranker(tiny_cross_encoder(tmp_path / "ce"))
    chosen = reranked_ids([item], {"Pets": pool}, arrays, reranker, top=5, k=3)
    top5 = cands[:5]
    scores = reranker.model.predict([(item["instruction_test"], c["instruction"]) for c in top5])
    expected = [top5[i]["unique_id"] for i in np.argsort(-scores, kind="stable")[:3]][::-1]
    assert chosen.tolist() == [expected]
    assert expected != [c["unique_id"] for c in top5[:3]][::-1]  # the order is the reranker's
    np.savez(tmp_path / "emb.npz", **arrays, rerank_query_ids=arrays["query_ids"], reranked=chosen)
    picked = example_picker({"Pets": pool}, 3, str(tmp_path / "emb.npz"), "rerank_3shot")(item)
    assert [c["unique_id"] for c in picked] == expected
    by_cosine = example_picker({"Pets": pool}, 3, str(tmp_path / "emb.npz"), "retrieval_3shot")(item)
    assert [c["unique_id"] for c in by_cosine] == ["Pets.json_3", "Pets.json_2", "Pets.json_1"]
