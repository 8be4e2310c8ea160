"""The paper's figure families, drawn from one long table of accuracies.

Both sources are brought to the same columns (role, model, train_set, train_size, lang, level,
mode, endpoint_acc, api_call_acc and, for our results, 95% interval bounds):
``resources/paper_results.csv`` (every published number, with its source) and our
``results/metrics/metrics.csv``. Each family draws from either, so the paper's figures and ours
look the same. The paper's fabricated 10-language "Expert" series (mixture x 1.0025) is not drawn.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .languages import LANGUAGES  # noqa: E402

MODES = {
    "zero_shot": "0-shot",
    "retrieval_3shot": "3-shot retrieval",
    "random_3shot": "3-shot random",
    "rerank_3shot": "3-shot reranked",
}
METRICS = {"endpoint_acc": "Endpoint accuracy", "api_call_acc": "API-call accuracy"}
LEVEL_MARKERS = {1: "o", 2: "s", 3: "^"}
STYLE = {
    "font.size": 10,
    "axes.edgecolor": "black",
    "axes.linewidth": 1.2,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.prop_cycle": plt.cycler(color=plt.get_cmap("tab10").colors),
    "savefig.dpi": 150,
}


def load_reference(path: str | Path) -> pd.DataFrame:
    ref = pd.read_csv(path, dtype={"train_size": "Int64"})
    return ref.assign(source_kind="paper")


def our_results(metrics: pd.DataFrame, figures: dict) -> pd.DataFrame:
    """Average seeds and tag each row with its role in the paper's figures."""
    keys = ["model", "train_set", "lang", "level", "mode"]
    cols = ["endpoint_acc", "api_call_acc", "endpoint_lo", "endpoint_hi", "api_call_lo", "api_call_hi"]
    df = metrics.groupby(keys, as_index=False)[cols].mean() if len(metrics) else metrics
    roles: dict[str, list[str]] = {}
    if figures.get("model_battle_train_set"):
        roles.setdefault(figures["model_battle_train_set"], []).append("model_battle")
    for label, ts in figures.get("cross_lingual", {}).get("series", {}).items():
        roles.setdefault(ts, []).append({"cURL": "curl_only", "Mixture": "mixture"}.get(label, label))
    sizes = {ts: n for per_lang in figures.get("scaling", {}).values() for ts, n in per_lang.items()}
    rows = []
    for _, row in df.iterrows():
        base = {**row.to_dict(), "train_size": sizes.get(row["train_set"], pd.NA)}
        for role in roles.get(row["train_set"], []) + (["scaling"] if row["train_set"] in sizes else []):
            rows.append({**base, "role": role})
        for lang, ts in figures.get("cross_lingual", {}).get("experts", {}).items():
            if row["train_set"] == ts and row["lang"] == lang:
                rows.append({**base, "role": "expert"})
        if row["train_set"] == "base":
            rows.append({**base, "role": "base_model"})
    out = pd.DataFrame(rows, columns=[*df.columns, "train_size", "role"])
    return out.assign(source_kind="ours")


def _err(sub: pd.DataFrame, metric: str) -> np.ndarray | None:
    lo, hi = metric.replace("_acc", "_lo"), metric.replace("_acc", "_hi")
    if lo not in sub or sub[lo].isna().all():
        return None
    return np.vstack([sub[metric] - sub[lo], sub[hi] - sub[metric]]).clip(min=0)


def _empty(ax, text: str = "no data for this panel") -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="grey")
    ax.set_xticks([])


