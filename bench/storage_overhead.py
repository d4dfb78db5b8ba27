"""What storage and coordination cost: the quickstart on a database vs in memory, and 1 vs 2 workers.

1. Overhead: one worker runs the whole experiment in this process, alternating the database
   (SQLite by default, a fresh file each run; or a fresh database on the server given with
   --storage) and in-memory (Optuna's InMemoryStorage, tuner's tables in an in-memory SQLite);
   the trials are the same in both (same seeds). Prints the median wall times and their ratio
   (targets: SQLite <= 1.10, PostgreSQL <= 1.15).
2. Scaling: the experiment with 1 and 2 worker processes on the database (target: 2 workers
   >= 1.8x the trials per minute of one), measured from the processes' start to their exit and
   from the first trial to the last, with the workers' CPU time per trial and the optimizer steps
   they trained. Each worker samples with a seed of its own, so 2 workers train other
   configurations than 1 (other batch sizes: more or fewer steps); the same experiment with every
   parameter fixed (equal work per trial, whichever worker runs it) isolates what sharing the
   database costs. Next to it, the machine's own ceiling: two processes each running the
   experiment in memory at once, sharing nothing.

Databases made on a server are dropped at the end.

3. Per trial: a trivial objective (no work) with random search and with TPE, on tuner's worker
   storage vs Optuna's stock RDBStorage vs Optuna's InMemoryStorage: what the storage costs.

Each part runs on SQLite and on every server given with --storage, in this one run.

    python bench/storage_overhead.py [--study studies/quickstart.yaml] [--repeats 3] [--trials N] [--no-scaling]
    python bench/storage_overhead.py --storage postgresql+psycopg://postgres@127.0.0.1:5432/postgres
"""

import argparse
import math
import multiprocessing
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.storages._rdb import models
from optuna.trial import TrialState
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url
from threadpoolctl import threadpool_limits

from tuner.space import Param
from tuner.spec import Experiment, load_experiment
from tuner.storage import schema
from tuner.storage.store import Store, heartbeat_settings
from tuner.worker import create_experiment, quiet_optuna, run_worker, worker_process


def one_worker(spec: Experiment, store: Store) -> tuple[float, int]:
    """Seconds and trials to run the experiment's whole budget with one in-process worker."""
    create_experiment(store, spec)
    start = time.perf_counter()
    trials = run_worker(store, spec.name)
    return time.perf_counter() - start, trials


@dataclass(frozen=True)
class Run:
    """What ``n`` worker processes did: seconds from their start to their exit, seconds from the
    first trial's start to the last trial's end (without the ~2 s each process spends importing),
    their CPU seconds, trials finished and optimizer steps trained."""

    elapsed: float
    span: float
    cpu: float
    trials: int
    steps: int


def processes(spec: Experiment, url: str, n: int) -> Run:
    """Run the experiment with ``n`` worker processes on ``url``."""
    store = Store.open(url)
    create_experiment(store, spec)
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
        steps = conn.execute(select(func.sum(schema.runs.c.steps)).where(schema.runs.c.kind == "trial")).scalar()
    engine.dispose()
    return Run(elapsed, (last - first).total_seconds(), cpu, finished, steps)


def middle(param: Param) -> object:
    """The middle of a parameter's range on its own scale (the first of its choices)."""
    if param.choices is not None:
        return param.choices[0]
    if param.power_of_two:
        return 2 ** round((math.log2(param.low) + math.log2(param.high)) / 2)
    if param.one_minus:
        return 1 - math.sqrt((1 - param.low) * (1 - param.high))
    mid = math.sqrt(param.low * param.high) if param.log else (param.low + param.high) / 2
    return round(mid) if param.integer else mid


def equal_work(spec: Experiment) -> Experiment:
    """``spec`` with every searched parameter fixed at its middle: all trials of a study train the
    same configuration from the same seed, so the work does not depend on who runs which trial."""
    optimizers = [o.model_copy(update={"space": {**o.space, **{
        p.name: middle(p) for p in spec.search_space(o.name) if p.searched and not p.schedule}}})
        for o in spec.optimizers]
    return spec.model_copy(update={"name": f"{spec.name}-equal-work", "optimizers": optimizers})


