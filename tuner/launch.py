"""``tuner launch``: create or resume an experiment, run local workers with a live progress
display (they tune, then re-evaluate each study's best configuration on fresh seeds:
``tuner.reevaluation``), print the winners.

Stopping: Ctrl-C (SIGINT) and SIGTERM (``kill``, ``timeout``, a supervisor) are one stop. The
workers, started with SIGINT ignored so that only the launcher reacts to a Ctrl-C, get SIGTERM:
each abandons its trial (FAIL, run again on resume) and exits; they also stop by themselves when
the launcher is gone (killed). A launch is done when every study met its budget and every
re-evaluation is stored; a SQLite file deleted or replaced under a running launch stops it.
"""

import multiprocessing
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from tuner import reevaluation
from tuner.spec import Experiment
from tuner.storage import queries
from tuner.storage.engine import is_sqlite, reader_engine
from tuner.storage.records import StudyRow
from tuner.storage.store import Store
from tuner.urls import shown
from tuner.worker import create_experiment, quiet_optuna, worker_process

POLL_S = 0.5

DONE, INTERRUPTED, TERMINATED, FAILED, INCOMPLETE, LOST = (
    "done", "interrupted", "terminated", "failed", "incomplete", "lost")
EXIT_CODES = {DONE: 0, INTERRUPTED: 130, TERMINATED: 143, FAILED: 1, INCOMPLETE: 1, LOST: 1}
"""The launcher's exit status per outcome: 128 + the signal's number for a stop, as shells report it."""
STOP_WAIT_S = 60
"""How long stopped workers have to abandon their trials before they are killed."""


class Terminated(KeyboardInterrupt):
    """SIGTERM reached the launcher: it stops exactly as for Ctrl-C."""


def _terminate(signum: int, frame: Any) -> None:
    raise Terminated


def launch(spec: Experiment, url: str, workers: int, console: Console) -> str:
    """Run the experiment to completion; the outcome (see EXIT_CODES): DONE, INTERRUPTED (Ctrl-C),
    TERMINATED (SIGTERM), FAILED (a worker crashed), INCOMPLETE (workers ended before the budget
    was met) or LOST (the SQLite file was deleted or replaced). Names reach ``console`` as Text,
    never as Rich markup."""
    quiet_optuna()
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        store = Store.open(url)
        try:
            return _launch(store, spec, url, workers, console)
        finally:
            store.close()
    except KeyboardInterrupt as stop:
        console.print("stopped. Finished trials are kept; run the same command again to resume.")
        return TERMINATED if isinstance(stop, Terminated) else INTERRUPTED
    finally:
        signal.signal(signal.SIGTERM, previous)


def _launch(store: Store, spec: Experiment, url: str, workers: int, console: Console) -> str:
    experiment_id, rows = create_experiment(store, spec)
    console.print(Text.assemble("experiment ", (spec.name, "bold"), f": {len(rows)} studies x {spec.trials} "
                                f"trials on {spec.task.name}, storage {shown(url)}"))
    if workers == 0:
        return DONE
    watch = DatabaseWatch(url)
    outcome = _run_workers(url, spec, experiment_id, rows, workers, console, watch)
    if outcome != DONE:
        return outcome
    done, total = trials_done(store.engine, rows)
    if done < total:
        console.print(f"the workers ended at {done} of {total} trials (stopped before the budget was met); "
                      "nothing is re-evaluated yet: run the same command again to resume")
        return INCOMPLETE
    if left := len(reevaluation.pending(store.engine, spec, experiment_id)):
        console.print(f"the workers ended with {left} re-evaluation runs still to do: run the same command "
                      "again to finish them")
        return INCOMPLETE
    return DONE


def trials_done(engine: Any, rows: list[StudyRow]) -> tuple[int, int]:
    """Trials finished towards the studies' budgets (each study counted up to its own), and the
    budgets' sum: the count workers take their next trial by (``queries.workload``)."""
    finished = queries.workload(engine, {row.id: None for row in rows})
    return sum(min(finished[row.id][0], row.n_trials) for row in rows), sum(row.n_trials for row in rows)


