"""The paper's figure families, drawn from one long table of accuracies.

Both sources are brought to the same columns (role, model, train_set, train_size, lang, level,
mode, endpoint_acc, api_call_acc and, for our results, 95% interval bounds):
``resources/paper_results.csv`` (every published number, with its source) and our
``results/metrics/metrics.csv``. Each family draws from either, so the paper's figures and ours
look the same. The paper's fabricated 10-language "Expert" series (mixture x 1.0025) is not drawn.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .languages import LANG_KEYS, LANGUAGES  # noqa: E402

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


FIELDS = {"method_acc": "Method match", "host_acc": "Host match", "path_acc": "Path match"}
INTERVALS = [f"{m}_{b}" for m in ("endpoint", "api_call", "method", "host", "path") for b in ("lo", "hi")]


def our_results(cells: pd.DataFrame, figures: dict) -> pd.DataFrame:
    """Tag each cell (seed-averaged, from ``cells.csv``) with its roles in the paper's figures."""
    roles: dict[str, list[str]] = {}
    if figures.get("model_battle_train_set"):
        roles.setdefault(figures["model_battle_train_set"], []).append("model_battle")
    for label, ts in figures.get("cross_lingual", {}).get("series", {}).items():
        roles.setdefault(ts, []).append({"cURL": "curl_only", "Mixture": "mixture"}.get(label, label))
    scaling = figures.get("scaling", {})
    rows = []
    for _, row in cells.iterrows():
        sizes = scaling.get(row["lang"], {})  # a language's curve: its own training sets only
        base = {**row.to_dict(), "train_size": sizes.get(row["train_set"], pd.NA)}
        for role in roles.get(row["train_set"], []) + (["scaling"] if row["train_set"] in sizes else []):
            rows.append({**base, "role": role})
        for lang, ts in figures.get("cross_lingual", {}).get("experts", {}).items():
            if row["train_set"] == ts and row["lang"] == lang:
                rows.append({**base, "role": "expert"})
        if row["train_set"] == "base":
            rows.append({**base, "role": "base_model"})
        rows.append({**base, "role": "structural"})
    out = pd.DataFrame(rows, columns=[*cells.columns, "train_size", "role"])
    return out.assign(source_kind="ours")


def _err(sub: pd.DataFrame, metric: str) -> np.ndarray | None:
    lo, hi = metric.replace("_acc", "_lo"), metric.replace("_acc", "_hi")
    if lo not in sub or sub[lo].isna().all():
        return None
    return np.vstack([sub[metric] - sub[lo], sub[hi] - sub[metric]]).clip(min=0)


def _panels(n: int, ncols: int, size: tuple[float, float] = (4.6, 3.6)):
    """A figure with exactly ``n`` axes (no blank panel), ``ncols`` to a row at most."""
    ncols = max(1, min(n, ncols))
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size[0] * ncols, size[1] * nrows + 0.6),
                             squeeze=False, layout="constrained")
    flat = list(axes.flat)
    for ax in flat[n:]:
        fig.delaxes(ax)
    return fig, flat[:n]


def _note(fig, missing: list[str]) -> None:
    """Say under the figure what the config did not run (so that no panel is drawn empty)."""
    if missing:
        text = "Not run by this config: " + "; ".join(missing)
        fig.get_layout_engine().set(rect=(0, 0.05, 1, 0.95))
        fig.text(0.01, 0.005, "\n".join(textwrap.wrap(text, 180)), fontsize=8, color="dimgrey", va="bottom")