def alone_in_memory(spec: Experiment, seconds: "multiprocessing.Queue[float]") -> None:
    """A process running the whole experiment on its own in-memory storage; puts its seconds."""
    quiet_optuna()
    with threadpool_limits(1):
        seconds.put(one_worker(spec, Store.memory())[0])


def ceiling(spec: Experiment, alone: float, n: int) -> float:
    """How much faster ``n`` processes sharing nothing get the same work done than one (``alone``
    seconds): each runs the whole experiment in memory, all at once. The most that ``n`` workers
    on a database can reach on this machine."""
    context = multiprocessing.get_context("spawn")
    seconds = context.Queue()
    runs = [context.Process(target=alone_in_memory, args=(spec, seconds)) for _ in range(n)]
    for run in runs:
        run.start()
    together = [seconds.get() for _ in runs]
    for run in runs:
        run.join()
    return n * alone / max(together)


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


def overhead(spec: Experiment, databases: Databases, repeats: int, label: str) -> float:
    """Print the database / in-memory wall-time ratio of one worker; return the in-memory median."""
    times: dict[str, list[float]] = {"database": [], "memory": []}
    for r in range(repeats):
        for mode in ("memory", "database") if r % 2 else ("database", "memory"):
            store = Store.open(databases.fresh(f"r{r}")) if mode == "database" else Store.memory()
            seconds, trials = one_worker(spec, store)
            store.close()
            times[mode].append(seconds)
            print(f"  run {r + 1} {mode:8s}: {seconds:6.2f} s for {trials} trials", flush=True)
    database, memory = statistics.median(times["database"]), statistics.median(times["memory"])
    paired = statistics.median(d / m for d, m in zip(times["database"], times["memory"], strict=True))
    target = "1.10" if label == "SQLite" else "1.15"
    print(f"{spec.name}: one worker, {trials} trials; median of {repeats}")
    print(f"  {label:10s} {database:7.2f} s   ({database / trials * 1e3:.1f} ms per trial)")
    print(f"  in-memory  {memory:7.2f} s   ({memory / trials * 1e3:.1f} ms per trial)")
    print(f"  ratio {label} / in-memory: {database / memory:.3f} of the medians, {paired:.3f} median of "
          f"the {repeats} side-by-side pairs (target <= {target})")
    return memory


def scaling(spec: Experiment, databases: Databases, repeats: int, label: str) -> None:
    """Print trials per minute with 1 and 2 worker processes (alternating order), and what they cost."""
    runs: dict[int, list[Run]] = {1: [], 2: []}
    for r in range(repeats):
        for n in (2, 1) if r % 2 else (1, 2):
            run = processes(spec, databases.fresh(f"w{n}"), n)
            runs[n].append(run)
            print(f"  run {r + 1} {n} worker process(es): {run.trials} trials, {run.steps} steps, {run.elapsed:.1f} s "
                  f"from start to exit, {run.span:.1f} s from the first trial to the last, {run.cpu:.1f} CPU s",
                  flush=True)

    def medians(value: Callable[[Run], float]) -> tuple[float, float]:
        return statistics.median(map(value, runs[1])), statistics.median(map(value, runs[2]))

    print(f"{spec.name} on {label}, median of {repeats}:")
    for what, field in (("start to exit", "elapsed"), ("first trial to last", "span")):
        one, two = medians(lambda run, field=field: run.trials / getattr(run, field) * 60)
        print(f"  trials/min ({what}): 1 worker {one:.1f}, 2 workers {two:.1f} -> {two / one:.2f}x (target >= 1.8x)")
    one, two = medians(lambda run: run.cpu / run.trials * 1e3)
    print(f"  worker CPU per trial: 1 worker {one:.1f} ms, 2 workers {two:.1f} ms -> {two / one:.2f} "
          "(each process's start-up included)")
    one, two = medians(lambda run: run.steps)
    print(f"  optimizer steps trained: 1 worker {one:.0f}, 2 workers {two:.0f} -> {two / one:.2f}")


TRIVIAL_PARAMS = 8
"""Parameters of the trivial objective (log-uniform floats) plus one categorical, about a trial of tuner's."""


def trivial_objective(trial: optuna.Trial) -> float:
    """No work: what is left of a trial's cost is the sampler's and the storage's."""
    total = sum(trial.suggest_float(f"x{i}", 1e-4, 1.0, log=True) for i in range(TRIVIAL_PARAMS))
    return total + (trial.suggest_categorical("kind", ["a", "b"]) == "a")


