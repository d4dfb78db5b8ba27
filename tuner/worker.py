"""Workers: take trials from the study furthest behind its budget until the budget is met.

Optuna's storage is the only coordination: a worker counts finished runs (tuner_runs) and
trials in flight (Optuna's RUNNING), picks the study with the fewest, and runs one trial
there with ``study.optimize`` (which also fails stale trials and re-queues them through the
heartbeat callback); or, with ``population`` (``tuner.populations``), K trials at once. Every
study ends with at least its trial count finished, and at most ``workers - 1`` more (a population
more, when a worker reserves between Optuna failing a dead worker's trials and queuing their
retries). SIGINT and SIGTERM ask a worker to stop: its current trial (population) is abandoned at
the next evaluation (Optuna state FAIL, run again on resume) and it exits.
"""

import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import optuna
from optuna.exceptions import UpdateFinishedTrialError
from sqlalchemy.exc import DBAPIError
from threadpoolctl import threadpool_limits

from tuner import rankings, reevaluation
from tuner.errors import ConfigError
from tuner.objective import Abandoned, make_objective
from tuner.populations import PopulationRunner, generation_size
from tuner.samplers import SAMPLERS, make_pruner, make_sampler
from tuner.spec import Experiment, SamplerSpec, stored_experiment
from tuner.storage import queries
from tuner.storage.engine import FileLost, FileWatch
from tuner.storage.problems import Unreachable, problem
from tuner.storage.records import StudyRow
from tuner.storage.store import Store
from tuner.tasks import Task, make_task

POLL_S, WAIT_S = 0.05, 1.0
"""A worker with nothing to take looks again after 0.05 s, 0.1 s, ... at most 1 s apart."""
RETRY_FOR_S = 300.0
"""How long a worker waits for a database that does not answer, at start or while it runs."""
STOP_CHECK_S = 0.1
"""How often a worker that sleeps before a retry looks whether it was asked to stop."""
_Error = TypeVar("_Error", bound=BaseException)
_log = logging.getLogger("tuner.worker")


class StopFlag:
    """Set by SIGINT, SIGTERM or SIGHUP (``signum`` records which), or true once the process
    ``parent`` is gone (a killed launcher: the worker is not left running on its own); checked
    between evaluations, never inside a write. A signal the process was started ignoring (SIGINT,
    by ``tuner launch``) stays ignored."""

    def __init__(self, parent: int | None = None) -> None:
        self.signum: int | None = None
        self.parent = parent

    def install(self) -> "StopFlag":
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(sig) is not signal.SIG_IGN:
                signal.signal(sig, self._set)
        return self

    def _set(self, signum: int, frame: Any) -> None:
        self.signum = signum

    def __call__(self) -> bool:
        return self.signum is not None or (self.parent is not None and os.getppid() != self.parent)


@dataclass(frozen=True)
class WorkerEnd:
    """How a worker process ended: the trials it ran, and the signal that stopped it, if one did."""

    trials: int
    stopped_by: int | None = None


def sampler_seed(spec: Experiment, row: StudyRow, sampler: SamplerSpec, worker: int) -> int:
    """Distinct per study (so TPE's random start-up differs from the random baseline) and per
    worker, except for samplers coordinated through the storage (``SamplerEntry.shared_seed``)."""
    optimizer_index = [o.name for o in spec.optimizers].index(row.optimizer)
    sampler_index = [s.name for s in spec.samplers].index(sampler.name)
    shared = SAMPLERS[sampler.name].shared_seed
    entropy = [sampler.seed, row.repeat, optimizer_index, sampler_index, 0 if shared else worker]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def next_study(store: Store, rows: list[StudyRow], study_ids: dict[int, int | None]) -> StudyRow | None | str:
    """The study with a retry waiting, else the one furthest behind; "wait" if every open slot is
    in flight, or while any trial still runs (its worker may have died: the waiting worker fails
    it once its heartbeat is stale); None when all are done. A retry (Optuna WAITING) holds a slot
    of its own, so it runs even once the other slots are filled. ``study_ids``: see queries.workload."""
    counts = queries.workload(store.engine, study_ids)
    best, best_share, unfinished = None, None, False
    for row in rows:
        finished, running, waiting = counts.get(row.id, (0, 0, 0))
        if finished >= row.n_trials and not waiting:
            unfinished |= running > 0
            continue
        unfinished = True
        taken = finished + running + waiting
        share = -1.0 if waiting else taken / row.n_trials
        if (waiting or taken < row.n_trials) and (best_share is None or share < best_share):
            best, best_share = row, share
    if best is not None:
        return best
    return "wait" if unfinished else None


