"""Intervals and tests against values computed independently with scipy and statsmodels."""

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest, fisher_exact
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import confint_proportions_2indep

from apipack import stats
from apipack.comparisons import compare_cells, comparisons_table, derive


@pytest.mark.parametrize("k, n", [(0, 10), (1, 10), (7, 10), (10, 10), (3, 25), (0, 1)])
def test_wilson_matches_scipy(k, n):
    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert stats.wilson(k, n) == pytest.approx((ci.low, ci.high), abs=1e-12)


def test_zero_of_ten_has_an_upper_bound_near_0_3():
    lo, hi = stats.wilson(0, 10)
    assert lo == pytest.approx(0, abs=1e-12) and 0.25 < hi < 0.31


@pytest.mark.parametrize("pairs", [[(1, 0)] * 8 + [(0, 0)] * 2, [(1, 0)] * 5 + [(0, 1)] * 2 + [(1, 1)] * 3,
                                   [(0, 1)] * 3 + [(0, 0)] * 20, [(1, 1)] * 4])
def test_exact_mcnemar_matches_statsmodels(pairs):
    a, b = np.array(pairs).T
    table = pd.crosstab(pd.Categorical(a, [0, 1]), pd.Categorical(b, [0, 1]), dropna=False).to_numpy()
    expected = mcnemar(table, exact=True).pvalue
    assert stats.mcnemar_exact(a, b) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("ka, na, kb, nb", [(19, 25, 3, 25), (0, 10, 0, 10), (5, 20, 9, 12)])
def test_fisher_and_newcombe_match_scipy_statsmodels(ka, na, kb, nb):
    assert stats.fisher(ka, na, kb, nb) == pytest.approx(fisher_exact([[ka, na - ka], [kb, nb - kb]]).pvalue)
    ci = confint_proportions_2indep(ka, na, kb, nb, method="newcomb", compare="diff")
    assert stats.newcombe_diff(ka, na, kb, nb) == pytest.approx(ci, abs=1e-12)
    lo, hi = stats.newcombe_diff(ka, na, kb, nb)
    assert lo < ka / na - kb / nb < hi or (ka / na == kb / nb and lo < 0 < hi)


def test_holm_matches_statsmodels_and_is_monotone():
    p = [0.001, 0.04, 0.03, 0.5, 0.0001]
    assert stats.holm(p) == pytest.approx(multipletests(p, method="holm")[1])
    assert (stats.holm(p) >= np.array(p)).all()


def test_paired_bootstrap_is_seeded_and_brackets_the_difference():
    rng = np.random.default_rng(1)
    a, b = rng.random(40) < 0.7, rng.random(40) < 0.3
    lo, hi = stats.paired_bootstrap_diff(a, b, 2000, seed=3)
    assert (lo, hi) == stats.paired_bootstrap_diff(a, b, 2000, seed=3)
    assert lo < a.mean() - b.mean() < hi


def _outcomes(cell: dict, ids, **values) -> pd.DataFrame:
    n = len(ids)
    cols = {m: values.get(m, [False] * n) for m in ("endpoint", "api_call", "method", "host", "path")}
    return pd.DataFrame({**cell, "seed": 0, "unique_id": ids, **cols})


CELL = {"model": "m", "train_set": "ft", "lang": "python", "level": 1, "mode": "zero_shot"}


def test_same_items_are_paired_and_different_items_are_not():
    ids = [f"i{k}" for k in range(12)]
    host_a, host_b = [True] * 10 + [False] * 2, [False] * 12
    df = pd.concat([_outcomes(CELL, ids, host=host_a), _outcomes({**CELL, "train_set": "base"}, ids, host=host_b),
                    _outcomes({**CELL, "level": 3}, [f"j{k}" for k in range(12)], host=host_b)])
    comps = [{"claim": "finetune_vs_base", "a": CELL, "b": {**CELL, "train_set": "base"}},
             {"claim": "level", "a": CELL, "b": {**CELL, "level": 3}}]
    table = comparisons_table(df, comps, 500, 0).set_index(["claim", "metric"])
    paired, unpaired = table.loc[("finetune_vs_base", "host")], table.loc[("level", "host")]
    assert paired["paired"] and paired["p_value"] == pytest.approx(binomtest(10, 10).pvalue)
    assert not unpaired["paired"] and unpaired["p_value"] == pytest.approx(fisher_exact([[10, 2], [0, 12]]).pvalue)
    assert paired["diff"] == pytest.approx(10 / 12)
    assert table["p_holm"].tolist() == pytest.approx(multipletests(table["p_value"], method="holm")[1])
    assert len(table) == 10  # every metric of every comparison, significant or not
    assert table.loc[("level", "endpoint"), "p_value"] == 1 and not table.loc[("level", "endpoint"), "significant"]


def test_seeds_are_averaged_per_item():
    a = pd.DataFrame({"host": [1.0, 0.5, 0.0]}, index=["x", "y", "z"])
    b = pd.DataFrame({"host": [0.0, 0.5, 0.0]}, index=["x", "y", "z"])
    row = compare_cells(a, b, "host", 200, 0)
    assert row["paired"] and row["p_value"] == pytest.approx(1.0)  # one discordant item
    assert row["diff"] == pytest.approx(1 / 3)


def test_default_comparisons_follow_the_experiments():
    config = {
        "experiments": [
            {"model": "m", "train_set": "py", "languages": ["python"], "levels": [1, 3], "prompt_modes": ["zero_shot"]},
            {"model": "m", "train_set": "py-s", "languages": ["python"], "levels": [1], "prompt_modes": ["zero_shot"]},
            {"model": "m", "train_set": "base", "languages": ["python"], "levels": [3]},
            {"model": "m", "train_set": "curl", "languages": ["python"], "levels": [3], "prompt_modes": ["zero_shot"]},
            {"model": "m", "train_set": "mix", "languages": ["python"], "levels": [3], "prompt_modes": ["zero_shot"]},
        ],
        "figures": {"model_battle_train_set": "py", "scaling": {"python": {"py-s": 24, "py": 160}},
                    "cross_lingual": {"series": {"cURL": "curl", "Mixture": "mix"}}},
    }
    got = {(c["claim"], c["a"]["train_set"], c["a"]["level"], c["a"]["mode"], c["b"]["train_set"],
            c["b"]["level"], c["b"]["mode"]) for c in derive(config)}
    assert got == {
        ("finetune_vs_base", "py", 3, "zero_shot", "base", 3, "zero_shot"),
        ("level", "py", 1, "zero_shot", "py", 3, "zero_shot"),
        ("scaling", "py", 1, "zero_shot", "py-s", 1, "zero_shot"),
        ("mixture_vs_curl", "mix", 3, "zero_shot", "curl", 3, "zero_shot"),
        ("retrieval_vs_zero_shot", "base", 3, "retrieval_3shot", "base", 3, "zero_shot"),
    }