def _bars(ax, df: pd.DataFrame, group: str, series: str, metric: str, order=None) -> None:
    """Grouped bars: one group per ``group`` value, one bar per ``series`` value that has data."""
    df = df.dropna(subset=[metric])
    groups = [g for g in (order or list(dict.fromkeys(df[group]))) if g in set(df[group])]
    names = list(dict.fromkeys(df[series].astype(str)))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        sub = df[df[series].astype(str) == name].set_index(group).reindex(groups)
        x = np.arange(len(groups)) + (i - (len(names) - 1) / 2) * width
        bars = ax.bar(x, sub[metric], width, label=str(name), alpha=0.85, yerr=_err(sub, metric), capsize=2)
        zero = ["0" if v == 0 else "" for v in sub[metric]]  # a bar of height 0 is data, not a gap
        ax.bar_label(bars, zero, fontsize=7, padding=1)
    labels = [str(g) for g in groups]
    crowded = sum(map(len, labels)) > 40  # long model names would overlap
    ax.set_xticks(np.arange(len(groups)), labels, rotation=20 if crowded else 0, ha="right" if crowded else "center")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=7, loc="upper right")


def _modes(df: pd.DataFrame) -> list[str]:
    return [m for m in MODES if m in set(df["mode"])]


def _levels(levels) -> str:
    return "L" + ",".join(str(x) for x in sorted(levels))


def model_battle(df: pd.DataFrame, lang: str, title: str):
    """Per prompt mode: grouped bars per model (bars = levels) for both accuracies, then endpoint
    against API-call accuracy per level. Only the (mode, level) cells that were run are drawn."""
    sub = df[df["role"].isin(["model_battle", "base_model"]) & (df["lang"] == lang)]
    sub = sub.sort_values("level", kind="stable").copy()
    sub["level_name"] = "Level " + sub["level"].astype(str)
    sub.loc[sub["role"] == "base_model", "model"] += " (base)"
    api = df[(df["role"] == "api_baseline") & (df["lang"] == lang)]
    draws = []
    for mode in _modes(sub):
        m = sub[sub["mode"] == mode]
        for metric in METRICS:
            draws.append((f"{METRICS[metric]}, {MODES[mode]}", lambda ax, m=m, k=metric: (
                _bars(ax, m, "model", "level_name", k), ax.set_ylabel(METRICS[k]))))
        for level in sorted(m["level"].unique()):
            pts = pd.concat([m[m["level"] == level], api[(api["level"] == level) & (api["mode"] == mode)]])
            draws.append((f"Level {level} ({MODES[mode]})", lambda ax, pts=pts: _scatter(ax, pts)))
    fig, axes = _panels(len(draws), 5 if len(draws) > 6 else 3)
    for ax, (name, draw) in zip(axes, draws):
        draw(ax)
        ax.set_title(name, fontsize=9)
    missing = []
    for model, g in sub.groupby("model"):
        for mode in ("zero_shot", "retrieval_3shot"):
            absent = {1, 2, 3} - set(g.loc[g["mode"] == mode, "level"])
            if absent:
                missing.append(f"{model} {MODES[mode]} {_levels(absent)}")
    _note(fig, missing)
    fig.suptitle(title)
    return fig, pd.concat([sub, api])


def _scatter(ax, pts: pd.DataFrame) -> None:
    for i, (_, p) in enumerate(pts.iterrows()):
        ax.scatter(p["endpoint_acc"], p["api_call_acc"], s=90, marker="oDs^*>v<"[i % 8], label=p["model"], alpha=0.8)
    ax.set_xlabel("Endpoint accuracy")
    ax.set_ylabel("API-call accuracy")
    ax.set_xlim(-0.03, 1)
    ax.set_ylim(-0.03, 1)
    ax.legend(fontsize=7, loc="upper left")


