"""A large experiment written straight into a storage: NOT a launch, no training. For the
dashboard's tests and ``bench/dashboard_load.py --synthetic-fill``, which need tens of thousands
of trials in seconds rather than a launch's minutes.

``fill`` creates the experiment of a study file as a launch does (``worker.create_experiment``:
tuner's rows and Optuna's studies), then writes in bulk, one transaction per study, what its
workers would have left: Optuna's trials (state, value, parameters with their distributions,
``diverged_at`` as a user attribute), tuner's trial runs with their configuration
(``space.suggest`` on a seeded random trial, ``objective.configure``) and curves, each study's best
trial re-evaluated on ``spec.reevaluate`` seeds, and the ranking (``rankings.save``). Optuna
reads it back as its own (``load_study``, ``get_trials``), and every tuner query reads it.

The outcomes are made up, for synthetic tasks only (steps as the budget's): a run's loss decays
as ``exp(-speed * step)`` to a floor, ``speed`` peaking at an optimizer's own best learning rate
and growing with momentum; over about 4x that rate a run diverges, the earlier the higher.
"""

import datetime as dt
import json
import math
from typing import Any

import numpy as np
from optuna import distributions
from sqlalchemy import Connection, func, insert, select

from tuner import rankings
from tuner.objective import Budget, configure
from tuner.reevaluation import REEVALUATION_SEED
from tuner.space import suggest
from tuner.spec import Experiment
from tuner.storage import queries
from tuner.storage._optuna_fast import _PARAMS as PARAMS
from tuner.storage._optuna_fast import _TRIALS as TRIALS
from tuner.storage._optuna_fast import _USER_ATTRS as USER_ATTRS
from tuner.storage._optuna_fast import _VALUES as VALUES
from tuner.storage.records import COMPLETE, DIVERGED, Curve, RunRecord, StudyRow, downsample
from tuner.storage.store import Store, write_runs
from tuner.tasks import Task, is_synthetic, make_task
from tuner.worker import create_experiment

START_LOSS = 1.0
SECONDS_PER_STEP = 2e-4


