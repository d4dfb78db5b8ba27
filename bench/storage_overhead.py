"""What storage and bookkeeping cost: the quickstart on a database vs Optuna's in-memory storage.

One worker runs the whole experiment in this process, alternating the database (SQLite by
default, a fresh file each run; or a fresh database on the server given with --storage) and
in-memory (Optuna's InMemoryStorage, tuner's tables in an in-memory SQLite); the trials are
the same in both (same seeds). Prints the median wall times and their ratio (targets: SQLite
<= 1.10, PostgreSQL <= 1.15), then the median trials per minute with 1 and 2 worker processes
on the database (target: 2 workers >= 1.8x one) and the workers' CPU time per trial, which tells
coordination cost (it grows with 2 workers) from a busy machine (it does not). Databases made on a
server are dropped at the end.

    python bench/storage_overhead.py [--study studies/quickstart.yaml] [--repeats 3] [--trials N]
    python bench/storage_overhead.py --storage postgresql+psycopg://postgres@127.0.0.1:5432/postgres
"""

import argparse
import multiprocessing
import resource
import statistics
import tempfile
import time
from pathlib import Path

from optuna.storages._rdb import models
from optuna.trial import TrialState
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url
from threadpoolctl import threadpool_limits

from tuner.spec import Experiment, load_experiment
from tuner.storage.store import Store
from tuner.worker import quiet_optuna, run_worker, worker_process


def one_worker(spec: Experiment, store: Store) -> tuple[float, int]:
    """Seconds and trials to run the experiment's whole budget with one in-process worker."""
    experiment_id = store.ensure_experiment(spec)
    store.ensure_studies(spec, experiment_id)
    start = time.perf_counter()
    trials = run_worker(store, spec.name)
    return time.perf_counter() - start, trials


def processes(spec: Experiment, url: str, n: int) -> tuple[float, float, float, int]:
    """Run the experiment with ``n`` worker processes: seconds from their start to their exit,
    seconds from the first trial's start to the last trial's end (Optuna's timestamps, i.e.
    without the ~2 s each process spends importing), the workers' CPU seconds, and trials finished."""
    store = Store.open(url)
    store.ensure_studies(spec, store.ensure_experiment(spec))
    store.close()
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=worker_process, args=(url, spec.name, i)) for i in range(n)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the joined workers' own CPU time
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    trials = models.TrialModel.__table__  # typed: SQLite's timestamps come back as datetimes too
    engine = create_engine(url)
    with engine.connect() as conn:
        first, last, finished = conn.execute(
            select(func.min(trials.c.datetime_start), func.max(trials.c.datetime_complete), func.count())
            .where(trials.c.state.in_([TrialState.COMPLETE, TrialState.PRUNED]))).one()
    engine.dispose()
    return elapsed, (last - first).total_seconds(), cpu, finished


class Databases:
    """Fresh empty databases: SQLite files in ``tmp``, or new databases on ``base``'s server,
    dropped again by ``drop_all``."""

    def __init__(self, base: str | None, tmp: str) -> None:
        self.base, self.tmp, self.made = base, tmp, []

    def fresh(self, tag: str) -> str:
        name = f"tuner_bench_{tag}_{time.time_ns()}"
        if self.base is None:
            return f"sqlite:///{self.tmp}/{name}.db"
        self._admin(f"CREATE DATABASE {name}")
        self.made.append(name)
        return make_url(self.base).set(database=name).render_as_string(hide_password=False)

    def drop_all(self) -> None:
        force = " WITH (FORCE)" if make_url(self.base or "sqlite://").get_backend_name() == "postgresql" else ""
        for name in self.made:
            self._admin(f"DROP DATABASE IF EXISTS {name}{force}")
        self.made.clear()

    def _admin(self, statement: str) -> None:
        admin = create_engine(self.base, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(statement))
        admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default=str(Path(__file__).parent.parent / "studies" / "quickstart.yaml"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--trials", type=int, default=None, help="trials per study (default: the file's)")
    parser.add_argument("--storage", default=None, help="a server URL to compare instead of SQLite (fresh databases)")
    args = parser.parse_args()
    spec = load_experiment(args.study)
    if args.trials:
        spec = spec.model_copy(update={"trials": args.trials})
    quiet_optuna()
    label = "SQLite" if args.storage is None else make_url(args.storage).get_backend_name()
    times: dict[str, list[float]] = {"database": [], "memory": []}
    with tempfile.TemporaryDirectory() as tmp, threadpool_limits(1):
        databases = Databases(args.storage, tmp)
        try:
            for r in range(args.repeats):
                for mode in ("memory", "database") if r % 2 else ("database", "memory"):
                    store = Store.open(databases.fresh(f"r{r}")) if mode == "database" else Store.memory()
                    seconds, trials = one_worker(spec, store)
                    store.close()
                    times[mode].append(seconds)
                    print(f"  run {r + 1} {mode:8s}: {seconds:6.2f} s for {trials} trials", flush=True)
            database, memory = statistics.median(times["database"]), statistics.median(times["memory"])
            paired = statistics.median(d / m for d, m in zip(times["database"], times["memory"], strict=True))
            print(f"{spec.name}: one worker, {trials} trials; median of {args.repeats}")
            print(f"  {label:10s} {database:7.2f} s   ({database / trials * 1e3:.1f} ms per trial)")
            print(f"  in-memory  {memory:7.2f} s   ({memory / trials * 1e3:.1f} ms per trial)")
            target = "1.10" if args.storage is None else "1.15"
            print(f"  ratio {label} / in-memory: {database / memory:.3f} of the medians, {paired:.3f} median of "
                  f"the {args.repeats} side-by-side pairs (target <= {target})")
            rates: dict[str, dict[int, list[float]]] = {"wall": {1: [], 2: []}, "trials": {1: [], 2: []}}
            cpu_ms: dict[int, list[float]] = {1: [], 2: []}
            for r in range(args.repeats):
                for n in (2, 1) if r % 2 else (1, 2):
                    elapsed, span, cpu, trials = processes(spec, databases.fresh(f"w{n}"), n)
                    rates["wall"][n].append(trials / elapsed * 60)
                    rates["trials"][n].append(trials / span * 60)
                    cpu_ms[n].append(cpu / trials * 1e3)
                    print(f"  run {r + 1} {n} worker process(es) on {label}: {trials} trials, {elapsed:.1f} s from "
                          f"start to exit, {span:.1f} s from the first trial to the last, {cpu:.1f} CPU s",
                          flush=True)
            for kind, what in (("wall", "processes' start to exit"), ("trials", "first trial to last")):
                one, two = (statistics.median(rates[kind][n]) for n in (1, 2))
                print(f"  trials/min on {label} ({what}), median of {args.repeats}: 1 worker {one:.1f}, "
                      f"2 workers {two:.1f} -> {two / one:.2f}x (target >= 1.8x)")
            one, two = (statistics.median(cpu_ms[n]) for n in (1, 2))
            print(f"  worker CPU per trial, median of {args.repeats}: 1 worker {one:.1f} ms, 2 workers {two:.1f} ms "
                  f"-> {two / one:.2f} (start-up included; near 1.00, sharing the database costs a worker nothing "
                  "and a scaling below 2x is CPU the machine did not give)")
        finally:
            databases.drop_all()


if __name__ == "__main__":
    main()
