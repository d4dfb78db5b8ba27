"""How sure are we: the best configurations of an experiment ranked with their uncertainty.

For each row of ``queries.best_configs`` (one per optimizer and sampler, or per optimizer) the
sample is the re-evaluation objectives of its (optimizer, sampler): on fresh seeds, the best
trial of each repeat trained again. From it:

    mean, median    with 95% percentile bootstrap intervals, stratified over repeats (each repeat's
                    re-evaluations resampled on their own); over the runs that completed, as the
                    tuner_best_configs view averages them (diverged seeds are counted beside)
    rank            tied ranks ("1-2"): rows whose mean intervals overlap the best of their group
                    share its ranks (``stats.tied_ranks``)
    improvement     for every ordered pair of rows, P(a run of a beats a run of b) with its
                    interval; a diverged seed counts as +inf (worse than any objective). Ties
                    count one half, so P(b beats a) = 1 - P(a beats b), interval mirrored

A row that was not re-evaluated has its trial's objective and no interval. ``note`` says when
the sample is too small to separate anything.
"""

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import Engine

from tuner import stats
from tuner.storage import queries
from tuner.storage.records import COMPLETE, DIVERGED

if TYPE_CHECKING:
    from tuner.storage.store import Store

MIN_SEEDS = 3
"""Fewer re-evaluation runs than this per configuration give no interval worth the name."""


@dataclass(frozen=True)
class Ranked:
    """One best configuration with its sample's statistics."""

    optimizer: str
    sampler: str
    rank: str
    n: int
    diverged: int
    mean: stats.Estimate
    median: stats.Estimate
    samples: list[list[float]] = field(repr=False)
    """The objectives by repeat (strata), completed runs only."""

    @property
    def label(self) -> str:
        return f"{self.optimizer}/{self.sampler}"

    @property
    def outcomes(self) -> list[float]:
        """Every re-evaluation run's objective, +inf for a diverged one."""
        return [v for stratum in self.samples for v in stratum] + [float("inf")] * self.diverged


@dataclass(frozen=True)
class Improvement:
    """P(a run of configuration ``a`` scores lower than one of ``b``), with its interval."""

    a: str
    b: str
    probability: stats.Estimate


@dataclass(frozen=True)
class Ranking:
    """The rows of ``queries.best_configs`` in their order, each ranked; every ordered pair's
    probability of improvement; a note on what the sample cannot tell (None when it can)."""

    rows: list[Ranked]
    improvements: list[Improvement]
    note: str | None

    def improvement(self, a: str, b: str) -> stats.Estimate:
        return next(i.probability for i in self.improvements if i.a == a and i.b == b)


def best_ranked(engine: Engine, name: str, optimizer: str | None = None, sampler: str | None = None, *,
                per_optimizer: bool = False) -> tuple[list[dict[str, Any]], Ranking]:
    """The rows of ``queries.best_configs`` (same arguments), ranked among every row of the
    experiment (a filter shows some of them with the ranks they have among all), in rank order
    (the order of the mean: with repeats, the pooled mean may order two rows otherwise than the
    view's best-repeat mean); each row with rank, runs (completed re-evaluations), mean /
    mean_low / mean_high, median / median_low / median_high, beats_next (P(this row beats the
    next row shown), an Estimate; None on the last row); and the Ranking of every row."""
    rows = queries.best_configs(engine, name, optimizer, sampler, per_optimizer=per_optimizer)
    everyone = rows if optimizer is None and sampler is None else queries.best_configs(
        engine, name, per_optimizer=per_optimizer)
    ranking = rank(engine, queries.experiment(engine, name)[0], everyone)
    shown = {(r["optimizer"], r["sampler"]): r for r in rows}
    ranked = [r for r in ranking.rows if (r.optimizer, r.sampler) in shown]
    out = []
    for i, r in enumerate(ranked):
        row = shown[r.optimizer, r.sampler]
        row.update(rank=r.rank, runs=r.n, mean=r.mean.value, mean_low=r.mean.low, mean_high=r.mean.high,
                   median=r.median.value, median_low=r.median.low, median_high=r.median.high, beats_next=None)
        if i + 1 < len(ranked) and r.outcomes and ranked[i + 1].outcomes:
            row["beats_next"] = ranking.improvement(r.label, ranked[i + 1].label)
        out.append(row)
    return out, ranking


