"""How sure are we: the statistics that compare optimizers, each as the literature defines it.

All objectives are minimised (lower is better); a diverged run counts as ``+inf``.

    bootstrap_interval      a statistic of a sample with its percentile bootstrap interval,
                            stratified when the sample comes in strata (repeats): each stratum
                            is resampled on its own (``scipy.stats.bootstrap`` over the strata)
    probability_of_improvement
                            P(X_a < X_b), the Mann-Whitney statistic over n_a n_b (ties count
                            one half), with its bootstrap interval (Agarwal et al. 2021, rliable)
    tied_ranks              ranks "1", "2-4", ...: items whose intervals overlap the best of
                            their group share its ranks
    best_of_k_curve         E[best of k random-search trials] from the K observed objectives
                            (Dodge et al. 2019), exact for draws with replacement, over the draws
                            that did not all fail, and P(all k failed)
    tunability              the omega summaries of Sivaprasad et al. 2020 over k = 1..K

scipy is imported by the functions that need it: the reading commands stay fast.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

CONFIDENCE = 0.95
RESAMPLES = 2000
"""Bootstrap resamples: the interval's ends move by well under 1% of their width between seeds."""


@dataclass(frozen=True)
class Estimate:
    """A statistic and its confidence interval (``low`` = ``high`` = the value when the sample has
    one distinct value or one observation: nothing to resample)."""

    value: float
    low: float
    high: float


def bootstrap_interval(strata: Sequence[Sequence[float]], statistic: Callable[..., Any] = np.mean,
                       *, confidence: float = CONFIDENCE, resamples: int = RESAMPLES, seed: int = 0) -> Estimate:
    """``statistic`` of all observations pooled, and its percentile bootstrap interval, each stratum
    (e.g. the re-evaluations of one repeat) resampled on its own with its own size. ``statistic``
    reduces along its ``axis`` keyword, as ``np.mean`` and ``np.median`` do."""
    from scipy.stats import bootstrap

    samples = [np.asarray(s, dtype=float) for s in strata if len(s)]
    if not samples:
        raise ValueError("no observations")
    pooled = np.concatenate(samples)
    value = float(statistic(pooled))
    if len(pooled) < 2 or np.all(pooled == pooled[0]) or not np.isfinite(pooled).all():
        return Estimate(value, value, value)
    result = bootstrap(samples, lambda *s, axis: statistic(np.concatenate(s, axis=axis), axis=axis), axis=-1,
                       vectorized=True, paired=False, confidence_level=confidence, n_resamples=resamples,
                       method="percentile", random_state=np.random.default_rng(seed))
    return Estimate(value, float(result.confidence_interval.low), float(result.confidence_interval.high))


def probability_of_improvement(a: Sequence[float], b: Sequence[float], *, confidence: float = CONFIDENCE,
                               resamples: int = RESAMPLES, seed: int = 0) -> Estimate:
    """P(X_a < X_b) for one draw of each (a better than b when minimising): the Mann-Whitney U of
    ``b`` over ``a`` divided by n_a n_b, ties one half; both samples resampled for the interval."""
    from scipy.stats import bootstrap

    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if not len(x) or not len(y):
        raise ValueError("no observations")

    def improvement(xs: np.ndarray, ys: np.ndarray, axis: int = -1) -> np.ndarray:
        wins = xs[..., :, None] < ys[..., None, :]
        ties = xs[..., :, None] == ys[..., None, :]
        return (wins.sum(axis=(-2, -1)) + 0.5 * ties.sum(axis=(-2, -1))) / (xs.shape[-1] * ys.shape[-1])

    value = float(improvement(x, y))
    if len(x) < 2 or len(y) < 2:
        return Estimate(value, value, value)
    result = bootstrap((x, y), improvement, axis=-1, vectorized=True, paired=False, confidence_level=confidence,
                       n_resamples=resamples, method="percentile", random_state=np.random.default_rng(seed))
    low, high = result.confidence_interval
    return Estimate(value, float(low) if np.isfinite(low) else value, float(high) if np.isfinite(high) else value)


