"""Trials in populations: ask K trials of a study at once, train them in one vectorised pass
(``train.train_population``), tell them together.

A population's trials are created in one transaction (``Store.reserve_trials``) and finished in
one (``Store.holding``: states, values, attributes, runs and curves); a heartbeat thread beats all
of them while they train, so a worker that dies leaves them to the stale-trial recovery as it
leaves a lone trial. Samplers see the population as they would see K parallel workers: random,
QMC and grid draw K independent points (in the order one worker would draw K trials one at a
time, so a seeded random search suggests the same configurations with any population size),
TPE proposes K with its constant liar, and CMA-ES trains one generation (its population size is K).

How many (``population_size``): ``population: 1`` trains one at a time as before, ``N`` takes N,
``auto`` takes what fits POPULATION_BYTES and, for samplers that draw independently, about
POPULATION_SECONDS of training (measured on the study's previous population); CMA-ES one
generation of ``cma_popsize``, TPE at most TPE_POPULATION. L-BFGS always trains alone.
"""

import contextlib
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from tuner.objective import Abandoned, Budget, configure, summarize
from tuner.optim import OPTIMIZERS
from tuner.samplers import cma_popsize
from tuner.space import Param, instantiate, suggest
from tuner.spec import Experiment
from tuner.storage.records import DIVERGED, PRUNED, StudyRow
from tuner.storage.store import Store
from tuner.tasks import Task
from tuner.train import train_population

POPULATION_SECONDS = 10.0
"""auto, independent samplers: a population trains for about this long (a stop is heard at every
evaluation whatever the size; this bounds the work a crashed worker loses)."""
POPULATION_BYTES = 512 * 2**20
"""auto: the memory a population's parameters, gradients, optimizer state and loss curves may take."""
FIRST_POPULATION = 16
"""auto, independent samplers: the size of a study's first population, before its time per trial is known."""
TPE_POPULATION = 8
"""auto, TPE: trials proposed together with the constant liar (each proposal sees the others as
running; larger populations learn less from each other)."""
POPULATION_ATTR = "population"
"""The user attribute naming a trial's population: the number of its first trial (a trial run
alone has none)."""
MEMBER_BUFFERS = 8
"""Arrays of the parameters' size a member holds: parameters, gradient and optimizer state."""


def generation_size(spec: Experiment, space: list[Param]) -> int | None:
    """The population size CMA-ES is built with: the study file's N, ``cma_popsize`` for auto,
    None (CMA-ES's own) for trials one at a time."""
    if spec.population == 1:
        return None
    return spec.population if spec.population != "auto" else cma_popsize(space)


def batch_sizes(space: list[Param]) -> tuple[int, int]:
    """The smallest and the largest batch size ``space`` may sample (1 without one: synthetic tasks)."""
    param = next((p for p in space if p.name == "batch_size"), None)
    if param is None:
        return 1, 1
    if param.fixed is not None:
        return int(param.fixed), int(param.fixed)
    values = param.choices or (param.low, param.high)
    return int(min(values)), int(max(values))