SPEC_VERSION = 1
"""The format of the study file an experiment stores (``stored_study_file``), kept with it in
tuner_experiments.spec_version. Bump it when the meaning of a stored field changes: an
experiment stored in another format is not resumed. A field added with a default needs no bump:
a stored file without it reads as having the default (``create_experiment``), so that default
must do what tuner did before the field existed."""


def stored_study_file(spec: Experiment) -> dict[str, Any]:
    """``spec`` as an experiment stores it (format SPEC_VERSION): every field, defaults included,
    as JSON data; not ``storage``, which says where the experiment is, not what it is."""
    return spec.model_dump(mode="json", exclude={"storage"})


def create_experiment(store: Store, spec: Experiment) -> tuple[int, list[StudyRow]]:
    """The experiment of ``spec`` and its studies, created or found again (idempotent): one study
    per optimizer, sampler and repeat, each minimising the spec's objective.

    An experiment of that name is found again only if it is stored in format SPEC_VERSION and its
    study file is ``spec``'s as this tuner reads both (``stored_experiment``: fields an earlier
    tuner did not know have their defaults; a file that does not set ``population`` resumes with the
    experiment's); else a ConfigError, naming the fields that changed.
    Studies missing from an experiment whose creation was interrupted are created."""
    stored = stored_study_file(spec)
    found = store.ensure_experiment(spec.name, spec.task.name, stored, SPEC_VERSION)
    if found.spec_version != SPEC_VERSION:
        raise ConfigError(f"experiment {spec.name!r} was stored by a tuner whose study files have format "
                          f"{found.spec_version}; this tuner's have format {SPEC_VERSION}: resume it with that "
                          "tuner, or give it a new name to start another experiment")
    before = stored_study_file(stored_experiment(found.spec, spec.name))  # fields added since: their defaults
    if "population" not in spec.model_fields_set:  # not in the file: the experiment's own (1 if it predates it)
        stored = {**stored, "population": before["population"]}
    if before != stored:
        changed = sorted(k for k in stored.keys() | before.keys() if stored.get(k) != before.get(k))
        raise ConfigError(f"experiment {spec.name!r} already exists with a different study file (changed: "
                          f"{', '.join(changed)}); give it a new name to start another experiment")
    studies = [(o.name, s.name, repeat)
               for o in spec.optimizers for s in spec.samplers for repeat in range(spec.repeats)]
    return found.id, store.ensure_studies(found.id, spec.name, studies, spec.trials, spec.objective.name)