def scaling(df: pd.DataFrame, langs: list[str], title: str, metrics: dict[str, str] = METRICS):
    """Accuracy (each of ``metrics``) against training-set size, one line per level; a categorical
    axis (one tick per size) when there are few sizes, a log axis when they span 10x or more."""
    sub = df[(df["role"] == "scaling") & df["lang"].isin(langs)].dropna(subset=["train_size"])
    keys = [(lang, mode) for lang in langs for mode in _modes(sub[sub["lang"] == lang])]
    fig, axes = _panels(len(metrics) * len(keys), 4 if len(metrics) == 2 else len(metrics), (4.2, 3.6))
    for i, ((lang, mode), metric) in enumerate((k, m) for k in keys for m in metrics):
        ax, cell = axes[i], sub[(sub["lang"] == lang) & (sub["mode"] == mode)]
        sizes = sorted(cell["train_size"].astype(int).unique())
        few = len(sizes) <= 4
        for level, g in cell.groupby("level"):
            g = g.sort_values("train_size")
            x = [sizes.index(n) for n in g["train_size"].astype(int)] if few else g["train_size"].astype(float)
            ax.errorbar(x, g[metric], yerr=_err(g, metric), ls="--", marker=LEVEL_MARKERS[level], lw=2, ms=7,
                        capsize=2, label=f"Level {level}")
        if few:
            ax.set_xticks(range(len(sizes)), [f"{n:,}" for n in sizes])
            ax.set_xlim(-0.5, len(sizes) - 0.5)
        elif sizes[-1] / max(sizes[0], 1) >= 10:
            ax.set_xscale("log")
        ax.set_ylim(-0.03, 1)
        ax.set_title(f"{LANGUAGES[lang].label}: {metrics[metric]}, {MODES[mode]}", fontsize=9)
        ax.set_xlabel("training instances")
        ax.legend(fontsize=7)
    missing = [f"{LANGUAGES[lang].label} {MODES[mode]}" for lang in langs for mode in ("zero_shot", "retrieval_3shot")
               if (lang, mode) not in keys]
    missing += [f"{LANGUAGES[lang].label} {MODES[mode]} {_levels(absent)} at {n:,}"
                for lang, mode in keys
                for n, g in sub[(sub["lang"] == lang) & (sub["mode"] == mode)].groupby("train_size")
                if (absent := {1, 2, 3} - set(g["level"]))]
    _note(fig, missing)
    fig.suptitle(title)
    return fig, sub


def cross_lingual(df: pd.DataFrame, langs3: list[str], all_langs: list[str], title: str,
                  metrics: dict[str, str] | None = None):
    """Level-3 accuracy (API-call, or each of ``metrics``) of the cURL-only, mixture and expert
    models, per prompt mode: the main languages, and every language where more were run."""
    metrics = metrics or {"api_call_acc": "API-call acc."}
    names = {"curl_only": "cURL model", "mixture": "Mixture model", "expert": "Expert model"}
    sub = df[df["role"].isin(names) & (df["level"] == 3)].dropna(subset=list(metrics))
    sub["series"] = pd.Categorical(sub["role"].map(names), list(names.values()), ordered=True)
    sub = sub.sort_values("series")
    draws = []
    for mode in _modes(sub):
        m = sub[sub["mode"] == mode]
        main = m[m["lang"].isin(langs3)]
        for metric in metrics:
            if len(main):
                draws.append((f"Level 3, {MODES[mode]}", main, langs3, metric))
            ten = m[m["role"].isin(["curl_only", "mixture"]) & m["lang"].isin(all_langs)]
            if set(ten["lang"]) - set(langs3):
                order = [x for x in all_langs if x in set(ten["lang"])]
                draws.append((f"Level 3, {MODES[mode]}, all languages", ten, order, metric))
    fig, axes = _panels(len(draws), 2, (7.0, 3.8))
    for ax, (name, data, order, metric) in zip(axes, draws):
        _bars(ax, data, "lang", "series", metric, order)
        ax.set_title(name)
        ax.set_ylabel(f"Level 3 {metrics[metric]}")
    missing = [f"{MODES[mode]}" for mode in ("zero_shot", "retrieval_3shot") if mode not in set(sub["mode"])]
    for mode in _modes(sub):
        m = sub[sub["mode"] == mode]
        for series in names.values():
            absent = [LANGUAGES[x].label for x in langs3 if not ((m["series"] == series) & (m["lang"] == x)).any()]
            if absent:
                missing.append(f"{series} on {', '.join(absent)} ({MODES[mode]})")
    _note(fig, missing)
    fig.suptitle(title)
    return fig, sub[sub["lang"].isin(set(langs3) | set(all_langs))]