def rank(engine: Engine, experiment_id: int, best: list[dict[str, Any]]) -> Ranking:
    """Rank the rows ``best`` of ``queries.best_configs`` (of experiment ``experiment_id``): in the
    order of their means (``stats.tied_ranks``); every row tied ("1-N") when a row has fewer than
    MIN_SEEDS runs, as the note then says."""
    runs = queries.reevaluation_runs(engine, experiment_id)
    rows = sorted((_ranked(row, runs) for row in best), key=lambda r: r.mean.value)
    if rows and min(r.n for r in rows) < MIN_SEEDS:
        labels = ["1" if len(rows) == 1 else f"1-{len(rows)}"] * len(rows)
    else:
        labels = stats.tied_ranks([r.mean for r in rows])
    rows = [Ranked(r.optimizer, r.sampler, label, r.n, r.diverged, r.mean, r.median, r.samples)
            for r, label in zip(rows, labels, strict=True)]
    improvements = []
    for i, a in enumerate(rows):
        for b in rows[i + 1:]:
            if a.outcomes and b.outcomes:
                p = stats.probability_of_improvement(a.outcomes, b.outcomes)
                improvements += [Improvement(a.label, b.label, p),
                                 Improvement(b.label, a.label, stats.Estimate(1 - p.value, 1 - p.high, 1 - p.low))]
    return Ranking(rows, improvements, _note(rows))


def _ranked(row: dict[str, Any], runs: list[dict[str, Any]]) -> Ranked:
    """The statistics of one best-configs row, its rank left blank."""
    mine = [r for r in runs if r["optimizer"] == row["optimizer"] and r["sampler"] == row["sampler"]]
    by_repeat: dict[int, list[float]] = {}
    for r in mine:
        if r["state"] == COMPLETE and r["objective"] is not None:
            by_repeat.setdefault(r["repeat"], []).append(r["objective"])
    samples = [by_repeat[k] for k in sorted(by_repeat)]
    diverged = sum(r["state"] == DIVERGED for r in mine)
    if samples:
        mean = stats.bootstrap_interval(samples)
        median = stats.bootstrap_interval(samples, np.median)
    elif diverged:  # every re-evaluation run diverged: worse than any objective
        mean = median = stats.Estimate(np.inf, np.inf, np.inf)
    else:  # not re-evaluated (yet): the trial's own objective, no interval
        value = row["trial_objective"]
        mean = median = stats.Estimate(value, value, value)
    return Ranked(row["optimizer"], row["sampler"], "", sum(map(len, samples)), diverged, mean, median, samples)


def _note(rows: list[Ranked]) -> str | None:
    """What the sample cannot tell: too few runs for an interval, or no two groups apart."""
    if not rows:
        return None
    fewest = min(r.n for r in rows)
    if fewest < MIN_SEEDS:  # every row tied
        who = "some configurations were not re-evaluated" if fewest == 0 else f"a configuration has {fewest} run(s)"
        return (f"too few re-evaluation runs to separate anything, so every row is tied: {who}; intervals need "
                f"{MIN_SEEDS} or more (raise reevaluate in the study file and run `tuner worker` again)")
    if len(rows) > 1 and len({r.rank for r in rows}) == 1:
        return (f"no configuration is separated from the others at {stats.CONFIDENCE:.0%} with n={fewest} runs "
                "each: all tie (more re-evaluation seeds may separate them)")
    return None


def stored_rows(ranking: Ranking) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The ranking as rows of tuner_rankings and tuner_improvements (``Store.save_ranking``)."""
    rankings = [dict(optimizer=r.optimizer, sampler=r.sampler, rank=r.rank, runs=r.n, diverged_runs=r.diverged,
                     mean=_finite(r.mean.value), mean_low=_finite(r.mean.low), mean_high=_finite(r.mean.high),
                     median=_finite(r.median.value), median_low=_finite(r.median.low),
                     median_high=_finite(r.median.high))
                for r in ranking.rows]
    split = {r.label: (r.optimizer, r.sampler) for r in ranking.rows}
    improvements = [dict(optimizer=split[i.a][0], sampler=split[i.a][1], other_optimizer=split[i.b][0],
                         other_sampler=split[i.b][1], probability=i.probability.value, low=i.probability.low,
                         high=i.probability.high)
                    for i in ranking.improvements]
    return rankings, improvements


def save(store: "Store", name: str) -> None:
    """Compute experiment ``name``'s ranking over every optimizer and sampler and store it, unless
    the one stored was computed after the last run (another worker finished first)."""
    experiment_id = queries.experiment(store.engine, name)[0]
    if queries.ranking_is_current(store.engine, experiment_id):
        return
    _, ranking = best_ranked(store.engine, name)
    store.save_ranking(experiment_id, *stored_rows(ranking))


def _finite(value: float | None) -> float | None:
    return value if value is not None and np.isfinite(value) else None
