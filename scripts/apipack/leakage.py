"""How much of a test set a fine-tuned model has seen: per training set, language and level, the
share of evaluated test items that are themselves training instances, whose gold API call
occurs verbatim in the training set (prompts or completions), and whose test instruction
(``instruction_test``) does. Level 1 tests seen APIs by design, so its items are in training.

Each training set is read once, a batch of records at a time, into a ``TrainingIndex``: its
instances and which of the tested strings it contains, found by one Aho-Corasick automaton of
all tested strings (``ahocorasick_rs``), so no training set is held in memory."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import islice

import ahocorasick_rs
import pandas as pd

from .metrics import extract_api_call
from .prompts import lang_label

COLUMNS = ["train_set", "lang", "level", "n", "item_in_train", "call_in_train", "instruction_in_train"]
# Records are searched as one text per batch, joined by this separator, which no tested string
# holds: a match never spans two records (beyond what the former single joined text allowed).
SEPARATOR = "\n\0\n"


def searched_strings(item: dict) -> tuple[str, str]:
    """What is looked for in training: the item's gold API call and its test instruction."""
    return extract_api_call(item["output"]).strip(), item["instruction_test"].strip()


class Searcher:
    """One automaton of the strings looked for; ``found`` says which occur in a text."""

    def __init__(self, strings: Iterable[str]):
        self.strings = sorted({s for s in strings if s})
        # the contiguous NFA: the fastest scan of the implementations for tens of thousands of
        # strings of hundreds of characters, in about 1 GB for the paper grid's 60,000
        self.automaton = (
            ahocorasick_rs.AhoCorasick(self.strings, implementation=ahocorasick_rs.Implementation.ContiguousNFA)
            if self.strings else None
        )

    def found(self, text: str) -> set[str]:
        if self.automaton is None:
            return set()
        hits = self.automaton.find_matches_as_indexes(text, overlapping=True)
        return {self.strings[i] for i in {hit[0] for hit in hits}}


@dataclass
class TrainingIndex:
    """A training set's instances (language label, unique_id) and the searched strings it holds."""

    ids: set[tuple[str, str]]
    found: set[str]

    @classmethod
    def build(cls, records: Iterable[dict], searcher: Searcher, batch: int = 10_000) -> TrainingIndex:
        ids: set[tuple[str, str]] = set()
        found: set[str] = set()
        records = iter(records)
        while chunk := list(islice(records, batch)):
            ids.update((r["lang"], r["unique_id"]) for r in chunk)
            found |= searcher.found(SEPARATOR.join(r["prompt"] + r["completion"] for r in chunk))
        return cls(ids, found)

    def holds(self, text: str) -> bool:
        """Whether ``text`` occurs in the training set (the empty text always does)."""
        return not text or text in self.found


def leakage_row(items: Sequence[dict], index: TrainingIndex) -> dict:
    """Shares of ``items`` (test instances) found in a training set (``index``).

    An instance is its language and ``unique_id``: ids repeat across languages (one per API file
    and index), so a cURL training instance is not the Python test item with the same id."""
    n = len(items)

    def share(hits: int) -> float:
        return hits / n if n else float("nan")

    strings = [searched_strings(it) for it in items]
    return {
        "n": n,
        "item_in_train": share(sum((lang_label(it), it["unique_id"]) in index.ids for it in items)),
        "call_in_train": share(sum(bool(call) and index.holds(call) for call, _ in strings)),
        "instruction_in_train": share(sum(index.holds(instruction) for _, instruction in strings)),
    }


def leakage_table(tests: dict[tuple[str, int], list[dict]], trains: dict[str, Iterable[dict]]) -> pd.DataFrame:
    """One row per training set and tested (language, level). Each training set's records are
    read once (``trains`` may map names to lazy readers, read one after another)."""
    searcher = Searcher(s for items in tests.values() for it in items for s in searched_strings(it))
    rows = []
    for name in sorted(trains):
        index = TrainingIndex.build(trains[name], searcher)
        rows += [
            {"train_set": name, "lang": lang, "level": level, **leakage_row(items, index)}
            for (lang, level), items in sorted(tests.items())
        ]
    return pd.DataFrame(rows, columns=COLUMNS)