def run_worker(store: Store, experiment_name: str, *, worker: int = 0, max_trials: int | None = None,
               should_stop: Callable[[], bool] = lambda: False, retry_for_s: float = RETRY_FOR_S) -> int:
    """Run trials of ``experiment_name`` until its budget is met, then its pending re-evaluations
    (``tuner.reevaluation``); or until ``max_trials`` ran, or a stop.

    A lost database connection is retried with exponential backoff for up to ``retry_for_s``
    seconds, then its DBAPIError is raised; the trial in flight, if any, is failed by the
    heartbeat and run again. A stop during the wait ends the run at once.
    """
    spec = stored_experiment(queries.experiment(store.engine, experiment_name)[1], experiment_name)
    experiment_id, rows = create_experiment(store, spec)  # its format checked, missing studies made
    study_ids = _optuna_studies(store, rows)
    task = make_task(spec.task.name, spec.task.options)
    studies: dict[int, tuple[optuna.Study, Callable, PopulationRunner]] = {}
    samplers: dict[int, optuna.samplers.BaseSampler] = {}  # kept when studies are reloaded: their draws go on
    ran = waits = 0
    backoff = Backoff(retry_for_s)
    while not should_stop() and (max_trials is None or ran < max_trials):
        try:
            row = next_study(store, rows, study_ids)
            if row is None:  # the budget is met: the winners are re-evaluated next
                reevaluation.run_pending(store, spec, experiment_id, task, worker, should_stop)
                if not should_stop() and not reevaluation.pending(store.engine, spec, experiment_id):
                    rankings.save(store, spec.name)  # the last worker to finish ranks them
                break
            if row == "wait":  # trials in flight: fail those whose worker died
                for open_row in rows:
                    if open_row.id not in studies:
                        studies[open_row.id] = _load_study(store, spec, open_row, worker, task, should_stop, samplers)
                    store.fail_stale_trials(studies[open_row.id][2].study_id)
                time.sleep(min(WAIT_S, POLL_S * 2 ** waits))
                waits += 1
                continue
            waits = 0
            if row.id not in studies:
                studies[row.id] = _load_study(store, spec, row, worker, task, should_stop, samplers)
            study, objective, population = studies[row.id]
            free, running = free_trials(store, row, study_ids)
            size = population.size(min(free, max_trials - ran if max_trials is not None else row.n_trials))
            told = 0
            store.fail_stale_trials(population.study_id)  # as study.optimize does before a trial, all at once
            if size > 1:
                told = population.run(size)  # 0 when Optuna's trials fill the budget already
                if told == 0 and running:  # another worker took the last ones meanwhile: look again
                    time.sleep(POLL_S)
                    continue
            if told == 0:  # one trial, also when Optuna counts trials tuner does not (told by other tools)
                study.optimize(objective, n_trials=1, gc_after_trial=False, catch=())
                told = 1
        except Abandoned:  # stopped mid-trial: Optuna recorded the trial FAIL, its run was dropped
            break
        except Exception as exc:
            if _caused_by(exc, UpdateFinishedTrialError):  # Optuna may mask it (an AssertionError)
                _log.warning("a trial of %s outlived its heartbeat: another worker failed it, and it runs again",
                             experiment_name)
                continue
            if lost := _caused_by(exc, DBAPIError):
                if backoff.wait(f"database unavailable ({type(lost).__name__})", should_stop):
                    studies.clear()  # reload (the same samplers); the cache re-reads every unfinished trial
                    continue
                if should_stop():
                    break
                raise lost from None  # the database error itself, not the error Optuna may mask it with
            if _caused_by(exc, KeyError) and _recreate_deleted(store, spec, rows):
                _log.warning("a study of %s was deleted with Optuna's tools: it is made anew", experiment_name)
                store.forget_cached_trials()
                study_ids = _optuna_studies(store, rows)
                studies.clear()
                continue
            raise
        backoff.reset()
        ran += told
    return ran


def free_trials(store: Store, row: StudyRow, study_ids: dict[int, int | None]) -> tuple[int, int]:
    """The trials of ``row``'s budget that no worker has finished or is running (a retry waiting
    counts as one to run; at least 1), and how many are running."""
    finished, running, waiting = queries.workload(store.engine, study_ids).get(row.id, (0, 0, 0))
    return max(row.n_trials - finished - running, waiting, 1), running


def _recreate_deleted(store: Store, spec: Experiment, rows: list[StudyRow]) -> bool:
    """Create again, empty, the Optuna studies deleted with Optuna's tools (optuna-dashboard,
    ``optuna delete-study``); whether there were any. tuner's runs of them still count towards
    their budgets."""
    if not store.shared or len(queries.optuna_study_ids(store.engine, [r.study_name for r in rows])) == len(rows):
        return False
    create_experiment(store, spec)
    return True


def _optuna_studies(store: Store, rows: list[StudyRow]) -> dict[int, int | None]:
    """Each tuner study's Optuna study id (None on the in-memory store, which has no SQL ids)."""
    optuna_ids = queries.optuna_study_ids(store.engine, [row.study_name for row in rows]) if store.shared else {}
    return {row.id: optuna_ids.get(row.study_name) for row in rows}


def _caused_by(exc: BaseException | None, kind: type[_Error]) -> _Error | None:
    """The exception of ``kind`` that is ``exc`` or behind it, if any. Optuna masks some: its
    _run_trial raises UnboundLocalError when the database is gone while it records a trial's
    state, and an AssertionError when the trial was already finished by another worker."""
    while exc is not None:
        if isinstance(exc, kind):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


class Backoff:
    """Sleeps 0.5 s, 1 s, 2 s, ... (at most 10 s) between retries, for at most ``limit_s`` in all."""

    def __init__(self, limit_s: float) -> None:
        self.limit_s = limit_s
        self.reset()

    def reset(self) -> None:
        self.delay, self.since = 0.5, None

    def wait(self, reason: str, should_stop: Callable[[], bool]) -> bool:
        """Log ``reason`` and sleep before the next try, waking early for a stop; False once the
        time is up or a stop was asked."""
        now = time.monotonic()
        self.since = self.since or now
        if now - self.since > self.limit_s or should_stop():
            return False
        _log.warning("%s; retrying in %.1f s", reason, self.delay)
        end = now + self.delay
        while not should_stop() and (left := end - time.monotonic()) > 0:
            time.sleep(min(left, STOP_CHECK_S))
        self.delay = min(self.delay * 2, 10.0)
        return not should_stop()


