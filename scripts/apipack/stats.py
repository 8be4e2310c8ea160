"""Intervals and tests for accuracies, i.e. proportions of 0/1 item outcomes.

Items are the unit: with several sampling seeds an item's outcome is its mean over the seeds, so
intervals and tests are over items (seeds of one item are not independent evidence). With one
seed every function below reduces to its textbook exact or score form:

- a cell's accuracy: the Wilson score interval (never [0, 0] for 0/n);
- two cells on the same items (paired): exact McNemar test (a two-sided binomial test on the
  discordant items; with several seeds, the sign test on the per-item mean differences) and a
  seeded paired bootstrap interval of the difference;
- two cells on different items (unpaired): Fisher's exact test and Newcombe's score interval of
  the difference;
- Holm's step-down adjustment over a family of p-values.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import binomtest, fisher_exact
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import confint_proportions_2indep, proportion_confint

ALPHA = 0.05


def wilson(successes: float, n: int, alpha: float = ALPHA) -> tuple[float, float]:
    """Wilson score interval of ``successes / n`` (``successes`` may be a seed-averaged sum)."""
    if n == 0:
        return float("nan"), float("nan")
    lo, hi = proportion_confint(successes, n, alpha=alpha, method="wilson")
    return float(lo), float(hi)


def mcnemar_exact(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided exact McNemar p-value for paired outcomes (per-item values in [0, 1]): a
    binomial test of the items where ``a`` wins among those where the two differ."""
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    wins, losses = int((d > 0).sum()), int((d < 0).sum())
    if wins + losses == 0:
        return 1.0
    return float(binomtest(wins, wins + losses, 0.5).pvalue)


def fisher(k_a: int, n_a: int, k_b: int, n_b: int) -> float:
    """Two-sided Fisher exact p-value of ``k_a/n_a`` against ``k_b/n_b``."""
    return float(fisher_exact([[k_a, n_a - k_a], [k_b, n_b - k_b]]).pvalue)


def newcombe_diff(k_a: float, n_a: int, k_b: float, n_b: int, alpha: float = ALPHA) -> tuple[float, float]:
    """Newcombe's hybrid score interval of ``k_a/n_a - k_b/n_b`` (independent samples)."""
    lo, hi = confint_proportions_2indep(k_a, n_a, k_b, n_b, method="newcomb", compare="diff", alpha=alpha)
    return float(lo), float(hi)


def paired_bootstrap_diff(
    a: Sequence[float], b: Sequence[float], n_boot: int, seed: int, alpha: float = ALPHA
) -> tuple[float, float]:
    """Percentile interval of ``mean(a) - mean(b)``, resampling items jointly (seeded)."""
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if len(d) == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), size=(n_boot, len(d)))].mean(axis=1)
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm-adjusted p-values (family-wise error over all of ``pvalues``)."""
    p = np.asarray(pvalues, dtype=float)
    if len(p) == 0:
        return p
    return multipletests(p, method="holm")[1]