class DatabaseWatch:
    """Notices a SQLite file deleted or replaced while the launch runs (``rm tuner.db*``): its
    workers would go on writing into the unlinked file, and every result would be lost."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.path = make_url(url).database if is_sqlite(url) else None
        self.identity = self._identity()

    def _identity(self) -> tuple[int, int] | None:
        try:
            info = os.stat(self.path) if self.path else None
        except FileNotFoundError:
            return None
        return (info.st_dev, info.st_ino) if info else None

    def problem(self) -> str | None:
        """What happened to the file, if it is not the one the launch started with; else None."""
        if self.path is None or self._identity() == self.identity:
            return None
        happened = "replaced" if os.path.exists(self.path) else "deleted"
        return (f"the database file {self.path!r} was {happened} while the launch ran: results written since "
                f"went into the old file and are lost; tuner stopped (storage {shown(self.url)})")


@contextmanager
def sigint_ignored() -> Iterator[None]:
    """Processes started in the block ignore SIGINT (inherited across exec; Python keeps it): a
    Ctrl-C reaches only the launcher, which stops them, never a child still importing."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _run_workers(url: str, spec: Experiment, experiment_id: int, rows: list[StudyRow], workers: int,
                 console: Console, watch: DatabaseWatch) -> str:
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=worker_process, args=(url, spec.name, i),
                                 kwargs={"parent": os.getpid()}, daemon=False) for i in range(workers)]
    reader = None
    try:
        with sigint_ignored():
            for process in processes:
                process.start()
        reader = reader_engine(url)
        with _Progress(reader, spec, experiment_id, rows, console) as progress:
            while not (problem := watch.problem()) and any(p.is_alive() for p in processes):
                _refresh(progress, watch)
                time.sleep(POLL_S)
            _refresh(progress, watch)
        if problem:
            _stop(processes, console)
            console.print(problem, style="red")
            return LOST
    except KeyboardInterrupt:
        _stop(processes, console)
        raise
    finally:
        if reader is not None:
            reader.dispose()
    failed = [p.exitcode for p in processes if p.exitcode != 0]
    if failed:
        console.print(f"{len(failed)} worker(s) exited with an error (exit codes {failed}); "
                      "finished trials are kept: run the launch again to go on", style="red")
        return FAILED
    return DONE


def _refresh(progress: "_Progress", watch: DatabaseWatch) -> None:
    """Show the progress; a database error is the watch's to report when the file went away."""
    try:
        progress.refresh()
    except DBAPIError:
        if watch.problem() is None:
            raise


def _stop(processes: list, console: Console) -> None:
    """Ask every started worker to stop (each abandons its trial as FAIL) and wait for them; kill
    those still running after STOP_WAIT_S. Further Ctrl-C and SIGTERM are ignored meanwhile."""
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        console.print("\nstopping: workers are abandoning their current trials ...")
        started = [p for p in processes if p.pid is not None]
        for process in started:
            if process.is_alive():
                process.terminate()  # SIGTERM: the worker's stop flag
        deadline = time.monotonic() + STOP_WAIT_S
        for process in started:
            process.join(max(0.1, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class _Progress:
    """Trials finished of the budget, re-evaluation runs stored of those pending, and the best
    objective so far per optimizer."""

    def __init__(self, engine: Any, spec: Experiment, experiment_id: int, rows: list[StudyRow],
                 console: Console) -> None:
        self.engine, self.spec, self.experiment_id, self.rows = engine, spec, experiment_id, rows
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            console=console)
        self.trials = self.bar.add_task("trials", total=sum(r.n_trials for r in self.rows))
        self.reevaluations = self.bar.add_task("re-evaluation", total=None, visible=spec.reevaluate > 0)
        self.live = Live(Group(self.bar, Table()), console=console, refresh_per_second=4)

    def __enter__(self) -> "_Progress":
        self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.live.__exit__(*exc)
        if not self.live.console.is_terminal:  # Rich ends its last frame without a newline there
            self.live.console.line()

    def refresh(self) -> None:
        done, total = trials_done(self.engine, self.rows)
        self.bar.update(self.trials, completed=done)
        if done == total and self.spec.reevaluate:
            stored = len(queries.reevaluated(self.engine, self.experiment_id))
            left = len(reevaluation.pending(self.engine, self.spec, self.experiment_id))
            self.bar.update(self.reevaluations, completed=stored, total=stored + left)
        best = {row["optimizer"]: row["trial_objective"]
                for row in queries.best_configs(self.engine, self.spec.name, per_optimizer=True)}
        table = Table(title=f"best {self.spec.objective.name} so far", title_justify="left")
        table.add_column("optimizer")
        table.add_column("best", justify="right")
        for name in [o.name for o in self.spec.optimizers]:
            table.add_row(name, "-" if best.get(name) is None else f"{best[name]:.4g}")
        self.live.update(Group(self.bar, table))
