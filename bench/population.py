"""What populations buy: end-to-end trials per second, population vs one trial at a time vs plain Optuna.

1. End to end (sampling + training + storage, one worker in this process, a fresh SQLite file per
   run, no re-evaluation): ``population: auto`` vs ``population: 1`` (today's one-trial path) on
   the same study file, and plain Optuna (its InMemoryStorage, ``study.optimize`` on tuner's own
   lone training of the same configurations). On the kappa=100 quadratic (dim 50, 300 steps),
   Rosenbrock (dim 20, 300 steps) and logistic regression (breast cancer, 10 epochs), with random
   search and CMA-ES; TPE separately (its own proposal cost bounds it). CMA-ES and TPE run
   ADAPTIVE_TRIALS trials on every path (their cost per trial grows with the study). Targets: population >= 20x
   the one-trial path on the synthetic tasks (>= 2,000 trials/s on the quadratic), >= 5x on
   logistic regression.
   Then both cores as a user runs them: ``tuner launch --workers 2`` (worker processes) of
   BOTH_CORES_TRIALS quadratic trials (adam and momentum, one study each), population vs one
   trial at a time: trials per second from the command to its end, and between the first and
   the last stored run (the workers' steady state, without start-up and the final report).
2. The digits MLP of the quickstart (64-128-10, float32, 40 epochs, its search space with one
   batch size): trials per minute in populations vs one at a time (target >= 2x), and the share of
   the machine's single-thread GEMM peak (a large float32 matrix product) that training reaches,
   counting 6 flops per weight and example per step (forward 2, backward 4).

Each number is the median of --repeats runs; ratios are of medians measured in this one run.

    python bench/population.py [--repeats 3] [--quick]
"""

import argparse
import io
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import yaml
from rich.console import Console
from sqlalchemy import func, select
from threadpoolctl import threadpool_limits

from tuner.launch import launch
from tuner.objective import Budget, configure, run_config, summarize
from tuner.optim import make_optimizer
from tuner.optim.population import stack
from tuner.samplers import make_sampler
from tuner.space import suggest
from tuner.spec import Experiment, parse_experiment
from tuner.storage import schema
from tuner.storage.store import Store
from tuner.tasks import make_task
from tuner.worker import create_experiment, quiet_optuna, run_worker

REPO = Path(__file__).resolve().parent.parent
TASKS = {
    "quadratic": ({"name": "quadratic", "options": {"dim": 50, "condition_number": 100}},
                  {"steps": 300, "eval_every": 50}, "final_train_loss"),
    "rosenbrock": ({"name": "rosenbrock", "options": {"dim": 20}}, {"steps": 300, "eval_every": 50},
                   "final_train_loss"),
    "logistic": ({"name": "logistic"}, {"epochs": 10}, "final_val_loss"),
}
# trials per measured run: enough for the population path to run several populations. Random search
# costs the same per trial at any study size; CMA-ES and TPE read every trial at every proposal (their
# cost per trial grows with the study), so all three paths run the same number of trials with them.
TRIALS = {"population": {"quadratic": 6000, "rosenbrock": 6000, "logistic": 600},
          "one": {"quadratic": 150, "rosenbrock": 150, "logistic": 60},
          "optuna": {"quadratic": 150, "rosenbrock": 150, "logistic": 60}}
ADAPTIVE_TRIALS = 300
BOTH_CORES_TRIALS = {"auto": 20_000, 1: 600}


def study_file(task: str, sampler: str, trials: int, population: Any) -> Experiment:
    spec, budget, objective = TASKS[task]
    data = {"name": f"bench-{task}-{sampler}", "task": spec, "optimizers": ["adam"], "samplers": [sampler],
            "trials": trials, "budget": budget, "objective": objective, "reevaluate": 0,
            "population": population}
    if task == "logistic":
        data["space"] = {"batch_size": 32}
    return parse_experiment(data)


def tuner_rate(spec: Experiment) -> float:
    """Trials per second of one in-process worker running the whole study on a fresh SQLite file."""
    with tempfile.TemporaryDirectory() as directory:
        store = Store.open(f"sqlite:///{directory}/bench.db")
        create_experiment(store, spec)
        start = time.perf_counter()
        ran = run_worker(store, spec.name)
        seconds = time.perf_counter() - start
        store.close()
    return ran / seconds


def optuna_rate(spec: Experiment) -> float:
    """Trials per second of plain Optuna (InMemoryStorage) on tuner's lone training of each trial."""
    task = make_task(spec.task.name, spec.task.options)
    space = spec.search_space("adam")
    budget = Budget.of(spec)
    study = optuna.create_study(sampler=make_sampler(spec.samplers[0], space, 0, spec.trials))

    def objective(trial: optuna.Trial) -> float:
        config = configure("adam", suggest(trial, space), task, budget)
        record = summarize(spec, task, run_config(task, config, budget, 0), config, 0, "trial")
        if record.objective is None:
            raise optuna.TrialPruned()
        return record.objective

    start = time.perf_counter()
    study.optimize(objective, n_trials=spec.trials)
    return spec.trials / (time.perf_counter() - start)


