"""One training run: task + optimizer + schedule -> curves. The hot loop does no I/O.

The per-step training loss goes into a preallocated array; evaluation, the divergence
check's bookkeeping, early stopping and the caller's ``on_eval`` hook (reporting, pruning) run
once every ``eval_every`` epochs. Synthetic tasks have one step per epoch.

Evaluation reads ``optimizer.eval_params``: the parameters, or their average (Polyak, EMA), or a
schedule-free rule's ``x`` (its ``eval()`` mode); training goes on from the trained parameters,
so the train/eval switch costs one read and no copy.
"""

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from tuner.optim import LBFGS, Optimizer
from tuner.schedules import Schedule
from tuner.tasks import Task

OnEval = Callable[[int, int, dict[str, float]], bool]
"""on_eval(epoch, step, metrics) -> True to stop the run early (e.g. pruned)."""


@dataclass
class RunResult:
    """Curves and counters of one run; ``train_loss[k]`` is the minibatch loss before step k."""

    train_loss: np.ndarray
    eval_steps: list[int] = field(default_factory=list)
    eval_seconds: list[float] = field(default_factory=list)
    evals: dict[str, list[float]] = field(default_factory=dict)
    steps: int = 0
    samples: int = 0
    wall_time: float = 0.0
    diverged_at: int | None = None
    stopped_by_caller: bool = False  # on_eval returned True: pruned, or the worker was asked to stop
    early_stopped: bool = False
    best_eval: int | None = None

    @property
    def diverged(self) -> bool:
        return self.diverged_at is not None

    @property
    def summary_eval(self) -> int:
        """The evaluation a run is judged at: the best one when early stopping ended it, else the last."""
        return self.best_eval if self.early_stopped and self.best_eval is not None else -1


def train(
    task: Task,
    optimizer: object,
    schedule: Schedule | None,
    *,
    epochs: int,
    batch_size: int = 1,
    seed: int = 0,
    eval_every: int = 1,
    on_eval: OnEval | None = None,
    divergence_factor: float = 100.0,
    patience: int | None = None,
) -> RunResult:
    """Train from ``task.init_params(seed)`` for ``epochs`` epochs (full-batch iterations for L-BFGS).

    A loss that is not finite or exceeds ``divergence_factor`` times the first loss ends the
    run with ``diverged_at`` set to that step. With ``patience`` (any optimizer), a run
    whose monitored metric (``val_loss``, or ``loss`` on synthetic tasks) has not improved on its
    best for ``patience`` evaluations stops, complete, with ``early_stopped`` and ``best_eval`` set.
    """
    params = task.init_params(seed)
    grad = np.empty_like(params)
    rng = np.random.default_rng([seed, 1])
    start = time.perf_counter()
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # divergence: detected and recorded
        if isinstance(optimizer, LBFGS):
            result = _train_lbfgs(task, optimizer, params, grad, epochs, eval_every, on_eval, patience, start)
        else:
            result = _train_first_order(
                task, optimizer.bind(task), schedule, params, grad, rng, epochs, batch_size, eval_every, on_eval,
                divergence_factor, patience, start,
            )
    result.wall_time = time.perf_counter() - start
    return result


class _EarlyStop:
    """Early stopping after each evaluation: tracks the best evaluation of the monitored metric
    (``val_loss``, or ``loss`` on synthetic tasks) in ``result.best_eval``; with ``patience``, True
    (and ``result.early_stopped``) once that many evaluations passed without a new best."""

    def __init__(self, task: Task, patience: int | None) -> None:
        self.monitored = "val_loss" if "val_loss" in task.metrics else "loss"
        self.patience = patience
        self.best = math.inf

    def __call__(self, result: RunResult, metrics: dict[str, float]) -> bool:
        latest = len(result.eval_steps) - 1
        if metrics[self.monitored] < self.best:
            self.best, result.best_eval = metrics[self.monitored], latest
        elif self.patience is not None and result.best_eval is not None and latest - result.best_eval >= self.patience:
            result.early_stopped = True
        return result.early_stopped


def _record(result: RunResult, task: Task, params: np.ndarray, step: int, start: float) -> dict[str, float]:
    metrics = task.evaluate(params)
    result.eval_steps.append(step)
    result.eval_seconds.append(time.perf_counter() - start)
    for key, value in metrics.items():
        result.evals.setdefault(key, []).append(value)
    return metrics


def _train_first_order(
    task: Task,
    optimizer: Optimizer,
    schedule: Schedule | None,
    params: np.ndarray,
    grad: np.ndarray,
    rng: np.random.Generator,
    epochs: int,
    batch_size: int,
    eval_every: int,
    on_eval: OnEval | None,
    divergence_factor: float,
    patience: int | None,
    start: float,
) -> RunResult:
    if schedule is None:
        raise ValueError("a first-order optimizer needs a learning-rate schedule")
    per_epoch = task.steps_per_epoch(batch_size)
    total = per_epoch * epochs
    lrs = schedule.values(total).tolist()
    losses = np.empty(total)
    result = RunResult(train_loss=losses)
    state = optimizer.init(params)
    update = optimizer.update
    limit = math.inf
    step = 0
    early_stop = _EarlyStop(task, patience)
    for epoch in range(1, epochs + 1):
        for batch in task.batches(batch_size, rng):
            loss = task.loss_and_grad(params, batch, grad)
            losses[step] = loss
            if not (loss <= limit and loss < math.inf):  # also false for NaN
                result.diverged_at = step
                break
            if step == 0:
                limit = divergence_factor * max(abs(loss), 1e-12)
            update(params, grad, lrs[step], state)
            step += 1
        result.samples += task.samples_per_epoch(batch_size) if result.diverged_at is None else 0
        if result.diverged_at is not None:
            break
        if epoch % eval_every == 0 or epoch == epochs:
            metrics = _record(result, task, optimizer.eval_params(params, state), step, start)
            if not all(math.isfinite(v) for v in metrics.values()):
                result.diverged_at = step
                break
            if on_eval is not None and on_eval(epoch, step, metrics):
                result.stopped_by_caller = True
                break
            if early_stop(result, metrics):
                break
    result.steps = step
    result.train_loss = losses[: step + (result.diverged_at is not None)]
    return result


def _train_lbfgs(
    task: Task,
    optimizer: LBFGS,
    params: np.ndarray,
    grad: np.ndarray,
    epochs: int,
    eval_every: int,
    on_eval: OnEval | None,
    patience: int | None,
    start: float,
) -> RunResult:
    batch = task.full_batch()
    early_stop = _EarlyStop(task, patience)
    losses: list[float] = [task.loss_and_grad(params, batch, grad)]
    result = RunResult(train_loss=np.empty(0))

    def fun(x: np.ndarray) -> tuple[float, np.ndarray]:
        return task.loss_and_grad(x, batch, grad), grad

    def callback(iteration: int, loss: float, x: np.ndarray) -> bool:
        losses.append(loss)
        if iteration % eval_every == 0 or iteration == epochs:
            metrics = _record(result, task, x.astype(params.dtype), iteration, start)
            if on_eval is not None and on_eval(iteration, iteration, metrics):
                result.stopped_by_caller = True
                return True
            return early_stop(result, metrics)
        return False

    outcome = optimizer.minimize(fun, params, max_iter=epochs, callback=callback)
    result.steps = len(losses) - 1
    if not result.eval_steps or result.eval_steps[-1] != result.steps:
        _record(result, task, params, result.steps, start)
    result.train_loss = np.asarray(losses)
    result.samples = int(outcome.nfev) * task.samples_per_epoch(1)
    return result
