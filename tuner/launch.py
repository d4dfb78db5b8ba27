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
from sqlalchemy.exc import DBAPIError

from tuner import reevaluation, report, suite_scores
from tuner.errors import ConfigError
from tuner.spec import Experiment
from tuner.storage import queries
from tuner.storage.engine import FileWatch, reader_engine
from tuner.storage.records import StudyRow
from tuner.storage.store import Store
from tuner.suite import Suite
from tuner.urls import shown
from tuner.worker import create_experiment, launched_worker, quiet_optuna

POLL_S = 0.5

DONE, FAILED, INCOMPLETE, LOST = "done", "failed", "incomplete", "lost"
STOPS = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated", signal.SIGHUP: "hung up"}
"""The signals that stop a launch cleanly: Ctrl-C, ``kill``/``timeout``/a supervisor, a closed terminal."""
EXIT_CODES = {DONE: 0, FAILED: 1, INCOMPLETE: 1, LOST: 1} | {stop: 128 + sig for sig, stop in STOPS.items()}
"""The launcher's exit status per outcome: 128 + the signal's number for a stop, as shells report it."""
STOP_WAIT_S = 60
"""How long stopped workers have to abandon their trials before they are killed."""


class Stopped(KeyboardInterrupt):
    """A stop signal (``STOPS``) reached the launcher: it stops exactly as for Ctrl-C."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _stop_signal(signum: int, frame: Any) -> None:
    raise Stopped(signum)


def launch(spec: Experiment, url: str, workers: int, console: Console) -> str:
    """Run the experiment to completion; the outcome (see EXIT_CODES): DONE, a stop (``STOPS``),
    FAILED (a worker crashed before the work was done), INCOMPLETE (workers ended before the
    budget was met or the re-evaluations stored) or LOST (the SQLite file was deleted or replaced:
    its old journal is then set aside). Names reach ``console`` as Text, never as Rich markup."""
    quiet_optuna()
    previous = {sig: signal.signal(sig, _stop_signal) for sig in STOPS if sig != signal.SIGINT}
    watch: FileWatch | None = None
    try:
        store = Store.open(url)
        try:
            watch = FileWatch(url)
            outcome = _launch(store, spec, url, workers, console, watch)
        finally:
            store.close()
        if outcome == LOST and (moved := watch.set_aside_journal()):
            console.print(f"the old file's journal, which opening the new file would replay into it, is now "
                          f"{', '.join(moved)}")
        return outcome
    except KeyboardInterrupt as stop:
        console.print("stopped. Finished trials are kept; run the same command again to resume.")
        return STOPS[stop.signum if isinstance(stop, Stopped) else signal.SIGINT]
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _launch(store: Store, spec: Experiment, url: str, workers: int, console: Console, watch: FileWatch) -> str:
    experiment_id, rows = create_experiment(store, spec)
    console.print(Text.assemble("experiment ", (spec.name, "bold"), f": {len(rows)} studies x {spec.trials} "
                                f"trials on {spec.task.name}, storage {shown(url)}"))
    if workers == 0:
        return DONE
    outcome = _run_workers(url, spec, experiment_id, rows, workers, console, watch)
    if outcome == LOST:
        return outcome
    done, total = trials_done(store.engine, rows)
    left = len(reevaluation.pending(store.engine, spec, experiment_id))
    if done == total and not left:
        if outcome == FAILED:
            console.print("the budget is met and every re-evaluation stored all the same", style="red")
        return DONE
    if outcome == FAILED:
        return FAILED
    if done < total:
        console.print(f"the workers ended at {done} of {total} trials (stopped before the budget was met); "
                      "nothing is re-evaluated yet: run the same command again to resume")
    else:
        console.print(f"the workers ended with {left} re-evaluation runs still to do: run the same command "
                      "again to finish them")
    return INCOMPLETE


def trials_done(engine: Any, rows: list[StudyRow]) -> tuple[int, int]:
    """Trials finished towards the studies' budgets (each study counted up to its own), and the
    budgets' sum: the count workers take their next trial by (``queries.workload``)."""
    finished = queries.workload(engine, {row.id: None for row in rows})
    return sum(min(finished[row.id][0], row.n_trials) for row in rows), sum(row.n_trials for row in rows)


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
                 console: Console, watch: FileWatch) -> str:
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=launched_worker, args=(url, spec.name, i, os.getpid()), daemon=False)
                 for i in range(workers)]
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


def _refresh(progress: "_Progress", watch: FileWatch) -> None:
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
        self.reevaluations = self.bar.add_task("re-evaluation", total=None, visible=False)  # once trials are done
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
            self.bar.update(self.reevaluations, completed=stored, total=stored + left, visible=True)
        best = {row["optimizer"]: row for row in queries.best_configs(self.engine, self.spec.name,
                                                                        per_optimizer=True)}
        table = Table(title=f"best {self.spec.objective.name} so far", title_justify="left")
        table.add_column("optimizer")
        table.add_column("best", justify="right")
        for name in [o.name for o in self.spec.optimizers]:
            shown = "-" if name not in best else report.trial_objective(best[name], self.spec.objective.name)
            table.add_row(name, shown)
        self.live.update(Group(self.bar, table))


def launch_suite(suite: Suite, url: str, workers: int, console: Console) -> str:
    """Every task's experiment of ``suite`` (``Suite.experiments``): all created first, so that the
    suite is refused before any trial runs when one cannot be (a study file changed under its name,
    or the suite stored with other tasks), then each run to completion in turn (``launch``). The
    first outcome that is not DONE ends it and is returned."""
    specs = suite.experiments()
    tasks = [task.name for task in suite.tasks]
    quiet_optuna()
    store = Store.open(url)
    try:
        stored = suite_scores.stored_tasks(store.engine, suite.suite)
        if stored is not None and stored != tasks:
            raise ConfigError(f"suite {suite.suite!r} is stored with the tasks {', '.join(stored)}; this suite file "
                              f"has {', '.join(tasks)}: give it a new name to start another suite")
        for spec in specs:
            create_experiment(store, spec)
    finally:
        store.close()
    for spec in specs:
        outcome = launch(spec, url, workers, console)
        if outcome != DONE:
            return outcome
    return DONE