def population_size(spec: Experiment, sampler: str, optimizer: str, space: list[Param], task: Task,
                    budget: Budget, free: int, seconds_per_trial: float | None) -> int:
    """How many trials the next population of a study takes, ``free`` being the trials its budget
    still has no worker for (see the module docstring). Never more than fits POPULATION_BYTES, also
    for a study file's N (CMA-ES's generation then spans several populations)."""
    if spec.population == 1 or OPTIMIZERS[optimizer].full_batch or free <= 1:
        return 1
    smallest, largest = batch_sizes(space)
    steps = budget.total_steps(task, smallest)  # the loss curve's length
    member_bytes = MEMBER_BUFFERS * task.dim * np.dtype(task.dtype).itemsize + 8 * steps + task.member_bytes(largest)
    size = min(free, max(1, POPULATION_BYTES // member_bytes))
    if sampler == "cmaes":
        return min(size, generation_size(spec, space))
    if spec.population != "auto":
        return min(size, spec.population)
    if sampler == "tpe":
        return min(size, TPE_POPULATION)
    if seconds_per_trial is None:
        return min(size, FIRST_POPULATION)
    return min(size, max(1, int(POPULATION_SECONDS / max(seconds_per_trial, 1e-9))))


class Heartbeat:
    """While the block runs, beats ``trial_ids()`` every ``interval`` seconds from a thread."""

    def __init__(self, store: Store, trial_ids: Callable[[], list[int]], interval: float | None) -> None:
        self.store, self.trial_ids, self.interval = store, trial_ids, interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "Heartbeat":
        if self.interval:
            self._thread = threading.Thread(target=self._beat, name="tuner-heartbeat", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            # a lost connection: the main thread meets it and retries; the trials go stale
            with contextlib.suppress(Exception):
                self.store.record_heartbeats(self.trial_ids())


class PopulationRunner:
    """The populations of one study, run by one worker."""

    def __init__(self, store: Store, spec: Experiment, row: StudyRow, study: optuna.Study, space: list[Param],
                 task: Task, should_stop: Callable[[], bool]) -> None:
        self.store, self.spec, self.row, self.study = store, spec, row, study
        self.space, self.task, self.should_stop = space, task, should_stop
        self.budget = Budget.of(spec)
        self.study_id = store.optuna.get_study_id_from_name(row.study_name)
        self.seconds_per_trial: float | None = None

    def size(self, free: int) -> int:
        """The next population's size, given the study's ``free`` trials."""
        return population_size(self.spec, self.row.sampler, self.row.optimizer, self.space, self.task,
                               self.budget, free, self.seconds_per_trial)

    def run(self, size: int) -> int:
        """Reserve up to ``size`` trials (queued retries first), ask, train and tell them; how many ran.
        Raises Abandoned after telling, when the worker was asked to stop meanwhile."""
        study, store = self.study, self.store
        started = time.perf_counter()
        asks = store.reserve_trials(self.study_id, size, self.row.n_trials)
        if asks == 0:
            return 0
        own = store.rdb.own_trials if store.rdb is not None else list
        trials: list[optuna.Trial] = []
        configs: list[dict[str, Any]] = []
        with Heartbeat(store, lambda: [t._trial_id for t in own()], store.rdb and store.rdb.heartbeat_interval):
            try:
                # Optuna warns that its heartbeat thread runs in study.optimize only: ours beats them all
                with store.asking(self.study_id), warnings.catch_warnings():
                    warnings.filterwarnings("ignore", "Heartbeat of storage", UserWarning)
                    for _ in range(asks):
                        trials.append(study.ask())  # each sampled before the next is asked, as one worker would
                        configs.append(configure(self.row.optimizer, suggest(trials[-1], self.space), self.task,
                                                 self.budget))
                store.flush_params()
                outcomes = self._train(trials, configs)
            except Exception as exc:
                with store.holding():
                    for trial in trials:
                        trial.set_user_attr("error", f"{type(exc).__name__}: {exc}"[:2000])
                        study.tell(trial, state=TrialState.FAIL)
                raise
            self._tell(trials, configs, outcomes)
        self.seconds_per_trial = (time.perf_counter() - started) / len(trials)
        if any(outcome is None for outcome in outcomes):
            raise Abandoned("the worker was stopped during this population")
        return len(trials)

    def _train(self, trials: list[optuna.Trial], configs: list[dict[str, Any]]) -> list[Any]:
        """Train every member (one population per batch size); each one's RunResult, or None for
        one abandoned because the worker was asked to stop."""
        pruning = self.spec.pruner != "none"
        abandoned: set[int] = set()
        evaluations = [0] * len(trials)
        results: list[Any] = [None] * len(trials)
        by_batch: dict[int, list[int]] = {}
        for member, config in enumerate(configs):
            by_batch.setdefault(config.get("batch_size", 1), []).append(member)
        stop_at: dict[int, bool] = {}  # asked once per evaluation round, not per member
        for batch_size, members in by_batch.items():
            def on_eval(index: int, epoch: int, step: int, metrics: dict[str, float], _m: list[int] = members) -> bool:
                member = _m[index]
                if epoch not in stop_at:
                    stop_at.clear()
                    stop_at[epoch] = self.should_stop()
                if stop_at[epoch]:
                    abandoned.add(member)
                    return True
                evaluations[member] += 1
                if pruning:
                    value = metrics.get("val_loss", metrics.get("loss"))
                    if value is not None and np.isfinite(value):
                        trials[member].report(float(value), evaluations[member])
                        return trials[member].should_prune()
                return False

            built = [instantiate(configs[m]) for m in members]
            trained = train_population(
                self.task, [optimizer for optimizer, _ in built], [schedule for _, schedule in built],
                epochs=self.budget.epochs, batch_size=batch_size, seed=self.row.repeat,
                eval_every=self.budget.eval_every, on_eval=on_eval, patience=self.budget.patience)
            for member, result in zip(members, trained, strict=True):
                results[member] = None if member in abandoned else result
        return results

    def _tell(self, trials: list[optuna.Trial], configs: list[dict[str, Any]], results: list[Any]) -> None:
        """Summarise and tell every member in one transaction; abandoned ones FAIL (run again)."""
        study = self.study
        first = trials[0].number
        with self.store.holding():
            for trial, config, result in zip(trials, configs, results, strict=True):
                trial.set_user_attr(POPULATION_ATTR, first)
                if result is None:
                    study.tell(trial, state=TrialState.FAIL)
                    continue
                record = summarize(self.spec, self.task, result, config, self.row.repeat, kind="trial")
                record.optuna_trial_id, record.trial_number = trial._trial_id, trial.number
                self.store.save_trial_run(self.row.id, record)
                if record.state == DIVERGED:
                    trial.set_user_attr("diverged_at", record.diverged_at if record.diverged_at is not None
                                        else record.steps)
                    study.tell(trial, state=TrialState.PRUNED)
                elif record.state == PRUNED:
                    study.tell(trial, state=TrialState.PRUNED)
                else:
                    study.tell(trial, record.objective)