def per_trial_ms(storage: optuna.storages.BaseStorage, sampler: str, trials: int) -> float:
    """Milliseconds per trial of ``trivial_objective`` with ``sampler`` (seeded), one trial per
    ``optimize`` call as a worker runs them."""
    make = {"random": lambda: optuna.samplers.RandomSampler(seed=0),
            "tpe": lambda: optuna.samplers.TPESampler(seed=0, multivariate=True, constant_liar=True)}[sampler]
    study = optuna.create_study(storage=storage, sampler=make(), study_name=f"trivial-{sampler}-{time.time_ns()}")
    start = time.perf_counter()
    for _ in range(trials):
        study.optimize(trivial_objective, n_trials=1)
    return (time.perf_counter() - start) / trials * 1e3


def trivial(databases: Databases, label: str, trials: int, repeats: int) -> None:
    """Print ms per trial of a trivial objective: tuner's worker storage vs Optuna's stock
    RDBStorage (each with its heartbeat, on a fresh database) vs Optuna's InMemoryStorage."""
    interval, grace = heartbeat_settings()
    kinds = {
        "tuner": lambda url: Store.open(url).optuna,
        "optuna": lambda url: optuna.storages.RDBStorage(url, heartbeat_interval=interval, grace_period=grace),
        "in-memory": lambda url: optuna.storages.InMemoryStorage(),
    }
    print(f"trivial objective ({TRIVIAL_PARAMS + 1} parameters), {trials} trials, ms per trial on {label}, "
          f"median of {repeats}:")
    for sampler in ("random", "tpe"):
        times: dict[str, list[float]] = {kind: [] for kind in kinds}
        for _ in range(repeats):
            for kind, open_storage in kinds.items():
                times[kind].append(per_trial_ms(open_storage(databases.fresh(f"t{sampler}")), sampler, trials))
        median = {kind: statistics.median(t) for kind, t in times.items()}
        print(f"  {sampler:6s}: tuner's storage {median['tuner']:6.2f}   Optuna's stock RDBStorage "
              f"{median['optuna']:6.2f} ({median['optuna'] / median['tuner']:.1f}x tuner's)   "
              f"Optuna in-memory {median['in-memory']:6.2f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default=str(Path(__file__).parent.parent / "studies" / "quickstart.yaml"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--trials", type=int, default=None, help="trials per study (default: the file's)")
    parser.add_argument("--storage", action="append", default=None,
                        help="a server URL to compare besides SQLite (fresh databases on it); may be repeated")
    parser.add_argument("--trivial-trials", type=int, default=200)
    parser.add_argument("--no-scaling", action="store_true", help="skip the 1 vs 2 worker processes part")
    args = parser.parse_args()
    # the tuning budget alone: workers re-evaluate the winners once it is met, which no storage changes
    spec = load_experiment(args.study).model_copy(update={"reevaluate": 0})
    if args.trials:
        spec = spec.model_copy(update={"trials": args.trials})
    quiet_optuna()
    servers = args.storage or []
    with tempfile.TemporaryDirectory() as tmp, threadpool_limits(1):
        places = [Databases(None, tmp)] + [Databases(url, tmp) for url in servers]
        try:
            for databases in places:
                label = "SQLite" if databases.base is None else make_url(databases.base).get_backend_name()
                trivial(databases, label, args.trivial_trials, args.repeats)
            for databases in places:
                label = "SQLite" if databases.base is None else make_url(databases.base).get_backend_name()
                memory = overhead(spec, databases, args.repeats, label)
            if args.no_scaling:
                return
            ceilings = [ceiling(spec, memory, 2) for _ in range(args.repeats)]
            print(f"this machine's ceiling, median of {args.repeats}: 2 processes each running {spec.name} in memory "
                  f"at once, sharing nothing, do {statistics.median(ceilings):.2f}x the work of one alone "
                  f"({', '.join(f'{c:.2f}' for c in ceilings)})", flush=True)
            for databases in places:
                label = "SQLite" if databases.base is None else make_url(databases.base).get_backend_name()
                for workload in (spec, equal_work(spec)):
                    scaling(workload, databases, args.repeats, label)
        finally:
            for databases in places:
                databases.drop_all()


if __name__ == "__main__":
    main()
