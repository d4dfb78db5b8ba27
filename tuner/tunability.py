"""Tunability: what a budget of k trials buys, per optimizer and sampler.

    expected    (samplers that draw each trial independently: random search) E[best objective of
                k trials] for k = 1..K from the trials of every repeat, with a 95% bootstrap band
                (the repeats' trials resampled each on their own) and P(all k trials failed)
                (``stats.best_of_k_curve``: a diverged or pruned trial counts as +inf, and the
                expectation is over the draws that found a finite value)
    observed    (adaptive samplers: TPE, CMA-ES; and QMC, grid) the best objective after k trials
                in trial order: its median over repeats, the band from the best to the worst repeat
    omega       the summaries of Sivaprasad et al. 2020 of an expected curve: one-shot (k=1), peak
                (k=K), CPE / CPU / CPL (weights K-k+1, 1, k)
    winners     for each sampler with expected curves: which optimizer has the lowest expected
                best at each k, as ranges of k; a crossover is where the winner changes

Objectives are minimised; a diverged or pruned trial counts as +inf (failed). Under steps_to_target a
value above the step budget is a miss's ranking score (``records.target_score``), not a step count.
"""

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sqlalchemy import Engine

from tuner import stats
from tuner.samplers import SAMPLERS
from tuner.storage import queries
from tuner.storage.records import COMPLETE

BAND_RESAMPLES = 1000
"""Bootstrap resamples of a study's trials for the band of its expected curve."""


@dataclass(frozen=True)
class Curve:
    """The best objective after k = 1..K trials of one optimizer and sampler."""

    optimizer: str
    sampler: str
    kind: str
    """``expected`` (random search, Dodge et al.) or ``observed`` (best so far, median of repeats)."""
    value: np.ndarray
    low: np.ndarray
    high: np.ndarray
    failed: np.ndarray
    """expected: P(all k trials failed); observed: the share of repeats with no finite value yet."""

    @property
    def k(self) -> np.ndarray:
        return np.arange(1, len(self.value) + 1)


@dataclass(frozen=True)
class Winner:
    """From budget ``first`` to ``last`` trials (inclusive), ``optimizer`` expects the best objective."""

    sampler: str
    first: int
    last: int
    optimizer: str


@dataclass(frozen=True)
class Tunability:
    """Every curve, the omega summaries of the expected ones (by optimizer and sampler) and the
    winners at each budget."""

    curves: list[Curve]
    omega: dict[tuple[str, str], stats.Tunability]
    winners: list[Winner]

    def frame(self) -> pd.DataFrame:
        """The curves in long form: optimizer, sampler, kind, k, value, low, high, failed."""
        return pd.DataFrame([
            {"optimizer": c.optimizer, "sampler": c.sampler, "kind": c.kind, "k": k, "value": v, "low": lo,
             "high": hi, "failed": f}
            for c in self.curves
            for k, v, lo, hi, f in zip(c.k, c.value, c.low, c.high, c.failed, strict=True)
        ])


def tunability(engine: Engine, name: str) -> Tunability:
    """The tunability of experiment ``name`` from its finished trials (``queries.trials``)."""
    experiment_id, _ = queries.experiment(engine, name)
    trials = queries.trials(engine, experiment_id)
    curves = []
    for (optimizer, sampler), mine in trials.groupby(["optimizer", "sampler"], sort=True):
        # in trial order per repeat (queries.trials' order); a diverged or pruned trial: +inf
        scores = np.where(mine["state"] == COMPLETE, mine["objective"], np.inf)
        strata = [scores[(mine["repeat"] == repeat).to_numpy()] for repeat in sorted(mine["repeat"].unique())]
        if SAMPLERS[sampler].independent:
            curves.append(expected_curve(optimizer, sampler, strata))
        else:
            curves.append(observed_curve(optimizer, sampler, strata))
    omega = {(c.optimizer, c.sampler): stats.tunability(c.value) for c in curves
             if c.kind == "expected" and np.isfinite(c.value).all()}
    return Tunability(curves, omega, winners(curves))


def expected_curve(optimizer: str, sampler: str, strata: list[np.ndarray]) -> Curve:
    """E[best of k] for k = 1 .. the longest repeat's trials, from every repeat's trials pooled,
    with the percentile band of BAND_RESAMPLES resamples (each repeat resampled on its own; a
    resample in which every trial failed counts as the worst finite objective). NaN where every
    trial failed."""
    from scipy.stats import bootstrap

    pooled = np.concatenate(strata)
    ks = np.arange(1, max(map(len, strata)) + 1)
    value, failed = stats.best_of_k_curve(pooled, ks)
    if len(pooled) < 2 or np.all(pooled == pooled[0]):
        return Curve(optimizer, sampler, "expected", value, value, value, failed)

    finite = pooled[np.isfinite(pooled)]
    worst = finite.max() if len(finite) else np.nan

    def curve(*samples: np.ndarray, axis: int) -> np.ndarray:
        expected, _ = stats.best_of_k_curve(np.concatenate(samples, axis=axis), ks)
        return np.moveaxis(np.where(np.isnan(expected), worst, expected), -1, 0)

    with warnings.catch_warnings():  # scipy warns of resamples of one value; those have no spread to give
        warnings.simplefilter("ignore")
        band = bootstrap(strata, curve, axis=-1, vectorized=True, paired=False, confidence_level=stats.CONFIDENCE,
                         n_resamples=BAND_RESAMPLES, method="percentile", random_state=np.random.default_rng(0))
    low, high = band.confidence_interval
    return Curve(optimizer, sampler, "expected", value, np.fmin(low, value), np.fmax(high, value), failed)


def observed_curve(optimizer: str, sampler: str, strata: list[np.ndarray]) -> Curve:
    """The best objective so far after each trial, in trial order: median over repeats, band
    from the best to the worst repeat; a repeat with fewer trials stops counting after its last."""
    length = max(map(len, strata))
    paths = np.full((len(strata), length), np.nan)
    for row, scores in enumerate(strata):
        paths[row, :len(scores)] = np.minimum.accumulate(scores)
    with np.errstate(invalid="ignore"):
        failed = np.nanmean(np.where(np.isnan(paths), np.nan, np.isinf(paths)), axis=0)
    return Curve(optimizer, sampler, "observed", np.nanmedian(paths, axis=0), np.nanmin(paths, axis=0),
                 np.nanmax(paths, axis=0), failed)


def winners(curves: list[Curve]) -> list[Winner]:
    """Per sampler with expected curves, the optimizer with the lowest expected best at each k,
    as runs of k (a run ends where another optimizer takes over: a crossover). Curves shorter
    than k do not compete at k; a NaN (every trial failed) never wins."""
    out = []
    for sampler in sorted({c.sampler for c in curves if c.kind == "expected"}):
        mine = [c for c in curves if c.kind == "expected" and c.sampler == sampler]
        longest = max(len(c.value) for c in mine)
        table = np.full((len(mine), longest), np.inf)
        for row, c in enumerate(mine):
            table[row, :len(c.value)] = np.where(np.isnan(c.value), np.inf, c.value)
        best = np.argmin(table, axis=0)
        start = 0
        for k in range(1, longest + 1):
            if k == longest or best[k] != best[start]:
                if np.isfinite(table[best[start], start]):
                    out.append(Winner(sampler, start + 1, k, mine[best[start]].optimizer))
                start = k
    return out