def median_rate(measure, spec: Experiment, repeats: int) -> float:
    return statistics.median(measure(spec) for _ in range(repeats))


def end_to_end(repeats: int, scale: float, samplers: list[str]) -> None:
    print(f"1. end-to-end trials per second (median of {repeats}; one worker, SQLite)")
    print(f"{'task':<11}{'sampler':<8}{'population':>12}{'one-trial':>11}{'optuna':>9}{'pop/one':>9}{'pop/optuna':>11}")
    for spec, _, _ in TASKS.values():  # each data set and sampler loaded once first, as a worker has them
        make_task(spec["name"], spec.get("options", {}))
    for sampler in samplers:
        spec = study_file("quadratic", sampler, 10, 1)
        make_sampler(spec.samplers[0], spec.search_space("adam"), 0, 10)
    for sampler in samplers:
        for task in TASKS:
            def count(path: str, _task: str = task, _sampler: str = sampler) -> int:
                trials = TRIALS[path][_task] if _sampler == "random" else ADAPTIVE_TRIALS
                return max(10, int(trials * scale))
            population = median_rate(tuner_rate, study_file(task, sampler, count("population"), "auto"), repeats)
            one = median_rate(tuner_rate, study_file(task, sampler, count("one"), 1), repeats)
            plain = median_rate(optuna_rate, study_file(task, sampler, count("optuna"), 1), repeats)
            print(f"{task:<11}{sampler:<8}{population:>12.0f}{one:>11.1f}{plain:>9.1f}"
                  f"{population / one:>8.1f}x{population / plain:>10.1f}x", flush=True)


