"""The paper's claims as comparisons of two test cells, tested on per-item outcomes.

A comparison names two cells (model, train_set, lang, level, mode): ``a``, the cell the paper
says is better, and ``b``. It is declared in the config (``comparisons:``) or, by default,
derived from the experiments (``derive``). Each is tested on the paper metric (endpoint and
API-call accuracy) and on the structural fields method, host and path: paired (exact McNemar,
paired bootstrap interval) when both cells hold the same test items, unpaired (Fisher's exact
test, Newcombe's interval) when they do not. ``p_holm`` adjusts over every row of the table.
"""

from __future__ import annotations

from itertools import combinations

import pandas as pd

from .config import ConfigError, experiment_cells
from .metrics import CELL
from .stats import ALPHA, fisher, holm, mcnemar_exact, newcombe_diff, paired_bootstrap_diff

METRICS = ("endpoint", "api_call", "method", "host", "path")
CLAIMS = {
    "finetune_vs_base": "fine-tuning on API Pack beats the untuned model",
    "level": "seen APIs are easier than unseen ones (level 1 > level 2 > level 3)",
    "scaling": "more training instances help",
    "mixture_vs_curl": "mixing in a little of other languages beats cURL-only training",
    "retrieval_vs_zero_shot": "retrieval 3-shot prompts beat 0-shot prompts",
}


def label(cell: dict) -> str:
    return "/".join(f"{cell[k]}" if k != "level" else f"L{cell[k]}" for k in CELL)


def _key(cell: dict) -> tuple:
    return tuple(cell[k] for k in CELL)


def derive(config: dict) -> list[dict]:
    """The default comparisons: every pair of run cells that one of the paper's claims is about."""
    cells = {_key(c): c for c in experiment_cells(config)}
    figures = config.get("figures", {})
    out: list[dict] = []

    def add(claim: str, a: dict, b: dict) -> None:
        if _key(a) in cells and _key(b) in cells and _key(a) != _key(b):
            out.append({"claim": claim, "a": cells[_key(a)], "b": cells[_key(b)]})

    battle = figures.get("model_battle_train_set")
    for c in cells.values():
        if c["train_set"] == "base":
            tuned = {t for (_, t, *_rest) in cells if t != "base"} if battle is None else {battle}
            for t in sorted(tuned):
                add("finetune_vs_base", {**c, "train_set": t}, c)
    for c in cells.values():
        for easy, hard in combinations((1, 2, 3), 2):
            if c["level"] == easy:
                add("level", c, {**c, "level": hard})
    for sizes in figures.get("scaling", {}).values():
        ranked = sorted(sizes, key=sizes.get)
        if len(ranked) >= 2:
            for c in cells.values():
                if c["train_set"] == ranked[-1]:
                    add("scaling", c, {**c, "train_set": ranked[0]})
    series = figures.get("cross_lingual", {}).get("series", {})
    if "Mixture" in series and "cURL" in series:
        for c in cells.values():
            if c["train_set"] == series["Mixture"] and c["lang"] != "curl":
                add("mixture_vs_curl", c, {**c, "train_set": series["cURL"]})
    for c in cells.values():
        if c["mode"] == "retrieval_3shot":
            add("retrieval_vs_zero_shot", c, {**c, "mode": "zero_shot"})
    return out


def declared(config: dict) -> list[dict]:
    """The config's ``comparisons`` (each cell checked against the experiments), else ``derive``."""
    spec = config.get("comparisons")
    if spec is None:
        return derive(config)
    cells = {_key(c) for c in experiment_cells(config)}
    for i, comp in enumerate(spec):
        for side in ("a", "b"):
            if _key(comp[side]) not in cells:
                raise ConfigError(f"comparisons[{i}].{side}: {label(comp[side])} is not a cell of the experiments")
    return [{"claim": c["claim"], "a": c["a"], "b": c["b"]} for c in spec]


def _per_item(outcomes: pd.DataFrame, cell: dict) -> pd.DataFrame:
    """Seed-averaged outcome of every item of one cell."""
    sel = (outcomes[CELL] == pd.Series({k: cell[k] for k in CELL})).all(axis=1)
    return outcomes[sel].groupby("unique_id")[list(METRICS)].mean()


def compare_cells(a: pd.DataFrame, b: pd.DataFrame, metric: str, n_boot: int, seed: int) -> dict:
    """Difference ``a - b`` of one accuracy, its 95% interval and a two-sided p-value."""
    paired = len(a) > 0 and set(a.index) == set(b.index)
    if paired:
        x, y = a[metric], b[metric].reindex(a.index)
        lo, hi = paired_bootstrap_diff(x, y, n_boot, seed)
        p, test = mcnemar_exact(x, y), "exact McNemar"
    else:
        k_a, k_b = round(a[metric].sum()), round(b[metric].sum())
        lo, hi = newcombe_diff(a[metric].sum(), len(a), b[metric].sum(), len(b))
        p, test = fisher(k_a, len(a), k_b, len(b)), "Fisher exact"
    acc_a, acc_b = a[metric].mean(), b[metric].mean()
    return {"metric": metric, "paired": paired, "test": test, "n_a": len(a), "n_b": len(b),
            "acc_a": acc_a, "acc_b": acc_b, "diff": acc_a - acc_b, "ci_lo": lo, "ci_hi": hi, "p_value": p}


def comparisons_table(outcomes: pd.DataFrame, comps: list[dict], n_boot: int, seed: int) -> pd.DataFrame:
    """Every declared comparison on every metric, with Holm-adjusted p-values over the table."""
    rows = []
    for comp in comps:
        a, b = _per_item(outcomes, comp["a"]), _per_item(outcomes, comp["b"])
        for metric in METRICS:
            rows.append({"claim": comp["claim"], "statement": CLAIMS.get(comp["claim"], comp["claim"]),
                         "a": label(comp["a"]), "b": label(comp["b"]),
                         **compare_cells(a, b, metric, n_boot, seed)})
    df = pd.DataFrame(rows, columns=["claim", "statement", "a", "b", "metric", "paired", "test", "n_a", "n_b", "acc_a",
                                     "acc_b", "diff", "ci_lo", "ci_hi", "p_value"])
    df["p_holm"] = holm(df["p_value"])
    df["significant"] = df["p_holm"] < ALPHA
    df["as_paper"] = df["significant"] & (df["diff"] > 0)
    return df