def _bars(ax, df: pd.DataFrame, group: str, series: str, metric: str, order=None) -> None:
    """Grouped bars: one group per ``group`` value, one bar per ``series`` value."""
    if df.empty:
        return _empty(ax)
    groups = order or list(dict.fromkeys(df[group]))
    names = list(dict.fromkeys(df[series].astype(str)))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        sub = df[df[series].astype(str) == name].set_index(group).reindex(groups)
        x = np.arange(len(groups)) + (i - (len(names) - 1) / 2) * width
        ax.bar(x, sub[metric], width, label=str(name), alpha=0.85, yerr=_err(sub, metric), capsize=2)
    labels = [str(g) for g in groups]
    crowded = sum(map(len, labels)) > 40  # long model names would overlap
    ax.set_xticks(np.arange(len(groups)), labels, rotation=20 if crowded else 0, ha="right" if crowded else "center")
    ax.set_ylim(0, 1)


def model_battle(df: pd.DataFrame, lang: str, title: str):
    """Grouped bars per model (bars = levels), 0-shot and 3-shot; scatter endpoint vs API call."""
    sub = df[df["role"].isin(["model_battle", "base_model"]) & (df["lang"] == lang)]
    sub = sub.sort_values("level", kind="stable").copy()
    sub["level_name"] = "Level " + sub["level"].astype(str)
    sub.loc[sub["role"] == "base_model", "model"] += " (base)"
    api = df[(df["role"] == "api_baseline") & (df["lang"] == lang)]
    fig, axes = plt.subplots(3, 3, figsize=(14, 11), layout="constrained")
    for r, mode in enumerate(("zero_shot", "retrieval_3shot")):
        for c, metric in enumerate(METRICS):
            ax = axes[r, c]
            _bars(ax, sub[sub["mode"] == mode], "model", "level_name", metric)
            ax.set_title(f"{METRICS[metric]}, {MODES[mode]}")
            ax.set_ylabel(METRICS[metric])
        axes[r, 2].axis("off")
    for level in (1, 2, 3):
        ax = axes[2, level - 1]
        pts = pd.concat([sub[(sub["level"] == level) & (sub["mode"] == "retrieval_3shot")], api[api["level"] == level]])
        for i, (_, p) in enumerate(pts.iterrows()):
            ax.scatter(p["endpoint_acc"], p["api_call_acc"], s=90, marker="oDs^*>v<"[i % 8], label=p["model"])
        ax.set_title(f"Level {level} (3-shot retrieval)")
        ax.set_xlabel("Endpoint accuracy")
        ax.set_ylabel("API-call accuracy")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        if len(pts):
            ax.legend(fontsize=7, loc="upper left")
        else:
            _empty(ax)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    if handles:
        axes[0, 2].legend(handles, labels, loc="center", title="Test level")
    fig.suptitle(title)
    return fig, pd.concat([sub, api])


def scaling(df: pd.DataFrame, langs: list[str], title: str):
    """Accuracy against training-set size, one line per level (log x when sizes span 10x)."""
    sub = df[df["role"] == "scaling"]
    langs = langs or sorted(sub["lang"].unique())
    fig, axes = plt.subplots(max(len(langs), 1), 4, figsize=(16, 3.8 * max(len(langs), 1)), squeeze=False, layout="constrained")
    for r, lang in enumerate(langs):
        for c, (mode, metric) in enumerate(
            (m, k) for m in ("zero_shot", "retrieval_3shot") for k in METRICS
        ):
            ax = axes[r, c]
            cell = sub[(sub["lang"] == lang) & (sub["mode"] == mode)].dropna(subset=["train_size"])
            if cell.empty:
                _empty(ax)
            for level, g in cell.groupby("level"):
                g = g.sort_values("train_size")
                ax.errorbar(g["train_size"].astype(float), g[metric], yerr=_err(g, metric), ls="--",
                            marker=LEVEL_MARKERS[level], lw=2, ms=7, capsize=2, label=f"Level {level}")
            sizes = cell["train_size"].astype(float)
            if len(sizes) and sizes.max() / max(sizes.min(), 1) >= 10:
                ax.set_xscale("log")
            ax.set_ylim(0, 1)
            ax.set_title(f"{LANGUAGES[lang].label}: {METRICS[metric]}, {MODES[mode]}", fontsize=9)
            ax.set_xlabel("training instances")
            if not cell.empty:
                ax.legend(fontsize=7)
    fig.suptitle(title)
    return fig, sub[sub["lang"].isin(langs)]


