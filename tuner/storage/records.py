"""What a finished training run leaves behind, ready for one bulk write."""

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

MAX_POINTS = 500

COMPLETE, PRUNED, DIVERGED, FAIL = "COMPLETE", "PRUNED", "DIVERGED", "FAIL"
RUN_STATES = (COMPLETE, PRUNED, DIVERGED, FAIL)
"""How a run ended (tuner_runs.state). COMPLETE and PRUNED as Optuna's; DIVERGED: a non-finite or
exploding loss (Optuna: PRUNED); FAIL: the run's Optuna trial was failed afterwards (e.g. its
worker died before telling)."""
DONE_STATES = (COMPLETE, PRUNED, DIVERGED)
"""The states of a finished trial, i.e. one that counts towards its study's budget."""


def target_score(final_loss: float, target: float, steps: int) -> float:
    """The steps_to_target score of a run whose loss reached ``target`` at no step before the end:
    ``steps`` when its final loss did (reached after the last step); for a miss, ``steps * (1 +
    log10(final_loss / target))``, more than ``steps``, so nearer misses rank better. A ranking
    device, never a step count to show (``reached_target``; ``missed_final_loss`` inverts it)."""
    return float(steps * (1.0 + max(0.0, math.log10(final_loss / target))))


def missed_final_loss(score: float, target: float, steps: int) -> float:
    """The final loss of a run that missed its target, from its ``target_score``."""
    return target * 10.0 ** (score / steps - 1.0)


def reached_target(objective: float | None, steps: int) -> bool:
    """Whether a completed run scored by steps_to_target reached its target: its objective is then
    the first step whose loss was at or under the target, or ``steps`` when only the final
    evaluation was (``target_score``); a miss scores more than ``steps``."""
    return objective is not None and objective <= steps


@dataclass(frozen=True)
class StudyRow:
    """One Optuna study of an experiment."""

    id: int
    study_name: str
    optimizer: str
    sampler: str
    repeat: int
    n_trials: int


@dataclass(frozen=True)
class Curve:
    """One series: x as steps and seconds since the run started, y as values (None if not finite)."""

    steps: list[int]
    seconds: list[float]
    values: list[float | None]


@dataclass
class RunRecord:
    """A row of tuner_runs and its curves."""

    kind: str
    seed: int
    state: str
    params: dict[str, Any]
    wall_time: float
    steps: int
    samples: int
    objective: float | None = None
    final_train_loss: float | None = None
    best_train_loss: float | None = None
    final_val_loss: float | None = None
    best_val_loss: float | None = None
    final_val_accuracy: float | None = None
    diverged_at: int | None = None
    optuna_trial_id: int | None = None
    trial_number: int | None = None
    source_run_id: int | None = None
    curves: dict[str, Curve] = field(default_factory=dict)


def finite(value: float | None) -> float | None:
    """``value`` as a float, or None when missing or not finite (SQL and JSON take no NaN)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def downsample(steps: np.ndarray, seconds: np.ndarray, values: np.ndarray, limit: int = MAX_POINTS) -> Curve:
    """At most ``limit`` evenly spaced points, always the first and the last."""
    n = len(values)
    keep = np.arange(n) if n <= limit else np.unique(np.linspace(0, n - 1, limit).round().astype(int))
    return Curve(
        steps=[int(s) for s in np.asarray(steps)[keep]],
        seconds=[round(float(t), 6) for t in np.asarray(seconds)[keep]],
        values=[finite(v) for v in np.asarray(values, dtype=float)[keep]],
    )