def structural(df: pd.DataFrame, title: str):
    """Method, host and path match (structural metric, Wilson 95% intervals) by level, with one
    bar per model and training set, one row of panels per prompt mode that was run."""
    sub = df[df["role"] == "structural"].sort_values(["level", "train_set"]).copy()
    several = sub["model"].nunique() > 1
    sub["series"] = (sub["model"] + "/" if several else "") + sub["train_set"].astype(str)
    if sub["lang"].nunique() > 1:  # one bar per model and language: no two bars share a slot
        sub["series"] += " on " + sub["lang"].astype(str)
    sub["level_name"] = "Level " + sub["level"].astype(str)
    keys = [(mode, field) for mode in _modes(sub) for field in FIELDS]
    fig, axes = _panels(len(keys), 3, (5.2, 3.8))
    for ax, (mode, field) in zip(axes, keys):
        _bars(ax, sub[sub["mode"] == mode], "level_name", "series", field)
        ax.set_title(f"{FIELDS[field]}, {MODES[mode]}", fontsize=9)
        ax.set_ylabel(f"{FIELDS[field]} (share of items)")
    fig.suptitle(title)
    return fig, sub


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
            ax.text(0.5, 0.5, "no cell shared with the paper", ha="center", va="center", transform=ax.transAxes)
    fig.suptitle(title)
    return fig, both


DATA_COLUMNS = ["role", "model", "train_set", "train_size", "lang", "level", "mode", *METRICS, *FIELDS, *INTERVALS]


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


def loss_curve(log: pd.DataFrame, title: str, png: str) -> None:
    """Training loss per logged step (``results/train_logs/*.csv``), epochs marked on top."""
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(6, 3.8), layout="constrained")
        ax.plot(log["step"], log["loss"], marker="o", ms=3, lw=1.5)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("training loss (completion tokens)")
        ax.set_ylim(bottom=0)
        first, last, steps = log["loss"].iloc[0], log["loss"].iloc[-1], int(log["step"].max())
        ax.set_title(f"{title}: {first:.2f} -> {last:.2f} in {steps} steps", fontsize=9)
        Path(png).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(png)
        plt.close(fig)


def family_figure(
    family: str,
    reference: pd.DataFrame,
    cells: pd.DataFrame | None,
    figures: dict | None,
    languages: list[str] | None,
    paths: tuple[str, str, str],
) -> str:
    """Draw one figure family (png, pdf and its data csv: ``paths``) from our cells table, with
    the config's ``figures`` section and run ``languages``, or without cells from the paper's
    published numbers; returns a line saying what was drawn."""
    ours = cells is not None
    if ours:
        df = our_results(cells, figures)
        what, lang = "our results", figures["model_battle_language"]
        scaling_langs = list(figures["scaling"])
        cross = figures["cross_lingual"]["languages"]
        every = [x for x in LANG_KEYS if x in languages]
    else:
        df, what, lang = reference, "published numbers (CodeLlama-13b unless named)", "python"
        scaling_langs, cross, every = ["curl", "python"], ["curl", "python", "java"], list(LANG_KEYS)
    title = f"{family.replace('_', ' ').capitalize()}: {what}"
    # Our small models show their signal in the structural host field: drawn beside the paper's.
    host = {"host_acc": "Host match (structural)"} if ours else {}
    makers = {
        "model_battle": lambda: model_battle(df, lang, title),
        "scaling": lambda: scaling(df, scaling_langs, title, {**METRICS, **host}),
        "cross_lingual": lambda: cross_lingual(df, cross, every, title, {"api_call_acc": "API-call acc.", **host}),
        "parity": lambda: parity(df, reference, title),
        "structural": lambda: structural(df, title),
    }
    if family not in makers or (family in ("parity", "structural") and not ours):
        raise ValueError(f"unknown figure family {family!r} for {what}")
    draw(makers[family], *paths)
    return f"drew {family} from {what}: {len(df)} rows"