def cross_lingual(df: pd.DataFrame, langs3: list[str], all_langs: list[str], title: str):
    """Level-3 API-call accuracy of the cURL-only, mixture and expert models."""
    names = {"curl_only": "cURL model", "mixture": "Mixture model", "expert": "Expert model"}
    sub = df[df["role"].isin(names) & (df["level"] == 3)].copy()
    sub["series"] = pd.Categorical(sub["role"].map(names), list(names.values()), ordered=True)
    sub = sub.sort_values("series")
    fig, axes = plt.subplots(2, 2, figsize=(15, 8), gridspec_kw={"width_ratios": [1, 2.6]}, layout="constrained")
    for r, mode in enumerate(("zero_shot", "retrieval_3shot")):
        m = sub[sub["mode"] == mode]
        _bars(axes[r, 0], m[m["lang"].isin(langs3)], "lang", "series", "api_call_acc", langs3)
        axes[r, 0].set_title(f"Level 3, {MODES[mode]}")
        ten = m[m["role"].isin(["curl_only", "mixture"]) & m["lang"].isin(all_langs)]
        _bars(axes[r, 1], ten, "lang", "series", "api_call_acc", [x for x in all_langs if x in set(ten["lang"])])
        axes[r, 1].set_title(f"Level 3, {MODES[mode]}, all languages")
        for ax in axes[r]:
            ax.set_ylabel("Level 3 API-call acc.")
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=8)
    fig.suptitle(title)
    return fig, sub[sub["lang"].isin(set(langs3) | set(all_langs))]


def parity(ours: pd.DataFrame, ref: pd.DataFrame, title: str):
    """Our accuracy against the paper's for every (role, language, level, mode) both have."""
    keys = ["role", "lang", "level", "mode"]
    paper = ref[ref["role"].isin(["curl_only", "mixture", "expert"])]
    main = ref[(ref["role"] == "model_battle") & (ref["model"] == "CodeLlama-13b")]
    paper = pd.concat([paper, main]).groupby(keys, as_index=False)[list(METRICS)].mean()
    mine = ours.groupby(keys, as_index=False)[list(METRICS)].mean()
    both = mine.merge(paper, on=keys, suffixes=("_ours", "_paper"))
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.6), layout="constrained")
    for ax, metric in zip(axes, METRICS):
        pair = both.dropna(subset=[f"{metric}_ours", f"{metric}_paper"])
        for role, g in pair.groupby("role"):
            ax.scatter(g[f"{metric}_paper"], g[f"{metric}_ours"], s=40, label=role)
        ax.plot([0, 1], [0, 1], color="grey", lw=1, ls=":")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel(f"paper ({METRICS[metric]})")
        ax.set_ylabel(f"ours ({METRICS[metric]})")
        ax.set_title(f"{len(pair)} shared cells")
        if len(pair):
            ax.legend(fontsize=8)
        else:
            _empty(ax, "no cell shared with the paper")
    fig.suptitle(title)
    return fig, both


DATA_COLUMNS = ["role", "model", "train_set", "train_size", "lang", "level", "mode", *METRICS]


def draw(make: Callable[[], tuple], png: str, pdf: str, data: str) -> None:
    """Render one family to PNG and PDF, and write the values it plots to ``data`` (CSV)."""
    with plt.rc_context(STYLE):
        fig, values = make()
        Path(png).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(png)
        fig.savefig(pdf, metadata={"CreationDate": None, "ModDate": None})
        plt.close(fig)
    cols = [c for c in DATA_COLUMNS if c in values] + [c for c in values if c.endswith("_ours") or c.endswith("_paper")]
    values[cols].to_csv(data, index=False, float_format="%.4f")
