"""The sampler and pruner registry: every name builds, with the documented settings."""

import optuna
import pytest

from tests.helpers import TINY
from tuner.samplers import PRUNERS, SAMPLERS, make_pruner, make_sampler
from tuner.spec import parse_experiment

SPEC = parse_experiment({**TINY, "optimizers": ["momentum"], "samplers": list(SAMPLERS),
                         "space": {"schedule": "constant"}, "pruner": "median"})


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_every_registered_sampler_builds_and_suggests(name: str) -> None:
    spec = next(s for s in SPEC.samplers if s.name == name)
    space = SPEC.search_space("momentum")
    sampler = make_sampler(spec, space, seed=0, n_trials=20)
    study = optuna.create_study(sampler=sampler)
    trial = study.ask()
    assert 1e-4 <= trial.suggest_float("lr", 1e-4, 1.0, log=True) <= 1.0


@pytest.mark.parametrize(("name", "n_trials", "startup"), [
    ("tpe", 5, 3), ("tpe", 30, 6), ("tpe", 500, 10), ("cmaes", 5, 1), ("cmaes", 30, 3), ("cmaes", 500, 5),
])
def test_random_start_up_grows_with_the_budget_within_bounds(name: str, n_trials: int, startup: int) -> None:
    spec = next(s for s in SPEC.samplers if s.name == name)
    sampler = make_sampler(spec, SPEC.search_space("momentum"), seed=0, n_trials=n_trials)
    assert sampler._n_startup_trials == startup


def test_only_storage_coordinated_samplers_share_a_seed_across_workers() -> None:
    assert {name for name, entry in SAMPLERS.items() if entry.shared_seed} == {"qmc", "grid"}


def test_pruners_are_sized_to_the_budget() -> None:
    assert set(PRUNERS) == {"none", "median", "hyperband"}
    median = make_pruner(SPEC)
    assert (median._n_startup_trials, median._n_warmup_steps) == (5, 1)
    hyperband = make_pruner(SPEC.model_copy(update={"pruner": "hyperband"}))
    assert (hyperband._min_resource, hyperband._max_resource, hyperband._reduction_factor) == (1, SPEC.evaluations, 3)
    assert isinstance(make_pruner(SPEC.model_copy(update={"pruner": "none"})), optuna.pruners.NopPruner)
