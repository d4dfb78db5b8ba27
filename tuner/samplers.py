"""Optuna's samplers and pruners by name, with tuner's settings: the one list of both.

The study file's ``samplers`` and ``pruner`` names, the workers' samplers and pruners and the
dashboard's sampler colours all derive from ``SAMPLERS`` and ``PRUNERS``. Settings that
depend on the budget are named below with the reason for each value.

Optuna is imported when a sampler or pruner is built (``_optuna``), not with the names: the
study file's validation and the reading commands do not pay for it.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING

from tuner.params import Param
from tuner.space import grid_space

if TYPE_CHECKING:
    import optuna

    from tuner.spec import Experiment, SamplerSpec

BASELINE = "random"
"""The sampler every other one is compared against (the dashboard's Samplers page)."""

TPE_STARTUP_PER_TRIALS = 5
TPE_STARTUP_MIN, TPE_STARTUP_MAX = 3, 10
"""TPE samples at random for one trial in every TPE_STARTUP_PER_TRIALS of the budget, at least 3
(its density estimates need a few points above and below the split) and at most 10 (Optuna's
default: more only delays the model on large budgets)."""
CMAES_STARTUP_PER_TRIALS = 10
CMAES_STARTUP_MIN, CMAES_STARTUP_MAX = 1, 5
"""CMA-ES starts from one random trial in every CMAES_STARTUP_PER_TRIALS, at least 1 and at most 5:
it adapts its own distribution from the first generation, so a short random start suffices."""
MEDIAN_STARTUP_TRIALS = 5
"""The median pruner prunes nothing until 5 trials of the study have finished: a median of
fewer is too noisy to stop a run on."""
MEDIAN_WARMUP_STEPS = 1
"""...nor at a trial's first evaluation (step 1): early losses say little about the final one."""
HYPERBAND_MIN_RESOURCE = 1
"""Hyperband's smallest rung is one evaluation; its largest is the budget's number of evaluations."""
HYPERBAND_REDUCTION_FACTOR = 3
"""Hyperband keeps the best third of the trials at each rung (Li et al.'s default eta = 3)."""


def _optuna() -> ModuleType:
    """Optuna, imported on the first sampler or pruner built."""
    import optuna

    return optuna


def startup_trials(n_trials: int, per: int, low: int, high: int) -> int:
    """One start-up trial per ``per`` trials of the budget, clipped to ``[low, high]``."""
    return min(high, max(low, n_trials // per))


@dataclass(frozen=True)
class SamplerEntry:
    """A registered sampler: ``factory(spec, space, seed, n_trials, population)`` builds it for one
    study whose trials are asked ``population`` at a time (None: one at a time; CMA-ES makes it its
    population size, so that a population is one generation).
    ``shared_seed``: every worker of a study uses the same seed, because the sampler coordinates
    the workers through the storage (QMC's sequence index, the grid's cells) instead of drawing
    independently. ``independent``: each trial is drawn alone, from the same distribution, whatever
    the others gave, so a study's trials are a sample of what one random trial gives (what the
    expected best of k trials, ``tuner.tunability``, is computed from)."""

    factory: Callable[[SamplerSpec, list[Param], int, int, int | None], optuna.samplers.BaseSampler]
    description: str
    shared_seed: bool = False
    independent: bool = False


SAMPLERS: dict[str, SamplerEntry] = {
    "random": SamplerEntry(
        lambda spec, space, seed, n_trials, population: _optuna().samplers.RandomSampler(seed=seed),
        "uniform random search (on each parameter's scale): the baseline", independent=True),
    "tpe": SamplerEntry(
        lambda spec, space, seed, n_trials, population: _optuna().samplers.TPESampler(
            seed=seed, multivariate=True, group=True, constant_liar=True,
            n_startup_trials=startup_trials(n_trials, TPE_STARTUP_PER_TRIALS, TPE_STARTUP_MIN, TPE_STARTUP_MAX)),
        "multivariate tree-structured Parzen estimator; constant liar for parallel workers"),
    "cmaes": SamplerEntry(
        lambda spec, space, seed, n_trials, population: _optuna().samplers.CmaEsSampler(
            seed=seed, warn_independent_sampling=False, popsize=population,
            n_startup_trials=startup_trials(n_trials, CMAES_STARTUP_PER_TRIALS, CMAES_STARTUP_MIN,
                                            CMAES_STARTUP_MAX)),
        "CMA-ES on the continuous parameters; categorical ones are sampled at random"),
    "qmc": SamplerEntry(
        lambda spec, space, seed, n_trials, population: _optuna().samplers.QMCSampler(
            seed=seed, scramble=True, warn_independent_sampling=False),
        "scrambled Sobol sequence: random search with an even cover", shared_seed=True),
    "grid": SamplerEntry(
        lambda spec, space, seed, n_trials, population: _budgeted_grid()(
            grid_space(space, spec.grid_points), seed=seed),
        "grid_points values per searched parameter, in random order", shared_seed=True),
}


def _budgeted_grid() -> type:
    """Optuna's GridSampler, without its ``after_trial``: that only stops ``study.optimize`` once
    every cell is visited (and raises outside it, where a population tells its trials); tuner's
    workers end a study at its budget."""

    class BudgetedGridSampler(_optuna().samplers.GridSampler):
        def after_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial, state: optuna.trial.TrialState,
                        values: object) -> None:
            pass

    return BudgetedGridSampler


@dataclass(frozen=True)
class PrunerEntry:
    """A registered pruner: ``factory(evaluations)`` builds it for a budget of that many evaluations."""

    factory: Callable[[int], optuna.pruners.BasePruner]
    description: str


PRUNERS: dict[str, PrunerEntry] = {
    "none": PrunerEntry(lambda evaluations: _optuna().pruners.NopPruner(), "every trial runs its full budget"),
    "median": PrunerEntry(
        lambda evaluations: _optuna().pruners.MedianPruner(n_startup_trials=MEDIAN_STARTUP_TRIALS,
                                                           n_warmup_steps=MEDIAN_WARMUP_STEPS),
        "stop a trial whose loss is worse than the median of earlier trials at the same evaluation"),
    "hyperband": PrunerEntry(
        lambda evaluations: _optuna().pruners.HyperbandPruner(min_resource=HYPERBAND_MIN_RESOURCE,
                                                              max_resource=evaluations,
                                                              reduction_factor=HYPERBAND_REDUCTION_FACTOR),
        "successive halving in several brackets, from 1 evaluation to the full budget"),
}


def cma_popsize(space: list[Param]) -> int:
    """CMA-ES's usual population size, 4 + floor(3 ln n), for the n searched numeric parameters
    that are always sampled (the ones CMA-ES searches)."""
    numeric = sum(1 for p in space if p.searched and p.choices is None and p.schedule is None)
    return 4 + math.floor(3 * math.log(max(numeric, 1)))


def make_sampler(spec: SamplerSpec, space: list[Param], seed: int, n_trials: int,
                 population: int | None = None) -> optuna.samplers.BaseSampler:
    """Optuna's sampler for ``spec`` on ``space``, for a study of ``n_trials`` trials asked
    ``population`` at a time (None: one at a time)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", _optuna().exceptions.ExperimentalWarning)
        return SAMPLERS[spec.name].factory(spec, space, seed, n_trials, population)


def make_pruner(spec: Experiment) -> optuna.pruners.BasePruner:
    """Optuna's pruner for the experiment, sized to its number of evaluations per run."""
    return PRUNERS[spec.pruner].factory(spec.evaluations)