def launched_rate(trials: int, population: Any) -> tuple[float, float]:
    """``tuner launch --workers 2`` of the quadratic with adam and momentum (``trials`` in all, half
    per study) on a fresh SQLite file: trials per second over the whole command, and between the
    first and the last stored run."""
    spec, budget, objective = TASKS["quadratic"]
    experiment = parse_experiment({
        "name": "bench-both-cores", "task": spec, "optimizers": ["adam", "momentum"], "samplers": ["random"],
        "trials": trials // 2, "budget": budget, "objective": objective, "reevaluate": 0, "population": population})
    with tempfile.TemporaryDirectory() as directory:
        url = f"sqlite:///{directory}/bench.db"
        start = time.perf_counter()
        outcome = launch(experiment, url, 2, Console(file=io.StringIO()))
        seconds = time.perf_counter() - start
        if outcome != "done":
            raise RuntimeError(f"the launch ended {outcome}")
        store = Store.open(url)
        with store.engine.connect() as conn:
            first, last, runs = conn.execute(select(func.min(schema.runs.c.created_at), func.max(
                schema.runs.c.created_at), func.count())).one()
        store.close()
    return runs / seconds, (runs - 1) / max((last - first).total_seconds(), 1e-9)


def both_cores(repeats: int, scale: float) -> None:
    print(f"\nboth cores: tuner launch --workers 2, quadratic, adam + momentum, random search (median of {repeats})")
    print(f"{'path':<12}{'trials':>8}{'command':>10}{'steady':>9}")
    rates = {}
    for population, trials in BOTH_CORES_TRIALS.items():
        trials = max(40, int(trials * scale))
        measured = [launched_rate(trials, population) for _ in range(repeats)]
        rates[population] = [statistics.median(m[i] for m in measured) for i in (0, 1)]
        print(f"{'population' if population == 'auto' else 'one-trial':<12}{trials:>8}{rates[population][0]:>10.0f}"
              f"{rates[population][1]:>9.0f}", flush=True)
    print(f"population / one-trial: {rates['auto'][0] / rates[1][0]:.1f}x over the command, "
          f"{rates['auto'][1] / rates[1][1]:.1f}x steady")


def gemm_peak(seconds: float = 2.0) -> float:
    """Single-thread float32 GEMM flops per second on 1024 x 1024 matrices (median of repeats)."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((1024, 1024), dtype=np.float32) for _ in range(2))
    out = np.empty_like(a)
    rates, end = [], time.perf_counter() + seconds
    while time.perf_counter() < end:
        start = time.perf_counter()
        np.matmul(a, b, out=out)
        rates.append(2 * 1024**3 / (time.perf_counter() - start))
    return statistics.median(rates)


def mlp(repeats: int, scale: float) -> None:
    data = yaml.safe_load((REPO / "studies" / "quickstart.yaml").read_text())
    weights = 64 * 128 + 128 * 10
    task = make_task("mlp", data["task"]["options"])
    samples = task.samples_per_epoch(32)
    print(f"\n2. the quickstart's MLP (adam, random search, batch 32, 40 epochs; median of {repeats})")
    rates = {}
    for population, trials in (("auto", max(8, int(64 * scale))), (1, max(4, int(12 * scale)))):
        spec = parse_experiment({**data, "name": "bench-mlp", "optimizers": ["adam"], "samplers": ["random"],
                                 "trials": trials, "population": population, "reevaluate": 0,
                                 "space": {**data["space"], "batch_size": 32}})
        rates[population] = median_rate(tuner_rate, spec, repeats) * 60
    peak = gemm_peak()
    flops = {key: rate / 60 * 40 * samples * weights * 6 for key, rate in rates.items()}
    print(f"trials/min: population {rates['auto']:.0f}, one at a time {rates[1]:.0f}: "
          f"{rates['auto'] / rates[1]:.1f}x")
    print(f"GEMM peak (1 thread, float32 1024^3): {peak / 1e9:.1f} GFLOP/s; training reaches "
          f"{flops['auto'] / 1e9:.1f} GFLOP/s in populations ({flops['auto'] / peak:.0%}), "
          f"{flops[1] / 1e9:.1f} GFLOP/s one at a time ({flops[1] / peak:.0%})")
    mlp_step(task, peak)


def mlp_step(task: Any, peak: float, members: int = 64) -> None:
    """Where a population's training step goes: the step (batched loss and gradient, then Adam's
    update) against its five matrix products alone, at the shapes the step multiplies."""
    def best_of(run: Any) -> float:
        run()
        return min(timed(run) for _ in range(50))

    def timed(run: Any) -> float:
        start = time.perf_counter()
        run()
        return time.perf_counter() - start

    rng = np.random.default_rng(0)
    dtype = task.dtype
    params = np.repeat(task.init_params(0)[None, :], members, axis=0)
    grad, losses = np.empty_like(params), np.empty(members)
    batch = next(task.batches(32, np.random.default_rng(1)))
    optimizer = stack([make_optimizer("adam", betas=(0.9, float(b))) for b in rng.uniform(0.99, 0.999, members)])
    state, lr = optimizer.init(params), np.full((members, 1), 1e-3)
    gradient = best_of(lambda: task.loss_and_grad_many(params, batch, grad, losses))
    update = best_of(lambda: optimizer.update(params, grad, lr, state))
    x = batch[0]
    w1, w2 = ((rng.standard_normal((members, i, o)) / np.sqrt(i)).astype(dtype) for i, o in ((64, 128), (128, 10)))
    z1, z2 = np.empty((members, 32, 128), dtype), np.empty((members, 32, 10), dtype)
    g1, g2, d1 = np.empty_like(w1), np.empty_like(w2), np.empty_like(z1)  # no product overwrites another's input
    products = best_of(lambda: (np.matmul(x, w1, out=z1), np.matmul(z1, w2, out=z2),
                                np.matmul(x.T, z1, out=g1), np.matmul(np.swapaxes(z1, -1, -2), z2, out=g2),
                                np.matmul(z2, np.swapaxes(w2, -1, -2), out=d1)))
    flops = 2 * members * 32 * (3 * 128 * 10 + 2 * 64 * 128)  # forward 2, weight gradients 2, one input gradient
    step = gradient + update
    print(f"a step of {members} members: {step * 1e3:.2f} ms; its 5 matrix products alone {products * 1e3:.2f} ms "
          f"({products / step:.0%}; {flops / products / 1e9:.0f} GFLOP/s, {flops / products / peak:.0%} of the peak), "
          f"Adam's update {update * 1e3:.2f} ms ({update / step:.0%}), the rest of the gradient "
          f"(bias, ReLU, softmax) {(gradient - products) * 1e3:.2f} ms. 50% of the peak by 6 flops per weight and "
          f"example needs the step in {6 * members * 32 * (64 * 128 + 128 * 10) / (0.5 * peak) * 1e3:.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="a tenth of the trials, one repeat: a smoke run")
    args = parser.parse_args()
    repeats, scale = (1, 0.1) if args.quick else (args.repeats, 1.0)
    quiet_optuna()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    with threadpool_limits(limits=1):  # as a worker runs
        end_to_end(repeats, scale, ["random", "cmaes"])
        both_cores(repeats, scale)
        print("\nTPE (its proposals cost what they cost at any population size):")
        end_to_end(repeats, scale, ["tpe"])
        mlp(repeats, scale)


if __name__ == "__main__":
    main()