def tied_ranks(estimates: Sequence[Estimate]) -> list[str]:
    """Ranks by value (lowest first), as text in the input's order: the best item not yet ranked
    opens a group, and every next item whose interval reaches the group's best interval joins it;
    a group of n items from rank r shows "r-(r+n-1)", a group of one "r"."""
    order = sorted(range(len(estimates)), key=lambda i: estimates[i].value)
    ranks = [""] * len(estimates)
    start = 0
    while start < len(order):
        best = estimates[order[start]]
        end = start + 1
        while end < len(order) and estimates[order[end]].low <= best.high:
            end += 1
        label = f"{start + 1}" if end - start == 1 else f"{start + 1}-{end}"
        for i in order[start:end]:
            ranks[i] = label
        start = end
    return ranks


def best_of_k_weights(trials: int, ks: np.ndarray) -> np.ndarray:
    """P(the best of k draws, with replacement, from K = ``trials`` sorted values is the i-th
    smallest), for i = 1..K (rows) and each k of ``ks`` (columns): (1 - (i-1)/K)^k - (1 - i/K)^k
    (the chance that all k draws are at rank i or worse, less the chance that all are worse than i)."""
    i = np.arange(1, trials + 1)[:, None]
    return (1.0 - (i - 1) / trials) ** ks - (1.0 - i / trials) ** ks


def best_of_k_curve(objectives: np.ndarray, ks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each k in ``ks``: E[min of k random-search trials | one of them did not fail], and
    P(all k failed), from K observed objectives (Dodge et al. 2019, draws with replacement).

    A failed trial (diverged or pruned) counts as +inf. With the values sorted, v_(1) <= ... <=
    v_(K), the best of k draws is v_(i) with probability w_i = (1 - (i-1)/K)^k - (1 - i/K)^k
    (``best_of_k_weights``). With d failed trials, sum over the last d of w_i telescopes to
    P(all k failed) = (d/K)^k, and the unconditional E[best] is +inf whenever d > 0, for every k:
    so the expectation is taken over the draws that found a finite value, E = sum over the first
    K - d of v_(i) w_i / (1 - (d/K)^k), reported beside P(all k failed). NaN where every trial failed.

    ``objectives`` may hold resamples on its leading axes (the last axis is the K trials); the
    result then has those axes before the one of ``ks``.
    """
    values = np.sort(np.asarray(objectives, dtype=float), axis=-1)
    trials = values.shape[-1]
    ks = np.asarray(ks)
    weights = best_of_k_weights(trials, ks)  # (K, len(ks))
    finite = np.isfinite(values)
    failed = (trials - finite.sum(axis=-1, keepdims=True)) / trials
    all_failed = failed ** ks
    with np.errstate(invalid="ignore", divide="ignore"):
        total = np.where(finite, values, 0.0) @ weights
        return total / (1.0 - all_failed), all_failed


@dataclass(frozen=True)
class Tunability:
    """The omega summaries (Sivaprasad et al. 2020) of E[best of k] for k = 1..K: one-shot (k=1),
    peak (k=K), and its averages weighted for an early (CPE, weights K-k+1), uniform (CPU, 1) and
    late (CPL, k) budget."""

    one_shot: float
    peak: float
    cpe: float
    cpu: float
    cpl: float


def tunability(curve: Sequence[float]) -> Tunability:
    """The omega summaries of an expected-best curve over k = 1..K (``best_of_k_curve``)."""
    values = np.asarray(curve, dtype=float)
    trials = len(values)
    k = np.arange(1, trials + 1)

    def weighted(weights: np.ndarray) -> float:
        return float(np.dot(values, weights / weights.sum()))

    return Tunability(float(values[0]), float(values[-1]), weighted(trials - k + 1.0), weighted(np.ones(trials)),
                      weighted(k.astype(float)))
