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
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field

import numpy as np

from tuner.optim import LBFGS, Optimizer
from tuner.optim.population import population_key, select, stack
from tuner.schedules import Schedule
from tuner.tasks import Task

OnEval = Callable[[int, int, dict[str, float]], bool]
"""on_eval(epoch, step, metrics) -> True to stop the run early (e.g. pruned)."""
OnMemberEval = Callable[[int, int, int, dict[str, float]], bool]
"""on_eval(member, epoch, step, metrics) -> True to stop that member early (e.g. pruned)."""


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
    final_params: np.ndarray | None = None  # the trained parameters where the run ended (first-order)

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
                result.diverged_at, recorded = step, step + 1  # the loss it diverged with is recorded
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
                recorded = step
                break
            if on_eval is not None and on_eval(epoch, step, metrics):
                result.stopped_by_caller = True
                break
            if early_stop(result, metrics):
                break
    result.steps = step
    result.train_loss = losses[: recorded if result.diverged_at is not None else step]
    result.final_params = params.copy()
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


def train_population(
    task: Task,
    optimizers: Sequence[Optimizer],
    schedules: Sequence[Schedule],
    *,
    epochs: int,
    batch_size: int = 1,
    seed: int = 0,
    eval_every: int = 1,
    on_eval: OnMemberEval | None = None,
    divergence_factor: float = 100.0,
    patience: int | None = None,
) -> list[RunResult]:
    """``train`` for K first-order configurations at once: member k is ``optimizers[k]`` with
    ``schedules[k]``, all with ``batch_size`` and ``seed`` (so the same initial parameters and the
    same batches). Returns one RunResult per member, in order, each what ``train`` gives for that
    member alone (to rounding: batched products may round differently in the last bit).

    Members whose optimizers stack (``population.population_key``) train as one population over a
    leading axis: one batched ``task.loss_and_grad_many`` and one optimizer update per step for all
    of them. A member that diverges, is stopped by ``on_eval`` or stops early is compacted out of
    its population at that step, with its outcome recorded as a lone run records it. The clock is
    shared: a member's seconds are its population's elapsed time divided by the population's size.
    """
    if len(optimizers) != len(schedules):
        raise ValueError("one schedule per optimizer")
    if any(isinstance(optimizer, LBFGS) for optimizer in optimizers):
        raise ValueError("L-BFGS trains alone: it is not a first-order rule with a population")
    bound = [optimizer.bind(task) for optimizer in optimizers]
    cohorts: dict[Hashable, list[int]] = {}
    for member, optimizer in enumerate(bound):
        cohorts.setdefault(population_key(optimizer), []).append(member)
    results: list[RunResult | None] = [None] * len(optimizers)
    for key, members in cohorts.items():
        cohort = _Cohort(task, key, [bound[m] for m in members], [schedules[m] for m in members],
                         epochs=epochs, batch_size=batch_size, seed=seed, eval_every=eval_every,
                         on_eval=on_eval and (lambda k, *rest, _m=members: on_eval(_m[k], *rest)),
                         divergence_factor=divergence_factor, patience=patience)
        for member, result in zip(members, cohort.run(), strict=True):
            results[member] = result
    return results  # type: ignore[return-value]