class RandomTrial:
    """What ``space.suggest`` asks of an Optuna trial, drawn uniformly (on the log scale where
    asked) from a numpy generator; keeps each parameter's internal value and distribution as
    Optuna stores them."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.params: dict[str, tuple[float, distributions.BaseDistribution]] = {}

    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False) -> float:
        value = float(math.exp(self.rng.uniform(math.log(low), math.log(high))) if log else self.rng.uniform(low, high))
        value = min(max(value, low), high)
        self.params[name] = (value, distributions.FloatDistribution(low, high, log=log))
        return value

    def suggest_int(self, name: str, low: int, high: int, *, log: bool = False) -> int:
        value = int(self.rng.integers(low, high + 1))
        self.params[name] = (float(value), distributions.IntDistribution(low, high, log=log))
        return value

    def suggest_categorical(self, name: str, choices: list[Any]) -> Any:
        index = int(self.rng.integers(len(choices)))
        self.params[name] = (float(index), distributions.CategoricalDistribution(choices))
        return choices[index]


def outcomes(lrs: np.ndarray, momentum: np.ndarray, best_lr: float, steps: int,
             rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Per run: its speed (loss decay per step) and the step it diverged at (-1: it did not)."""
    x = np.log10(lrs / best_lr)
    speed = 0.03 * 10.0 ** np.minimum(x, -0.5 * x) * (1.0 + momentum) * rng.lognormal(0.0, 0.15, len(lrs))
    diverge = x > 0.6 + 0.1 * rng.standard_normal(len(lrs))
    at = np.where(diverge, np.maximum(1, (steps * np.exp(-4.0 * np.maximum(x - 0.6, 0.0))).astype(int) // 2), -1)
    return speed, at


def run_curves(speed: float, floor: float, diverged_at: int, steps: int, eval_every: int) -> dict[str, Curve]:
    """A run's train_loss (every step) and loss (every ``eval_every`` steps), downsampled as a run
    stores them; a diverged run's loss grows until its last point, which is not finite."""
    end = steps if diverged_at < 0 else diverged_at + 1
    k = np.arange(end)
    at = np.arange(eval_every, end + (1 if diverged_at < 0 else 0), eval_every)
    curves = {}
    for series, x in (("train_loss", k), ("loss", at)):
        y = START_LOSS * (np.exp(-speed * x) + floor if diverged_at < 0 else np.exp(0.05 * x))
        if diverged_at >= 0 and len(y):
            y[-1] = np.inf
        curves[series] = downsample(x, x * SECONDS_PER_STEP, y)
    return curves


def fill(store: Store, spec: Experiment, *, seed: int = 0) -> int:
    """Write ``spec``'s experiment with ``spec.trials`` finished trials per study (see the module's
    docstring); the number of trial runs written. ``spec``: a synthetic task, scored by final_train_loss."""
    if not is_synthetic(spec.task.name) or spec.objective.name != "final_train_loss":
        raise ValueError("synthetic outcomes are made for a synthetic task's final_train_loss only")
    experiment_id, rows = create_experiment(store, spec)
    optuna_ids = queries.optuna_study_ids(store.engine, [row.study_name for row in rows])
    budget = Budget.of(spec)
    task = make_task(spec.task.name, spec.task.options)
    rng = np.random.default_rng(seed)
    best_lr = {o.name: 10 ** rng.uniform(-2.5, -1.0) for o in spec.optimizers}
    written = 0
    for row in rows:
        with store.engine.begin() as conn:
            written += _study(conn, spec, row, optuna_ids[row.study_name], budget, task, best_lr[row.optimizer], rng)
    rankings.save(store, spec.name)
    return written


def _next_id(conn: Connection, column: Any) -> int:
    return int(conn.execute(select(func.coalesce(func.max(column), 0))).scalar()) + 1


def _study(conn: Connection, spec: Experiment, row: StudyRow, optuna_id: int, budget: Budget, task: Task,
           best_lr: float, rng: np.random.Generator) -> int:
    n, steps = spec.trials, budget.epochs
    space = spec.search_space(row.optimizer)
    drawn = []
    for _ in range(n):
        trial = RandomTrial(rng)
        values = suggest(trial, space)
        drawn.append((trial.params, values, configure(row.optimizer, values, task, budget)))
    lrs = np.array([values["lr"] for _, values, _ in drawn])
    momentum = np.array([values.get("momentum", values.get("beta1", 0.0)) for _, values, _ in drawn])
    speed, diverged_at = outcomes(lrs, momentum, best_lr, steps, rng)
    floor = 1e-7 * rng.lognormal(0.0, 1.0, n)
    final = START_LOSS * (np.exp(-speed * steps) + floor)
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)  # Optuna stores naive UTC
    first = _next_id(conn, TRIALS.c.trial_id)
    trials, params, values, attrs, records = [], [], [], [], []
    for i, (sampled, _, config) in enumerate(drawn):
        diverged = diverged_at[i] >= 0
        trials.append({"trial_id": first + i, "number": i, "study_id": optuna_id,
                       "state": "PRUNED" if diverged else "COMPLETE", "datetime_start": now, "datetime_complete": now})
        params += [{"trial_id": first + i, "param_name": name, "param_value": value,
                    "distribution_json": distributions.distribution_to_json(dist)}
                   for name, (value, dist) in sampled.items()]
        if diverged:
            attrs.append({"trial_id": first + i, "key": "diverged_at", "value_json": json.dumps(int(diverged_at[i]))})
        else:
            values.append({"trial_id": first + i, "objective": 0, "value": float(final[i]), "value_type": "FINITE"})
        record = _record("trial", row.repeat, config, steps, float(final[i]), int(diverged_at[i]))
        record.optuna_trial_id, record.trial_number = first + i, i
        record.curves = run_curves(float(speed[i]), float(floor[i]), int(diverged_at[i]), steps, budget.eval_every)
        records.append(record)
    for table, batch in ((TRIALS, trials), (PARAMS, params), (VALUES, values), (USER_ATTRS, attrs)):
        if batch:
            conn.execute(insert(table), batch)
    ids = write_runs(conn, [(row.id, record) for record in records])
    done = np.flatnonzero(diverged_at < 0)
    if len(done) and spec.reevaluate:
        best = int(done[np.argmin(final[done])])
        again = []
        for k in range(spec.reevaluate):
            fresh = float(speed[best] * rng.lognormal(0.0, 0.05))
            record = _record("reevaluation", REEVALUATION_SEED + k, drawn[best][2], steps,
                             START_LOSS * (math.exp(-fresh * steps) + float(floor[best])), -1)
            record.source_run_id = ids[best]
            record.curves = run_curves(fresh, float(floor[best]), -1, steps, budget.eval_every)
            again.append((row.id, record))
        write_runs(conn, again)
    return n


def _record(kind: str, seed: int, config: dict[str, Any], steps: int, final: float, diverged_at: int) -> RunRecord:
    """A run scored by its final loss (final_train_loss), unless it diverged at ``diverged_at`` (>= 0)."""
    if diverged_at >= 0:
        return RunRecord(kind=kind, seed=seed, state=DIVERGED, params=config, wall_time=diverged_at * SECONDS_PER_STEP,
                         steps=diverged_at, samples=diverged_at, diverged_at=diverged_at)
    return RunRecord(kind=kind, seed=seed, state=COMPLETE, params=config, wall_time=steps * SECONDS_PER_STEP,
                     steps=steps, samples=steps, objective=final, final_train_loss=final, best_train_loss=final)