def _load_study(store: Store, spec: Experiment, row: StudyRow, worker: int, task: Task,
                should_stop: Callable[[], bool], samplers: dict[int, optuna.samplers.BaseSampler],
                ) -> tuple[optuna.Study, Callable, PopulationRunner]:
    """The study of ``row`` with its sampler (made once per worker and kept in ``samplers``: a
    study reloaded after a lost connection draws on, instead of replaying its seeded draws) and
    pruner, the objective of its lone trials and the runner of its populations."""
    sampler_spec = next(s for s in spec.samplers if s.name == row.sampler)
    space = spec.search_space(row.optimizer)
    if row.id not in samplers:
        seed = sampler_seed(spec, row, sampler_spec, worker)
        samplers[row.id] = make_sampler(sampler_spec, space, seed, row.n_trials, generation_size(spec, space))
    study = optuna.load_study(study_name=row.study_name, storage=store.optuna, sampler=samplers[row.id],
                              pruner=make_pruner(spec))
    objective = make_objective(spec, row.optimizer, space, task, seed=row.repeat,
                               save=lambda record: store.save_trial_run(row.id, record),
                               should_stop=should_stop, sampled=store.flush_params)
    return study, _catching(objective), PopulationRunner(store, spec, row, study, space, task, should_stop)


def _catching(objective: Callable) -> Callable:
    """Let a stop or a pruning through; record any other error on the trial before it fails."""

    def wrapped(trial: optuna.Trial) -> float:
        try:
            return objective(trial)
        except optuna.TrialPruned:
            raise
        except Exception as exc:
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}"[:2000])
            raise

    return wrapped


def quiet_optuna() -> None:
    """Workers report through tuner's tables; Optuna's per-trial log lines would flood the terminal."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    logging.getLogger("alembic").setLevel(logging.WARNING)


def worker_process(url: str, experiment_name: str, worker: int, max_trials: int | None = None,
                   parent: int | None = None) -> WorkerEnd:
    """Entry point of a worker process: one BLAS thread, signals (and, given ``parent``, that
    process's end) as a stop flag, then work.

    The worker joins an existing experiment and creates nothing. A database server that does not
    answer is waited for as a lost connection is (``open_store``); any other problem with the
    database, or one that outlasts the wait, is a ConfigError naming the storage, and so is a
    SQLite file deleted or replaced while the worker runs (``FileWatch``: it stops at once)."""
    stop = StopFlag(parent).install()
    quiet_optuna()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    threadpool_limits(limits=1)
    store = open_store(url, stop)
    if store is None:  # stopped while waiting for the server
        return WorkerEnd(0, stop.signum)
    watch = FileWatch(url)
    try:
        ran = run_worker(store, experiment_name, worker=worker, max_trials=max_trials,
                         should_stop=lambda: stop() or watch.problem() is not None)
    except DBAPIError as exc:
        raise problem(exc, url) from exc
    finally:
        store.close()
    if lost := watch.problem():
        raise FileLost(lost)
    return WorkerEnd(ran, stop.signum)


def launched_worker(url: str, experiment_name: str, worker: int, parent: int) -> None:
    """A worker process of ``tuner launch``: a ConfigError is one line on stderr and exit 2, as for
    ``tuner worker``; a lost SQLite file is left for the launcher, which watches it too, to report."""
    try:
        worker_process(url, experiment_name, worker, parent=parent)
    except FileLost:
        sys.exit(2)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


def open_store(url: str, should_stop: Callable[[], bool]) -> Store | None:
    """The worker's store on ``url`` (``Store.open`` without creating anything). A server that does
    not answer (``Unreachable``) is tried again with the back-off of a lost connection, a line
    logged per try, for up to RETRY_FOR_S; then its error, noting the wait. None if a stop was
    asked meanwhile. Every other problem is raised at once."""
    backoff = Backoff(RETRY_FOR_S)
    while True:
        try:
            return Store.open(url, create=False)
        except Unreachable as exc:
            if backoff.wait(str(exc), should_stop):
                continue
            if should_stop():
                return None
            raise Unreachable(f"{exc}; gave up after waiting {RETRY_FOR_S:g} s") from exc


def worker_id() -> int:
    """A number that differs between workers on different hosts and processes."""
    return hash((socket.gethostname(), os.getpid())) & 0x7FFFFFFF
