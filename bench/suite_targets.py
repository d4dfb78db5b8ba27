"""Propose each task's target for a suite file: a pilot of the suite's own protocol on other seeds.

For every task and optimizer of the suite, the pilot runs what the suite will run, on other seeds:
as many studies (repeats) of as many trials, sampled by the suite's first sampler from the suite's
shared search space, on the task's budget. L_o(f) is the loss (``tuner.suite.target_series``)
optimizer o reaches by fraction f of the budget under the protocol: in each study the lowest value
any of its trials reached at the evaluations up to f, then the median over the studies. The
proposed target is the median over optimizers of L_o(1), rounded up to two significant digits: in
the pilot, the median optimizer and those better reach it within the budget, the others miss it,
so the suite's profiles separate them; L_o(1/4) and L_o(1/2) show how early each gets there.

    python bench/suite_targets.py suites/algoperf_small.yaml [--seed 1]
"""

import argparse
import math
import statistics

import numpy as np
import optuna
from threadpoolctl import threadpool_limits

from tuner.objective import Budget, configure, run_config
from tuner.samplers import make_sampler
from tuner.space import suggest
from tuner.suite import load_suite, target_series
from tuner.tasks import make_task
from tuner.train import RunResult

FRACTIONS = (0.25, 0.5, 1.0)


def lowest_by(result: RunResult, series: str, fraction: float, total_steps: int) -> float:
    """The lowest finite value of ``series`` at the evaluations up to ``fraction`` of the run's steps
    (+inf when there is none)."""
    steps = np.asarray(result.eval_steps)
    values = np.asarray(result.evals.get(series, []), dtype=float)[: len(steps)]
    kept = values[(steps[: len(values)] <= fraction * total_steps) & np.isfinite(values)]
    return float(kept.min()) if len(kept) else math.inf


def round_up(value: float) -> float:
    """``value`` rounded up to two significant digits (0.01234 -> 0.013)."""
    if not math.isfinite(value) or value <= 0:
        return value
    scale = 10.0 ** (math.floor(math.log10(value)) - 1)
    return float(f"{math.ceil(value / scale - 1e-9) * scale:.2g}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("suite_file")
    parser.add_argument("--seed", type=int, default=1, help="the pilot's seeds derive from it (the suite's from 0)")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    suite = load_suite(args.suite_file)
    for spec, entry in zip(suite.experiments(), suite.tasks, strict=True):
        task = make_task(spec.task.name, spec.task.options)
        budget = Budget.of(spec)
        series = target_series(spec.task.name)
        lowest: dict[str, list[float]] = {}
        for index, optimizer in enumerate(spec.optimizers):
            space = spec.search_space(optimizer.name)
            studies = []
            for repeat in range(spec.repeats):
                seed = int(np.random.SeedSequence([args.seed, index, repeat]).generate_state(1)[0])
                study = optuna.create_study(sampler=make_sampler(spec.samplers[0], space, seed, spec.trials))
                trials = []
                for _ in range(spec.trials):
                    trial = study.ask()
                    config = configure(optimizer.name, suggest(trial, space), task, budget)
                    result = run_config(task, config, budget, seed=1000 * args.seed + repeat)
                    total = budget.total_steps(task, config.get("batch_size", 1))
                    trials.append([lowest_by(result, series, f, total) for f in FRACTIONS])
                    study.tell(trial, min(trials[-1][-1], 1e300))
                studies.append([min(trial[i] for trial in trials) for i in range(len(FRACTIONS))])
            lowest[optimizer.name] = [statistics.median(study[i] for study in studies) for i in range(len(FRACTIONS))]
        proposed = round_up(statistics.median(values[-1] for values in lowest.values()))
        print(f"\n{entry.name} ({spec.task.name}, {series}; target now {entry.target:g}, proposed {proposed:g})")
        print(f"  {'optimizer':10}" + "".join(f"{f'L({f:g})':>12}" for f in FRACTIONS))
        for name, values in sorted(lowest.items(), key=lambda item: item[1][-1]):
            print(f"  {name:10}" + "".join(f"{v:12.4g}" for v in values))


if __name__ == "__main__":
    with threadpool_limits(1):
        main()
