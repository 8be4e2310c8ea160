"""How much of a test set a fine-tuned model has seen: per training set, language and level, the
share of evaluated test items that are themselves training instances, whose gold API call
occurs verbatim in the training set (prompts or completions), and whose test instruction
(``instruction_test``) does. Level 1 tests seen APIs by design, so its items are in training."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from .metrics import extract_api_call
from .prompts import lang_label

COLUMNS = ["train_set", "lang", "level", "n", "item_in_train", "call_in_train", "instruction_in_train"]


def leakage_row(items: Sequence[dict], train: Sequence[dict]) -> dict:
    """Shares of ``items`` (test instances) found in ``train`` (prompt/completion records).

    An instance is its language and ``unique_id``: ids repeat across languages (one per API file
    and index), so a cURL training instance is not the Python test item with the same id."""
    ids = {(r["lang"], r["unique_id"]) for r in train}
    text = "\n\0\n".join(r["prompt"] + r["completion"] for r in train)
    n = len(items)

    def share(hits: int) -> float:
        return hits / n if n else float("nan")

    calls = [extract_api_call(it["output"]).strip() for it in items]
    return {
        "n": n,
        "item_in_train": share(sum((lang_label(it), it["unique_id"]) in ids for it in items)),
        "call_in_train": share(sum(bool(c) and c in text for c in calls)),
        "instruction_in_train": share(sum(it["instruction_test"].strip() in text for it in items)),
    }


def leakage_table(tests: dict[tuple[str, int], list[dict]], trains: dict[str, list[dict]]) -> pd.DataFrame:
    """One row per training set and tested (language, level)."""
    rows = [
        {"train_set": name, "lang": lang, "level": level, **leakage_row(items, train)}
        for name, train in sorted(trains.items())
        for (lang, level), items in sorted(tests.items())
    ]
    return pd.DataFrame(rows, columns=COLUMNS)
