"""One trial, start to end: sample a configuration, train, summarise, store, tell Optuna.

The run is written to tuner's tables (one transaction) before Optuna records the trial's
state; if the worker dies in between, the heartbeat fails the trial and the stale-trial
callback marks the run FAIL too, so the two never disagree for long.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna

from tuner.optim import OPTIMIZERS
from tuner.space import Param, instantiate, suggest, to_config
from tuner.spec import Experiment
from tuner.storage.records import COMPLETE, DIVERGED, PRUNED, RunRecord, downsample, finite, target_score
from tuner.tasks import Task, is_synthetic, task_options
from tuner.theory import convergence_rate
from tuner.train import OnEval, RunResult, train


class Abandoned(Exception):
    """The worker was asked to stop: the trial ends FAIL and is run again on resume."""


@dataclass(frozen=True)
class Budget:
    """How long one run trains: epochs (data) or steps (synthetic), in units of ``train``."""

    epochs: int
    eval_every: int
    synthetic: bool
    patience: int | None = None

    @classmethod
    def of(cls, spec: Experiment) -> "Budget":
        synthetic = is_synthetic(spec.task.name)
        return cls(spec.budget.steps if synthetic else spec.budget.epochs, spec.budget.eval_every, synthetic,
                   spec.budget.patience)

    def total_steps(self, task: Task, batch_size: int) -> int:
        return self.epochs * (1 if self.synthetic else task.steps_per_epoch(batch_size))


def configure(optimizer: str, values: dict[str, Any], task: Task, budget: Budget) -> dict[str, Any]:
    """Sampled values -> the pasteable configuration (constructor arguments, lr, batch size, schedule)."""
    batch_size = int(values.get("batch_size", 1))
    return to_config(optimizer, values, budget.total_steps(task, batch_size))


def run_config(task: Task, config: dict[str, Any], budget: Budget, seed: int,
               on_eval: OnEval | None = None) -> RunResult:
    """Train ``config`` (as ``configure`` made it) on ``task`` from ``seed``."""
    optimizer, schedule = instantiate(config)
    return train(task, optimizer, schedule, epochs=budget.epochs, batch_size=config.get("batch_size", 1),
                 seed=seed, eval_every=budget.eval_every, on_eval=on_eval, patience=budget.patience)


def summarize(spec: Experiment, task: Task, result: RunResult, config: dict[str, Any], seed: int,
              kind: str) -> RunRecord:
    """The run's row and curves; the objective is None unless the run completed. The final
    evaluation is the last one, or the best one when early stopping ended the run."""
    budget = Budget.of(spec)
    train_loss = result.train_loss
    record = RunRecord(kind=kind, seed=seed, state=COMPLETE, params=config, wall_time=result.wall_time,
                       steps=result.steps, samples=result.samples, diverged_at=result.diverged_at)
    final = result.summary_eval
    if budget.synthetic:
        finals = np.asarray(result.evals.get("loss", [np.nan]))
        record.final_train_loss = finite(finals[final])
        record.best_train_loss = finite(np.nanmin(train_loss)) if len(train_loss) else None
    else:
        full_batch = OPTIMIZERS[config["optimizer"]].full_batch
        per_epoch = 1 if full_batch else task.steps_per_epoch(config.get("batch_size", 1))
        full = len(train_loss) // per_epoch * per_epoch
        epoch_means = train_loss[:full].reshape(-1, per_epoch).mean(axis=1) if full else np.array([np.nan])
        # first-order: train_loss[k] is the loss before step k; L-BFGS: losses[i] is iteration i's
        last_epoch = result.eval_steps[final] // per_epoch - (0 if full_batch else 1) if result.early_stopped else -1
        record.final_train_loss = finite(epoch_means[last_epoch])
        record.best_train_loss = finite(np.nanmin(epoch_means)) if np.isfinite(epoch_means).any() else None
        if result.evals.get("val_loss"):
            record.final_val_loss = finite(result.evals["val_loss"][final])
            record.best_val_loss = finite(min(result.evals["val_loss"]))
            if result.evals.get("val_accuracy"):  # classification tasks
                record.final_val_accuracy = finite(result.evals["val_accuracy"][final])
    record.curves = _curves(result)
    if result.diverged:
        record.state = DIVERGED
    elif result.stopped_by_caller:
        record.state = PRUNED
    else:
        total_steps = budget.total_steps(task, config.get("batch_size", 1))
        record.objective = objective_value(spec, record, train_loss, total_steps)
        if record.objective is None:
            record.state = DIVERGED
    return record


def objective_value(spec: Experiment, record: RunRecord, train_loss: np.ndarray, total_steps: int) -> float | None:
    """The number Optuna minimises (see the objective names in tuner.spec).

    steps_to_target: the first step whose training loss is <= target; otherwise the score of the
    final loss (``records.target_score``: ``total_steps`` when the final evaluation reached it, a
    ranking score above ``total_steps`` for a miss).

    rate (synthetic tasks): the error's empirical linear rate per step, fitted on the tail of the
    noise-free per-step loss before the float floor of the task's dtype (``theory.convergence_rate``).
    """
    name = spec.objective.name
    if name == "final_val_loss":
        return record.final_val_loss
    if name == "best_val_loss":
        return record.best_val_loss
    if name == "final_train_loss":
        return record.final_train_loss
    if name == "train_auc":
        return finite(np.mean(train_loss))
    if name == "rate":
        dtype = task_options(spec.task.name, spec.task.options).dtype
        return finite(convergence_rate(train_loss, float(np.finfo(dtype).eps)))
    target = spec.objective.target
    hits = np.flatnonzero(train_loss <= target)
    if len(hits):
        return float(hits[0])
    final = record.final_train_loss
    if final is None:
        return None
    return target_score(final, target, total_steps)


def _curves(result: RunResult) -> dict:
    eval_steps = np.asarray(result.eval_steps, dtype=float)
    eval_seconds = np.asarray(result.eval_seconds, dtype=float)
    steps = np.arange(len(result.train_loss))
    # the hot loop keeps no per-step clock: seconds of a step are interpolated between evaluations
    if len(eval_steps):
        seconds = np.interp(steps, np.concatenate(([0.0], eval_steps)), np.concatenate(([0.0], eval_seconds)))
    else:
        seconds = np.zeros(len(steps))
    curves = {"train_loss": downsample(steps, seconds, result.train_loss)}
    for series, values in result.evals.items():
        curves[series] = downsample(eval_steps, eval_seconds, np.asarray(values, dtype=float))
    return curves


def make_objective(
    spec: Experiment,
    optimizer: str,
    space: list[Param],
    task: Task,
    seed: int,
    save: Callable[[RunRecord], Any],
    should_stop: Callable[[], bool],
    sampled: Callable[[], None] = lambda: None,
) -> Callable[[optuna.Trial], float]:
    """The function ``study.optimize`` calls: one trial of ``optimizer`` on ``task``.

    Every trial of a study trains from the same ``seed`` (initial parameters and batch
    order), so configurations are compared on equal terms; re-evaluation then re-runs the
    winner on fresh seeds. ``save`` stores the finished run; ``should_stop`` is polled at
    every evaluation; ``sampled`` runs once the configuration is sampled.
    """
    budget = Budget.of(spec)
    pruning = spec.pruner != "none"

    def objective(trial: optuna.Trial) -> float:
        config = configure(optimizer, suggest(trial, space), task, budget)
        sampled()  # the parameters reach the database in one write, before training starts
        evaluations = [0]
        abandoned = [False]

        def on_eval(epoch: int, step: int, metrics: dict[str, float]) -> bool:
            if should_stop():
                abandoned[0] = True
                return True
            evaluations[0] += 1
            if pruning:
                value = metrics.get("val_loss", metrics.get("loss"))
                if value is not None and np.isfinite(value):
                    trial.report(float(value), evaluations[0])
                    return trial.should_prune()
            return False

        result = run_config(task, config, budget, seed, on_eval)
        if abandoned[0]:
            raise Abandoned("the worker was stopped during this trial")
        record = summarize(spec, task, result, config, seed, kind="trial")
        record.optuna_trial_id = trial._trial_id
        record.trial_number = trial.number
        save(record)
        if record.state == DIVERGED:
            trial.set_user_attr("diverged_at", record.diverged_at if record.diverged_at is not None else record.steps)
            raise optuna.TrialPruned(f"diverged at step {record.diverged_at}")
        if record.state == PRUNED:
            raise optuna.TrialPruned(f"pruned after {evaluations[0]} evaluations")
        return record.objective

    return objective
