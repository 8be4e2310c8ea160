"""Figures draw only panels with data, and only the families that the experiments fill."""

import copy

import matplotlib.pyplot as plt
import numpy as np
import pytest

from apipack import figures as F
from apipack.config import figure_families
from apipack.languages import LANG_KEYS
from conftest import ROOT

REF = F.load_reference(ROOT / "resources" / "paper_results.csv")


def has_data(ax) -> bool:
    bars = [p for p in ax.patches if np.isfinite(p.get_height())]
    points = [c for c in ax.collections if len(c.get_offsets())]
    lines = [ln for ln in ax.lines if len(ln.get_xdata())]
    return bool(bars or points or lines)


@pytest.mark.parametrize("make", [
    lambda: F.model_battle(REF, "python", "t"),
    lambda: F.scaling(REF, ["curl", "python"], "t"),
    lambda: F.cross_lingual(REF, ["curl", "python", "java"], list(LANG_KEYS), "t"),
])
def test_paper_figures_have_no_empty_panel_and_no_legend_without_data(make):
    fig, _ = make()
    assert fig.axes
    for ax in fig.axes:
        assert has_data(ax), ax.get_title()
        legend = ax.get_legend()
        if legend:
            drawn = {h.get_label() for h in ax.get_legend_handles_labels()[0]}
            assert {t.get_text() for t in legend.get_texts()} <= drawn
    plt.close(fig)


def test_paper_model_battle_draws_the_zero_shot_scatter_panels():
    fig, _ = F.model_battle(REF, "python", "t")
    titles = {ax.get_title() for ax in fig.axes}
    assert {f"Level {n} (0-shot)" for n in (1, 2, 3)} <= titles
    plt.close(fig)


CONFIG = {
    "experiments": [
        {"model": "m", "train_set": "py", "languages": ["python"], "levels": [1, 3], "prompt_modes": ["zero_shot"]},
        {"model": "m", "train_set": "base", "languages": ["python"], "levels": [3]},
    ],
    "figures": {"model_battle_train_set": "py", "model_battle_language": "python",
                "scaling": {"python": {"py-s": 24, "py": 160}},
                "cross_lingual": {"series": {"cURL": "curl", "Mixture": "mix"}, "experts": {"java": "py"},
                                  "languages": ["curl", "python", "java"]}},
}


def test_figure_families_follow_the_experiments():
    assert figure_families(CONFIG) == ["model_battle", "scaling", "parity", "structural"]
    with_expert = copy.deepcopy(CONFIG)
    with_expert["figures"]["cross_lingual"]["experts"] = {"python": "py"}
    assert "cross_lingual" in figure_families(with_expert)
