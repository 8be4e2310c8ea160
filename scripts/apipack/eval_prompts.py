"""Test prompts of one cell (language, level, mode): the seeded item sample of the level, and
for 3-shot modes the in-context examples (random rows of the same API, or retrieved ones)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from .prompts import group_by, make_truncator, random_examples, sample_items, test_records
from .retrieval import example_picker

if TYPE_CHECKING:
    from .settings import PromptSettings


def examples_for(mode: str, by_api: dict[str, list[dict]], k: int | None, seed: int, embeddings: str | None):
    """The in-context examples of a test mode: none (zero-shot), random rows of the same API with
    another output, or retrieved ones (retrieval.example_picker)."""
    if mode == "zero_shot":
        return None
    if mode == "random_3shot":
        return lambda item: random_examples(
            item, by_api[item["api_name"]], k, seed, lambda c: c["output"] != item["output"]
        )
    return example_picker(by_api, k, embeddings, mode)


def eval_prompts(
    level_items: Sequence[dict],
    total: Sequence[dict],
    cell: tuple[str, int, str],
    settings: PromptSettings,
    tokenizer_dirs: Sequence[str],
    embeddings: str | None,
) -> list[dict]:
    """Test prompts of one cell (language, level, mode): a seeded sample of ``max_items`` items
    of the level, with examples from the language's ``total`` rows for 3-shot modes."""
    lang, level, mode = cell
    items = sample_items(level_items, settings.max_items, settings.seed, lang, str(level))
    examples = examples_for(mode, group_by(total, "api_name"), settings.k, settings.seed, embeddings)
    trunc = make_truncator(tokenizer_dirs)
    return test_records(
        items, mode, examples, trunc, settings.description_tokens, settings.fewshot_tokens, lang, level
    )

