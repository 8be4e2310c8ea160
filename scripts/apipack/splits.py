"""The paper's three test levels (docs/reference.md section 2), deterministic and linear-time.

Level 1: the first ``level1.size`` instances of ``total[:level1.pool]`` whose API has more than
``level1.min_api_count - 1`` instances; they stay in training and are queried with
``instruction_test``. Level 2: the first instance of each API with more than
``level2.min_api_count - 1`` instances in ``total[:level2.pool]``, up to ``level2.max_apis`` APIs;
removed from training. Level 3: after that removal, instances of ``training[level3.start:]`` whose
API is not in level 2, until ``level3.size`` instances; all instances of those APIs are removed.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pandas as pd

from .data import Policy, Reject, load_instances
from .files import atomic_open, write_json
from .settings import SplitSettings

LEVELS = (1, 2, 3)


@dataclass
class Splits:
    train: list[dict]
    levels: dict[int, list[dict]]


def order_instances(instances: list[dict], order: str, seed: int) -> list[dict]:
    """``file``: keep the dataset file's order (the published concatenation order, as the
    reference); ``shuffle_apis``: a seeded shuffle of whole APIs, instances kept together."""
    if order == "file":
        return list(instances)
    if order != "shuffle_apis":
        raise ValueError(f"splits.order: unknown value {order!r}; allowed: file, shuffle_apis")
    groups: dict[str, list[dict]] = {}
    for inst in instances:
        groups.setdefault(inst["api_name"], []).append(inst)
    names = sorted(groups)
    random.Random(seed).shuffle(names)
    return [inst for name in names for inst in groups[name]]


def make_splits(total: list[dict], p: SplitSettings) -> Splits:
    """Apply the reference's level rules to one language's instances, in the given order."""
    api_counts = Counter(inst["api_name"] for inst in total)
    l1, l2, l3 = p.level1, p.level2, p.level3
    level1 = [
        inst
        for inst in total[: l1["pool"]]
        if inst["instruction_test"] != "None" and api_counts[inst["api_name"]] >= l1["min_api_count"]
    ][: l1["size"]]
    level2, l2_apis = [], set()
    for inst in total[: l2["pool"]]:
        if len(l2_apis) >= l2["max_apis"]:
            break
        name = inst["api_name"]
        if api_counts[name] >= l2["min_api_count"] and name not in l2_apis:
            level2.append(inst)
            l2_apis.add(name)
    l2_ids = {inst["unique_id"] for inst in level2}
    training = [inst for inst in total if inst["unique_id"] not in l2_ids]
    level3, l3_apis = [], set()
    for inst in training[l3["start"] :]:
        if len(level3) >= l3["size"]:
            break
        if inst["api_name"] not in l2_apis:
            level3.append(inst)
            l3_apis.add(inst["api_name"])
    training = [inst for inst in training if inst["api_name"] not in l3_apis]
    return Splits(train=training, levels={1: level1, 2: level2, 3: level3})


def statistics(lang: str, splits: Splits) -> list[dict]:
    """Rows of the split statistics table: APIs and instances per split."""
    parts = {"train": splits.train, **{f"level{k}": v for k, v in splits.levels.items()}}
    return [
        {
            "lang": lang,
            "split": name,
            "apis": len({inst["api_name"] for inst in rows}),
            "instances": len(rows),
        }
        for name, rows in parts.items()
    ]


def manifest(splits: Splits) -> dict[str, list[str]]:
    """unique_ids per split, in split order."""
    return {
        "train": [inst["unique_id"] for inst in splits.train],
        **{f"level{k}": [inst["unique_id"] for inst in v] for k, v in splits.levels.items()},
    }


@dataclass
class LanguageSplits:
    """One language's valid instances in scan order, its splits, and the records rejected."""

    lang: str
    total: list[dict]
    splits: Splits
    rejects: list[Reject]

    @cached_property
    def statistics(self) -> pd.DataFrame:
        stats = pd.DataFrame(statistics(self.lang, self.splits))
        stats["rejected_records"] = len(self.rejects)
        return stats

    def write(self, out) -> None:
        """The files of rule splits (``out``: valid, train, levels, manifest, stats, rejects)."""
        with atomic_open(out.rejects) as fh:
            pd.DataFrame([vars(r) for r in self.rejects], columns=[*Reject.__dataclass_fields__]).to_csv(
                fh, index=False
            )
        write_json(out.valid, self.total, indent=None)
        write_json(out.train, self.splits.train, indent=None)
        for level, path in zip(LEVELS, out.levels):
            write_json(path, self.splits.levels[level], indent=None)
        write_json(out.manifest, manifest(self.splits))
        with atomic_open(out.stats) as fh:
            self.statistics.to_csv(fh, index=False)


def split_language(
    path: str | Path, lang: str, policy: Policy, max_chars: int, params: SplitSettings
) -> LanguageSplits:
    """Validate one language's dataset file (bad records raise, or are rejected with ``policy:
    skip``), order it (``params.order``) and cut the three test levels and the training split."""
    loaded = load_instances(path, lang, policy, max_chars)
    total = order_instances(loaded.instances, params.order, params.seed)
    return LanguageSplits(lang, total, make_splits(total, params), loaded.rejects)


# Distinct test APIs per level in the reference's published splits (docs/reference.md 2).
REFERENCE_TEST_APIS = {
    "curl": (55, 886, 69),
    "python": (54, 900, 116),
    "java": (56, 904, 115),
    "go": (55, 889, 113),
    "javascript": (56, 910, 81),
    "libcurl": (56, 911, 82),
    "node": (56, 906, 114),
    "php": (57, 904, 114),
    "ruby": (56, 890, 115),
    "swift": (56, 889, 115),
}


def with_reference_counts(stats: pd.DataFrame) -> pd.DataFrame:
    """Add the reference's number of test APIs beside ours, for the level rows."""

    def ref(row) -> float:
        if not row["split"].startswith("level"):
            return float("nan")
        return REFERENCE_TEST_APIS[row["lang"]][int(row["split"][-1]) - 1]

    stats = stats.reset_index(drop=True)
    stats["reference_apis"] = stats.apply(ref, axis=1).astype("Int64")
    return stats
