"""Time to target, performance profiles and the AlgoPerf score: how a suite ranks optimizers
across tasks (Dolan and Moré 2002, performance profiles; Dahl et al. 2023, "Benchmarking Neural
Network Training Algorithms", AlgoPerf's scoring).

A solver s is an optimizer (with its sampler), a task w one experiment of the suite; times are
positive, +inf where the target was missed; lower is better.

    time_to_target      a run's first evaluation whose metric is <= the target: its step and
                        seconds (+inf both when no evaluation reached it)
    protocol_time       t_{s,w}: the median over studies (repeats) of the min over each study's trials
    performance_ratios  r_{s,w} = t_{s,w} / min_s t_{s,w} (+inf where s missed w, and for every s on a
                        task that no solver reached)
    performance_profile rho_s(tau) = |{w : r_{s,w} <= tau}| / n, n tasks
    algoperf_score      B_s = 1/(r_max - 1) * integral from 1 to r_max of rho_s(tau) dtau, R_MAX = 4

numpy only: the reading commands stay fast.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

R_MAX = 4.0
"""AlgoPerf's largest ratio that scores: a solver more than 4 times slower than the fastest on a
task gets nothing for it, as one that missed the target."""


@dataclass(frozen=True)
class TimeToTarget:
    """When a run first reached its target: the step and the seconds since it started of that
    evaluation; ``math.inf`` both when it never did."""

    steps: float
    seconds: float


def time_to_target(steps: Sequence[float], seconds: Sequence[float], values: Sequence[float],
                   target: float) -> TimeToTarget:
    """The first evaluation whose value is <= ``target``; NaN (a value that was not finite, as a
    diverged run records) never reaches it."""
    reached = np.flatnonzero(np.asarray(values, dtype=float) <= target)
    if not len(reached):
        return TimeToTarget(np.inf, np.inf)
    first = reached[0]
    return TimeToTarget(float(steps[first]), float(seconds[first]))


def protocol_time(studies: Sequence[Sequence[float]]) -> float:
    """t_{s,w} under the AlgoPerf protocol: each study (repeat) keeps its fastest trial (the min of
    its times to target; +inf for a study without a trial), and the median over studies is the
    time (an even number of studies: the mean of the two middle ones, +inf if either is)."""
    if not len(studies):
        raise ValueError("no studies")
    return float(np.median([min(times, default=np.inf) for times in studies]))


def performance_ratios(times: np.ndarray) -> np.ndarray:
    """r_{s,w} = t_{s,w} / min_s t_{s,w} for ``times`` of shape (solvers, tasks): 1 for the fastest
    on a task (every one tied with it too), +inf where s missed the target, and +inf for every
    solver on a task that none reached (no one to compare with). Times must be > 0 or +inf."""
    times = np.asarray(times, dtype=float)
    if times.ndim != 2 or not times.size:
        raise ValueError("times: one row per solver, one column per task")
    if np.isnan(times).any() or (times <= 0).any():
        raise ValueError("times must be positive or +inf")
    fastest = times.min(axis=0)
    with np.errstate(invalid="ignore"):  # inf / inf on a task nobody reached
        ratios = times / fastest
    ratios[:, ~np.isfinite(fastest)] = np.inf
    return ratios


def performance_profile(ratios: np.ndarray, taus: Sequence[float]) -> np.ndarray:
    """rho_s(tau) for each solver (row of ``ratios``) and each tau: the fraction of tasks on which
    s was within a factor tau of the fastest. Shape (solvers, len(taus))."""
    ratios = np.asarray(ratios, dtype=float)
    return (ratios[:, None, :] <= np.asarray(taus, dtype=float)[None, :, None]).mean(axis=2)


def profile_steps(ratios: Sequence[float], r_max: float = R_MAX) -> tuple[np.ndarray, np.ndarray]:
    """One solver's rho(tau) on [1, r_max] as a step function: the taus where it jumps (the
    solver's ratios in that range), with 1 and r_max, and rho at each; drawn with horizontal then
    vertical segments, it is the profile exactly."""
    row = np.asarray(ratios, dtype=float)
    taus = np.unique(np.concatenate([[1.0, r_max], row[(row >= 1.0) & (row <= r_max)]]))
    return taus, performance_profile(row[None, :], taus)[0]


def algoperf_score(ratios: np.ndarray, r_max: float = R_MAX) -> np.ndarray:
    """B_s for each solver (row of ``ratios``), the integral taken exactly: rho_s is the mean over
    tasks of the indicator [r_{s,w} <= tau], whose integral from 1 to r_max is r_max - r_{s,w}
    when r_{s,w} <= r_max and 0 otherwise (every ratio is >= 1); so B_s is the mean over tasks
    of (r_max - min(r_{s,w}, r_max)) / (r_max - 1): 1 for a solver fastest everywhere, 0 for one
    that missed every target or was always more than r_max times slower."""
    if not r_max > 1:
        raise ValueError("r_max must be > 1")
    ratios = np.asarray(ratios, dtype=float)
    return ((r_max - np.minimum(ratios, r_max)) / (r_max - 1.0)).mean(axis=1)
