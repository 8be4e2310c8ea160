"""Prompt formats of the reference ``data_aug.py`` (docs/reference.md section 3), one registry.

Training: ``simple`` (0-shot form) and ``fewshot`` (3 random training rows with the same
``api_description``); a training set holds each instance once in each form (``combined``).
Test: ``zero_shot``, ``random_3shot`` and ``retrieval_3shot`` (see retrieval.py); with a
reranker configured, ``rerank_3shot``. The completion is always the gold ``output``.

Train and test use one layout (the test layout), where the reference's differ; see
docs/deviations.md.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING

from .instructions import row_rng

if TYPE_CHECKING:
    from .settings import PromptSettings

HEADER = "**api_description**:{desc}\n**lang**:{lang}\n"
FEWSHOT_INTRO = "\nGiven the following examples:\n\n"
EXAMPLE = "**instruction**\n{instruction}\n**output**\n{output}\n\n"
TASK = "\nYour actual task:\n**instruction**\n{instruction}\n**output**\n"
FEWSHOT_TASK = "Your actual task:\n**instruction**\n{instruction}\n**output**\n"

TEST_MODES = ("zero_shot", "random_3shot", "retrieval_3shot", "rerank_3shot")
TRAIN_FORMATS = ("simple", "fewshot")


class Truncator:
    """Cut texts to a number of tokens of a tokenizer (the reference used Mistral-7B's).

    Without a tokenizer, 4 characters count as one token. A text is tokenized only if it may
    exceed its budget: it has more bytes than tokens allowed (a BPE token covers at least one
    byte), or, for a few-shot block, its header's tokens plus the bytes of the rest do
    (``upper_bound``). Those are tokenized in one batch (``cut_many``); descriptions, shared by
    all instances of an API, are cached.
    """

    # Tokens that joining two texts may add to the sum of their counts (a pre-token merged
    # across the join), so that upper_bound stays an upper bound.
    JOIN_SLACK = 8

    def __init__(self, tokenizer=None, chars_per_token: int = 4):
        self.tokenizer = tokenizer
        self.chars_per_token = chars_per_token
        self.cached = lru_cache(maxsize=200_000)(self._cut)
        self.count = lru_cache(maxsize=200_000)(self._count)

    def _count(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _cut(self, text: str, max_tokens: int) -> str:
        return self.cut_many([text], max_tokens, [self.upper_bound("", text)])[0]

    def __call__(self, text: str, max_tokens: int) -> str:
        return self.cached(text, max_tokens)

    def upper_bound(self, head: str, rest: str) -> int:
        """At least the token count of ``head + rest`` (exact without a tokenizer)."""
        if self.tokenizer is None:
            return -(-(len(head) + len(rest)) // self.chars_per_token)
        head_tokens = self.count(head) + self.JOIN_SLACK if head else 0
        return head_tokens + len(rest.encode("utf-8")) + 1  # +1: a prefix space some add

    def cut_many(self, texts: Sequence[str], max_tokens: int, bounds: Sequence[int]) -> list[str]:
        """Each text cut to ``max_tokens``; only those whose bound exceeds it are tokenized,
        all in one batch."""
        out = list(texts)
        todo = [i for i, bound in enumerate(bounds) if bound > max_tokens]
        if self.tokenizer is None:
            for i in todo:
                out[i] = texts[i][: max_tokens * self.chars_per_token]
            return out
        from .models import token_ids

        ids = token_ids(self.tokenizer, [texts[i] for i in todo])
        cut = [(i, t[:max_tokens]) for i, t in zip(todo, ids) if len(t) > max_tokens]
        for (i, _), text in zip(cut, self.tokenizer.batch_decode([t for _, t in cut])):
            out[i] = text
        return out


def lang_label(inst: dict) -> str:
    return inst["api_call_data"]["lang"]


def header(inst: dict, trunc: Truncator, desc_tokens: int) -> str:
    return HEADER.format(desc=trunc(inst["api_description"], desc_tokens), lang=lang_label(inst))


def zero_shot(inst: dict, query: str, trunc: Truncator, desc_tokens: int) -> str:
    return header(inst, trunc, desc_tokens) + TASK.format(instruction=query)


def few_shot_block(inst: dict, examples: Sequence[dict], trunc: Truncator, desc_tokens: int):
    """The header and examples of a few-shot prompt, uncut, and an upper bound of its tokens."""
    head = header(inst, trunc, desc_tokens)
    rest = FEWSHOT_INTRO + "".join(
        EXAMPLE.format(instruction=ex["instruction"], output=ex["output"]) for ex in examples
    )
    return head + rest, trunc.upper_bound(head, rest)


def few_shot(
    inst: dict,
    query: str,
    examples: Sequence[dict],
    trunc: Truncator,
    desc_tokens: int,
    fewshot_tokens: int,
) -> str:
    """Header and examples cut to ``fewshot_tokens`` as a block, then the task."""
    block, bound = few_shot_block(inst, examples, trunc, desc_tokens)
    return trunc.cut_many([block], fewshot_tokens, [bound])[0] + FEWSHOT_TASK.format(
        instruction=query
    )


# --- example selection -----------------------------------------------------------------------


def group_by(instances: Sequence[dict], key: str) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = {}
    for inst in instances:
        groups.setdefault(inst[key], []).append(inst)
    return groups


def random_examples(
    inst: dict, pool: Sequence[dict], k: int, seed: int, keep: Callable[[dict], bool]
) -> list[dict]:
    """``k`` seeded random rows of ``pool``, other than ``inst``, for which ``keep`` holds.

    Draws a few more indices than needed and filters them, so a row costs O(k), not O(pool),
    unless most of the pool is excluded.
    """
    rng = row_rng(seed, inst["unique_id"])
    ok = lambda c: c["unique_id"] != inst["unique_id"] and keep(c)  # noqa: E731
    drawn = [pool[i] for i in rng.sample(range(len(pool)), min(len(pool), 2 * k + 1))]
    picked = [c for c in drawn if ok(c)][:k]
    if len(picked) < k and len(drawn) < len(pool):
        cands = [c for c in pool if ok(c)]
        picked = rng.sample(cands, min(k, len(cands)))
    return picked


def training_records(
    instances: Sequence[dict],
    by_description: dict[str, list[dict]],
    formats: Sequence[str],
    trunc: Truncator,
    desc_tokens: int,
    fewshot_tokens: int,
    k: int,
    seed: int,
    batch: int = 10_000,
) -> Iterator[dict]:
    """Prompt/completion records, yielded ``batch`` at a time: every instance once per format,
    simple forms first. Few-shot blocks are cut ``batch`` instances at a time (one tokenizer
    call each)."""
    for fmt in formats:
        for start in range(0, len(instances), batch):
            chunk = instances[start : start + batch]
            if fmt == "simple":
                prompts = [zero_shot(i, i["instruction"], trunc, desc_tokens) for i in chunk]
            else:
                prompts = _few_shot_prompts(chunk, by_description, trunc, desc_tokens, fewshot_tokens, k, seed)
            for inst, prompt in zip(chunk, prompts):
                yield {
                    "unique_id": inst["unique_id"],
                    "lang": lang_label(inst),
                    "format": fmt,
                    "prompt": prompt,
                    "completion": inst["output"],
                }


def _few_shot_prompts(chunk, by_description, trunc, desc_tokens, fewshot_tokens, k, seed):
    blocks, bounds = [], []
    for inst in chunk:
        pool = by_description[inst["api_description"]]
        block, bound = few_shot_block(inst, random_examples(inst, pool, k, seed, lambda c: True),
                                      trunc, desc_tokens)
        blocks.append(block)
        bounds.append(bound)
    cut = trunc.cut_many(blocks, fewshot_tokens, bounds)
    return [b + FEWSHOT_TASK.format(instruction=i["instruction"]) for b, i in zip(cut, chunk)]


def select_subset(
    train: Sequence[dict], count: int | str, selection: str, seed: int
) -> list[dict]:
    """``first``: the first ``count`` training instances in split order (the paper);
    ``random``: a seeded sample kept in split order. ``count`` may be ``"all"``."""
    if count == "all" or count >= len(train):
        return list(train)
    if selection == "first":
        return list(train[:count])
    keep = set(random.Random(seed).sample(range(len(train)), count))
    return [inst for i, inst in enumerate(train) if i in keep]


def sample_items(items: Sequence[dict], n: int, seed: int, *key: str) -> list[dict]:
    """At most ``n`` items, a seeded sample in level order (the same for every prompt mode)."""
    if len(items) <= n:
        return list(items)
    keep = set(row_rng(seed, *key).sample(range(len(items)), n))
    return [item for i, item in enumerate(items) if i in keep]


def test_records(
    items: Sequence[dict],
    mode: str,
    examples: Callable[[dict], list[dict]] | None,
    trunc: Truncator,
    desc_tokens: int,
    fewshot_tokens: int,
    lang: str,
    level: int,
) -> list[dict]:
    """Test prompts of one cell; ``examples`` picks the in-context rows for 3-shot modes."""
    out = []
    for item in items:
        query = item["instruction_test"]
        if mode == "zero_shot":
            prompt = zero_shot(item, query, trunc, desc_tokens)
        else:
            ex = examples(item)
            prompt = few_shot(item, query, ex, trunc, desc_tokens, fewshot_tokens)
        out.append(
            {
                "unique_id": item["unique_id"],
                "api_name": item["api_name"],
                "lang": lang,
                "level": level,
                "mode": mode,
                "prompt": prompt,
                "ground_truth": item["output"],
            }
        )
    return out


def make_truncator(tokenizer_dirs: Sequence[str]) -> Truncator:
    """A Truncator with the tokenizer of the first folder given, or 4 characters per token."""
    if not tokenizer_dirs:
        return Truncator()
    from .models import load_tokenizer

    return Truncator(load_tokenizer(tokenizer_dirs[0]))


def train_set_records(
    mixture: dict[str, int | str],
    selection: str,
    formats: Sequence[str],
    train_files: Sequence[str],
    settings: PromptSettings,
    tokenizer_dirs: Sequence[str],
) -> Iterator[dict]:
    """Prompt/completion records of a training set: ``mixture[lang]`` instances (``selection``)
    of each language's training split, in each of ``formats``; yielded as they are made, so that
    only one language's split is in memory (the caller writes them as they come)."""
    from .files import read_json

    trunc = make_truncator(tokenizer_dirs)
    for lang, path in zip(mixture, train_files):
        train = read_json(path)
        subset = select_subset(train, mixture[lang], selection, settings.seed)
        yield from training_records(
            subset,
            group_by(train, "api_description"),
            formats,
            trunc,
            settings.description_tokens,
            settings.fewshot_tokens,
            settings.k,
            settings.seed,
        )
        print(f"{lang}: {len(subset)} instances of {len(train)}")
