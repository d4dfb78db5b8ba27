"""``tuner launch``: create or resume an experiment, run local workers with a live progress
display, re-evaluate each study's best configuration on fresh seeds, print the winners."""

import multiprocessing
import signal
import time
from dataclasses import dataclass
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text
from threadpoolctl import threadpool_limits

from tuner.objective import Budget, run_config, summarize
from tuner.spec import Experiment
from tuner.storage import queries
from tuner.storage.engine import reader_engine
from tuner.storage.records import DONE_STATES, RunRecord
from tuner.storage.store import Store
from tuner.tasks import make_task
from tuner.urls import shown
from tuner.worker import create_experiment, quiet_optuna, worker_process

REEVALUATION_SEED = 1_000_000
"""Re-evaluation seeds start here, far from the trials' seeds (a study's repeat index)."""
POLL_S = 0.5


@dataclass(frozen=True)
class Reevaluation:
    """One fresh-seed run of a study's best configuration."""

    study_id: int
    source_run_id: int
    seed: int
    config: dict[str, Any]


DONE, INTERRUPTED, FAILED = "done", "interrupted", "failed"


def launch(spec: Experiment, url: str, workers: int, console: Console) -> str:
    """Run the experiment to completion: DONE, INTERRUPTED (Ctrl-C) or FAILED (a worker crashed).
    Names reach ``console`` as Text, never as Rich markup."""
    quiet_optuna()
    store = Store.open(url)
    try:
        experiment_id, rows = create_experiment(store, spec)
        console.print(Text.assemble("experiment ", (spec.name, "bold"), f": {len(rows)} studies x {spec.trials} "
                                    f"trials on {spec.task.name}, storage {shown(url)}"))
        if workers == 0:
            return DONE
        outcome = _run_workers(url, spec, experiment_id, workers, console)
        if outcome != DONE:
            return outcome
        return _reevaluate(store, spec, experiment_id, workers, console)
    finally:
        store.close()


def _run_workers(url: str, spec: Experiment, experiment_id: int, workers: int, console: Console) -> str:
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=worker_process, args=(url, spec.name, i), daemon=False)
                 for i in range(workers)]
    for process in processes:
        process.start()
    reader = reader_engine(url)
    try:
        with _Progress(reader, spec, experiment_id, console) as progress:
            while any(p.is_alive() for p in processes):
                progress.refresh()
                time.sleep(POLL_S)
            progress.refresh()
    except KeyboardInterrupt:
        _stop(processes, console)
        return INTERRUPTED
    finally:
        reader.dispose()
    failed = [p.exitcode for p in processes if p.exitcode != 0]
    if failed:
        console.print(f"{len(failed)} worker(s) exited with an error (exit codes {failed}); "
                      "finished trials are kept: run the launch again to go on", style="red")
        return FAILED
    return DONE


def _stop(processes: list, console: Console) -> None:
    """Ask every worker to stop (each abandons its trial as FAIL) and wait for them."""
    console.print("\nstopping: workers are abandoning their current trials ...")
    for process in processes:
        if process.is_alive():
            process.terminate()  # SIGTERM: the worker's stop flag
    deadline = time.monotonic() + 60
    for process in processes:
        process.join(max(0.1, deadline - time.monotonic()))
    console.print("stopped. Finished trials are kept; run the same command again to resume.")


class _Progress:
    """Trials finished of the budget, and the best objective so far per optimizer."""

    def __init__(self, engine, spec: Experiment, experiment_id: int, console: Console) -> None:
        self.engine, self.spec, self.experiment_id = engine, spec, experiment_id
        self.rows = queries.studies(engine, experiment_id)
        self.bar = Progress(TextColumn("trials"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            console=console)
        self.task = self.bar.add_task("trials", total=sum(r.n_trials for r in self.rows))
        self.live = Live(Group(self.bar, Table()), console=console, refresh_per_second=4)

    def __enter__(self) -> "_Progress":
        self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.live.__exit__(*exc)

    def refresh(self) -> None:
        states = queries.run_states(self.engine, self.experiment_id)
        done = sum(min(sum(states.get(r.id, {}).get(s, 0) for s in DONE_STATES), r.n_trials) for r in self.rows)
        self.bar.update(self.task, completed=done)
        best = {row["optimizer"]: row["trial_objective"]
                for row in queries.best_configs(self.engine, self.spec.name, per_optimizer=True)}
        table = Table(title=f"best {self.spec.objective.name} so far", title_justify="left")
        table.add_column("optimizer")
        table.add_column("best", justify="right")
        for name in [o.name for o in self.spec.optimizers]:
            table.add_row(name, "-" if best.get(name) is None else f"{best[name]:.4g}")
        self.live.update(Group(self.bar, table))


def pending_reevaluations(store: Store, spec: Experiment, experiment_id: int) -> list[Reevaluation]:
    """Re-evaluations not stored yet: each study's best trial on seeds 1e6 .. 1e6 + reevaluate - 1."""
    done = queries.reevaluated(store.engine, experiment_id)
    return [
        Reevaluation(best["study_id"], best["id"], seed, best["params"])
        for best in queries.best_trials(store.engine, experiment_id)
        for seed in range(REEVALUATION_SEED, REEVALUATION_SEED + spec.reevaluate)
        if (best["id"], seed) not in done
    ]


def _reevaluate(store: Store, spec: Experiment, experiment_id: int, workers: int, console: Console) -> str:
    jobs = pending_reevaluations(store, spec, experiment_id)
    if not jobs:
        return DONE
    context = multiprocessing.get_context("spawn")
    with Progress(TextColumn("re-evaluation"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console) as bar:
        task = bar.add_task("re-evaluation", total=len(jobs))
        pool = context.Pool(workers, initializer=_reevaluation_worker_init)
        try:
            for job, record in pool.imap_unordered(_run_reevaluation, [(spec, job) for job in jobs]):
                store.save_run(job.study_id, record)
                bar.advance(task)
            pool.close()
        except KeyboardInterrupt:
            pool.terminate()
            console.print("\nstopped during re-evaluation; run the same command again to finish it.")
            return INTERRUPTED
        finally:
            pool.join()
    return DONE


def _reevaluation_worker_init() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the launcher handles Ctrl-C and terminates the pool
    threadpool_limits(limits=1)


_TASKS: dict[str, Any] = {}


def _run_reevaluation(item: tuple[Experiment, Reevaluation]) -> tuple[Reevaluation, RunRecord]:
    spec, job = item
    key = repr((spec.task.name, spec.task.options))
    task = _TASKS.get(key) or _TASKS.setdefault(key, make_task(spec.task.name, spec.task.options))
    result = run_config(task, job.config, Budget.of(spec), job.seed)
    record = summarize(spec, task, result, job.config, job.seed, kind="reevaluation")
    record.source_run_id = job.source_run_id
    return job, record
