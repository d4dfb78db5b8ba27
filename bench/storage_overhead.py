"""What storage and bookkeeping cost: the quickstart on a database vs Optuna's in-memory storage.

One worker runs the whole experiment in this process, alternating the database (SQLite by
default, a fresh file each run; or a fresh database on the server given with --storage) and
in-memory (Optuna's InMemoryStorage, tuner's tables in an in-memory SQLite); the trials are
the same in both (same seeds). Prints the median wall times and their ratio (targets: SQLite
<= 1.10, PostgreSQL <= 1.15), then trials per minute with 1 and 2 worker processes on the
database (target: 2 workers >= 1.8x one).

    python bench/storage_overhead.py [--study studies/quickstart.yaml] [--repeats 3] [--trials N]
    python bench/storage_overhead.py --storage postgresql+psycopg://postgres@127.0.0.1:5432/postgres
"""

import argparse
import multiprocessing
import statistics
import tempfile
import time
from pathlib import Path

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


def processes(spec: Experiment, url: str, n: int) -> tuple[float, int]:
    store = Store.open(url)
    experiment_id = store.ensure_experiment(spec)
    rows = store.ensure_studies(spec, experiment_id)
    store.close()
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=worker_process, args=(url, spec.name, i)) for i in range(n)]
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - start
    return elapsed, sum(r.n_trials for r in rows)


def fresh_database(base: str | None, tmp: str, tag: str) -> str:
    """A new empty database: a SQLite file in ``tmp``, or a new database on ``base``'s server."""
    if base is None:
        return f"sqlite:///{tmp}/{tag}.db"
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"tuner_bench_{tag}_{int(time.time() * 1000)}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    admin.dispose()
    return make_url(base).set(database=name).render_as_string(hide_password=False)


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
        for r in range(args.repeats):
            for mode in ("memory", "database") if r % 2 else ("database", "memory"):
                store = Store.open(fresh_database(args.storage, tmp, f"r{r}")) if mode == "database" else Store.memory()
                seconds, trials = one_worker(spec, store)
                store.close()
                times[mode].append(seconds)
                print(f"  run {r + 1} {mode:8s}: {seconds:6.2f} s for {trials} trials", flush=True)
        database, memory = statistics.median(times["database"]), statistics.median(times["memory"])
        print(f"{spec.name}: one worker, {trials} trials; median of {args.repeats}")
        print(f"  {label:10s} {database:7.2f} s   ({database / trials * 1e3:.1f} ms per trial)")
        print(f"  in-memory  {memory:7.2f} s   ({memory / trials * 1e3:.1f} ms per trial)")
        target = "1.10" if args.storage is None else "1.15"
        print(f"  ratio {label} / in-memory: {database / memory:.3f} (target <= {target})")
        rates = {}
        for n in (1, 2):
            seconds, trials = processes(spec, fresh_database(args.storage, tmp, f"w{n}"), n)
            rates[n] = trials / seconds * 60
            print(f"  {n} worker process(es) on {label}: {rates[n]:7.1f} trials/min "
                  f"({trials} trials in {seconds:.1f} s)")
        print(f"  2 workers / 1 worker: {rates[2] / rates[1]:.2f}x (target >= 1.8x)")


if __name__ == "__main__":
    main()
