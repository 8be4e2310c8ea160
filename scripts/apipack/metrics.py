"""The paper's endpoint and API-call accuracy (reference ``eval_combine.py``), and aggregation.

``mode="paper"`` reproduces the reference exactly, quirks included (the Python path regex that
never matches PATCH/HEAD/OPTIONS); ``mode="fixed"`` accepts any method there. Similarity is
``difflib.SequenceMatcher(None, a, b).ratio() > 0.9``, computed by cydifflib (the same algorithm
in C, identical results) after rapidfuzz's LCS ratio, an exact upper bound of difflib's ratio
(matching blocks form a common subsequence), has ruled out the clear misses.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import cydifflib
import pandas as pd
from rapidfuzz.distance import Indel

from .languages import COMPILED_URL, GO_REQUEST_REGEX, LANGUAGES, PYTHON_PATH_REGEX

THRESHOLD = 0.9
API_CALL_RE = re.compile(r"\**api_call\**:(.*?)\n\**api_provider\**", re.DOTALL)
API_CALL_START_RE = re.compile(r"\**api_call\**:(.*)", re.DOTALL)
PY_HOST_RE = COMPILED_URL["python"]
PY_PATH_RE = {mode: re.compile(rx) for mode, rx in PYTHON_PATH_REGEX.items()}
GO_REQ_RE = re.compile(GO_REQUEST_REGEX)


def extract_api_call(text: str) -> str:
    m = API_CALL_RE.search(text)
    return m.group(1) if m else ""


def extract_partial_call(text: str) -> tuple[str, bool]:
    """The api_call and whether it is complete; a call cut off before ``**api_provider**`` (by
    the token limit) is returned up to the end of the text, with ``False``."""
    m = API_CALL_RE.search(text)
    if m:
        return m.group(1), True
    m = API_CALL_START_RE.search(text)
    return (m.group(1), False) if m else ("", True)


@lru_cache(maxsize=65_536)
def similar(a: str, b: str) -> bool:
    """``ratio(a, b) > 0.9``, deciding by an exact upper bound first."""
    if a == b:  # ratio is 1.0, also for two empty strings
        return True
    if Indel.normalized_similarity(a, b) <= THRESHOLD:
        return False
    return cydifflib.SequenceMatcher(None, a, b).ratio() > THRESHOLD


def _first(regex: re.Pattern, text: str) -> str | None:
    m = regex.search(text)
    return m.group(1) if m else None


def endpoint_match(lang: str, pred_call: str, gold_call: str, mode: str = "paper") -> bool:
    """The reference's per-language endpoint comparison on two extracted api_calls."""
    if lang == "python":
        path_re = PY_PATH_RE[mode]
        parts = []
        for regex, unquote in ((PY_HOST_RE, False), (path_re, True)):
            p, g = _first(regex, pred_call), _first(regex, gold_call)
            if p is None or g is None:
                return False
            if unquote:
                p, g = urllib.parse.unquote(p), urllib.parse.unquote(g)
            parts.append((p.rstrip(".").rstrip("/"), g.rstrip(".").rstrip("/")))
        return all(similar(p, g) for p, g in parts)
    regex = COMPILED_URL[lang]
    p, g = _first(regex, pred_call), _first(regex, gold_call)
    if p is None or g is None:
        return False
    if lang == "go" and not (GO_REQ_RE.search(pred_call) and GO_REQ_RE.search(gold_call)):
        return False
    if lang == "curl":
        p, g = urllib.parse.unquote(p), urllib.parse.unquote(g)
    return similar(p, g)


def score_pair(lang: str, output: str, ground_truth: str, mode: str = "paper") -> dict:
    """``endpoint_match`` and ``api_call_match`` for one generated output."""
    if lang not in LANGUAGES:
        raise ValueError(f"unknown language {lang!r}; allowed: {', '.join(LANGUAGES)}")
    pred, gold = extract_api_call(output), extract_api_call(ground_truth)
    endpoint = endpoint_match(lang, pred, gold, mode)
    return {"endpoint_match": endpoint, "api_call_match": endpoint and similar(pred, gold)}


def cell_of(path: str) -> dict:
    """Cell keys from ``results/scores/{model}/{train_set}/{lang}/L{level}_{mode}_s{seed}.jsonl``."""
    parts = Path(path).parts
    model, train_set, lang, name = parts[-4:]
    level, rest = name.removesuffix(".jsonl").split("_", 1)
    mode, seed = rest.rsplit("_s", 1)
    return {
        "model": model,
        "train_set": train_set,
        "lang": lang,
        "level": int(level[1:]),
        "mode": mode,
        "seed": int(seed),
    }


CELL = ["model", "train_set", "lang", "level", "mode"]
ACCURACIES = ("endpoint", "api_call", "method", "host", "path", "query", "headers", "body")


def outcomes(paths: Sequence[str]) -> pd.DataFrame:
    """One row per cell, seed and item: the 0/1 outcome of every accuracy, and the error label."""
    from .files import read_jsonl

    frames = []
    for path in sorted(paths):
        items = read_jsonl(path)
        df = pd.DataFrame(
            {
                "unique_id": [it["unique_id"] for it in items],
                **{name: [bool(it[f"{name}_match"]) for it in items] for name in ACCURACIES},
                "error": [it["error"] for it in items],
                "reference_skip": [bool(it.get("reference_skip", False)) for it in items],
            }
        )
        frames.append(df.assign(**cell_of(path)))
    cols = [*CELL, "seed", "unique_id", *ACCURACIES, "error", "reference_skip"]
    return pd.concat(frames, ignore_index=True)[cols] if frames else pd.DataFrame(columns=cols)


def _accuracies(items: pd.DataFrame) -> dict:
    """Mean and Wilson 95% interval of every accuracy over items (seed-averaged per item)."""
    from .stats import wilson

    per_item = items.groupby("unique_id")[list(ACCURACIES)].mean()
    row = {"n": len(per_item)}
    for name in ACCURACIES:
        hits = float(per_item[name].sum())
        row[f"{name}_acc"] = hits / len(per_item) if len(per_item) else float("nan")
        row[f"{name}_lo"], row[f"{name}_hi"] = wilson(hits, len(per_item))
    return row


def metrics_table(paths: Sequence[str]) -> pd.DataFrame:
    """One row per cell and seed: accuracies (paper and structural) with Wilson 95% intervals,
    counts of error labels, and ``reference_skips``: items the reference's scorer would have
    dropped from its denominator (docs/deviations.md), which stay in ``n`` here."""
    from .structural import LABELS

    rows = []
    for key, items in outcomes(paths).groupby([*CELL, "seed"], sort=True):
        row = {**dict(zip([*CELL, "seed"], key)), **_accuracies(items)}
        for label in LABELS:
            row[f"error_{label}"] = int((items["error"] == label).sum())
        row["reference_skips"] = int(items["reference_skip"].sum())  # kept in n here
        rows.append(row)
    return pd.DataFrame(rows)


def cell_table(paths: Sequence[str]) -> pd.DataFrame:
    """One row per cell over all its sampling seeds: the mean accuracy and a Wilson 95% interval
    over items, each item counted once with its mean over the seeds."""
    rows = []
    for key, items in outcomes(paths).groupby(CELL, sort=True):
        rows.append({**dict(zip(CELL, key)), "seeds": items["seed"].nunique(), **_accuracies(items)})
    return pd.DataFrame(rows)