class _Cohort:
    """One population: members whose optimizers stack, trained as in ``_train_first_order``."""

    def __init__(self, task: Task, key: Hashable, optimizers: Sequence[Optimizer], schedules: Sequence[Schedule], *,
                 epochs: int, batch_size: int, seed: int, eval_every: int, on_eval: OnMemberEval | None,
                 divergence_factor: float, patience: int | None) -> None:
        self.task, self.epochs, self.batch_size, self.seed = task, epochs, batch_size, seed
        self.eval_every, self.on_eval, self.factor = eval_every, on_eval, divergence_factor
        size = len(optimizers)
        self.size = size
        self.total = task.steps_per_epoch(batch_size) * epochs
        self.optimizer = stack(optimizers, key=key)  # bound to the task already
        self.lrs = np.stack([schedule.values(self.total) for schedule in schedules], axis=1)  # (steps, K)
        self.losses = np.empty((self.total, size))
        self.results = [RunResult(train_loss=np.empty(0)) for _ in range(size)]
        self.stops = [_EarlyStop(task, patience) for _ in range(size)]
        self.alive = np.arange(size)  # the original index of each current member
        self.epochs_done = 0  # epochs every current member has completed

    def run(self) -> list[RunResult]:
        task = self.task
        params = np.repeat(task.init_params(self.seed)[None, :], self.size, axis=0)
        grad = np.empty_like(params)
        losses = np.empty(self.size)
        rng = np.random.default_rng([self.seed, 1])
        optimizer, state = self.optimizer, self.optimizer.init(params)
        lrs = self.lrs
        limit = np.full(self.size, math.inf)
        going, finite = np.empty(self.size, dtype=bool), np.empty(self.size, dtype=bool)  # the step's checks
        self.start = time.perf_counter()
        step = 0
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            for epoch in range(1, self.epochs + 1):
                for batch in task.batches(self.batch_size, rng):
                    k = len(self.alive)
                    task.loss_and_grad_many(params, batch, grad[:k], losses[:k])
                    loss = losses[:k]
                    self.losses[step, self.alive] = loss
                    ok = np.less_equal(loss, limit[:k], out=going[:k])  # also false for NaN
                    ok &= np.less(loss, math.inf, out=finite[:k])
                    if not ok.all():
                        for row in np.flatnonzero(~ok):
                            self._end(self.alive[row], step, params[row], diverged=True)
                        params, optimizer, state, lrs, limit = self._compact(ok, params, optimizer, state, lrs, limit)
                        if not len(self.alive):
                            break
                        k = len(self.alive)
                        grad[:k] = grad[np.flatnonzero(ok)]  # the gradients of the members that go on
                    if step == 0:
                        np.maximum(np.abs(self.losses[0, self.alive]), 1e-12, out=limit[:k])
                        limit[:k] *= self.factor
                    optimizer.update(params, grad[:k], lrs[step][:, None], state)
                    step += 1
                if not len(self.alive):
                    break
                self.epochs_done = epoch
                if epoch % self.eval_every == 0 or epoch == self.epochs:
                    ok = self._evaluate(params, optimizer.eval_params(params, state), epoch, step)
                    if not ok.all():
                        params, optimizer, state, lrs, limit = self._compact(ok, params, optimizer, state, lrs, limit)
                        if not len(self.alive):
                            break
        for row, member in enumerate(self.alive):
            self._end(member, step, params[row])
        return self.results

    def _evaluate(self, params: np.ndarray, at: np.ndarray, epoch: int, step: int) -> np.ndarray:
        """Evaluate every member at ``at`` (its evaluation point of ``params``); False for those that
        end here (diverged, stopped)."""
        metrics = self.task.evaluate_many(at)
        seconds = (time.perf_counter() - self.start) / self.size
        going = np.ones(len(self.alive), dtype=bool)
        for row, member in enumerate(self.alive):
            result = self.results[member]
            values = {key: float(column[row]) for key, column in metrics.items()}
            result.eval_steps.append(step)
            result.eval_seconds.append(seconds)
            for key, value in values.items():
                result.evals.setdefault(key, []).append(value)
            if not all(math.isfinite(v) for v in values.values()):
                self._end(member, step, params[row], diverged=True, at_eval=True)
            elif self.on_eval is not None and self.on_eval(int(member), epoch, step, values):
                result.stopped_by_caller = True
                self._end(member, step, params[row])
            elif self.stops[member](result, values):
                self._end(member, step, params[row])
            else:
                continue
            going[row] = False
        return going

    def _end(self, member: int, step: int, params: np.ndarray, *, diverged: bool = False,
             at_eval: bool = False) -> None:
        """Close member's result at ``step`` with its ``params`` as ``_train_first_order`` does."""
        result = self.results[member]
        result.final_params = params.copy()
        result.steps = step
        result.samples = self.epochs_done * self.task.samples_per_epoch(self.batch_size)
        if diverged:
            result.diverged_at = step
        result.train_loss = self.losses[: step + (diverged and not at_eval), member].copy()
        result.wall_time = (time.perf_counter() - self.start) / self.size

    def _compact(self, keep: np.ndarray, params: np.ndarray, optimizer: Optimizer, state: object,
                 lrs: np.ndarray, limit: np.ndarray) -> tuple:
        """Drop the members not in ``keep`` (a mask over the current ones) from every array."""
        rows = np.flatnonzero(keep)
        self.alive = self.alive[rows]
        optimizer, state = select(optimizer, state, rows)
        limit = np.r_[limit[rows], np.full(len(limit) - len(rows), math.inf)]
        return params[rows], optimizer, state, lrs[:, rows], limit
