"""Every sampler through tuner's storage suggests exactly what it suggests through Optuna's own.

The oracle is Optuna itself: an experiment with every sampler is launched with one worker (the
``tuner launch`` command on SQLite, PostgreSQL and MariaDB; a worker on the in-memory store);
then each study is replayed on Optuna's stock storages (``InMemoryStorage`` and ``RDBStorage``)
with the same sampler, seed and search space, each trial ending as it ended in tuner (the same
objective value, or pruned). The parameters suggested must be identical, trial by trial.
"""

import statistics

import optuna
import pytest
import yaml

from tests.helpers import tuner
from tuner.populations import POPULATION_ATTR, generation_size
from tuner.samplers import make_sampler
from tuner.space import suggest
from tuner.spec import parse_experiment
from tuner.storage import queries
from tuner.storage.store import Store
from tuner.worker import create_experiment, quiet_optuna, run_worker, sampler_seed

pytestmark = [pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning",
                                         "ignore::UserWarning")]

EVERY_SAMPLER = {
    "name": "oracle",
    "task": {"name": "quadratic", "options": {"dim": 10, "condition_number": 20}},
    "optimizers": [{"name": "momentum", "space": {"lr": {"low": 1e-3, "high": 0.5}, "schedule": "constant"}},
                   {"name": "adam", "space": {"lr": {"low": 1e-3, "high": 1.0}, "eps": None,
                                              "schedule": "cosine"}}],
    "samplers": ["random", "tpe", "cmaes", "qmc", {"name": "grid", "grid_points": 3}],
    "trials": 10,
    "budget": {"steps": 60, "eval_every": 20},
    "objective": "final_train_loss",
    "reevaluate": 1,
}


def populations(trials: list[optuna.trial.FrozenTrial]) -> list[list[optuna.trial.FrozenTrial]]:
    """The trials in the groups a worker ran them (``POPULATION_ATTR``); a lone trial is a group of one."""
    groups: list[list[optuna.trial.FrozenTrial]] = []
    for trial in trials:
        population = trial.user_attrs.get(POPULATION_ATTR)
        if groups and population is not None and population == groups[-1][0].user_attrs.get(POPULATION_ATTR):
            groups[-1].append(trial)
        else:
            groups.append([trial])
    return groups


def replay(study: optuna.Study, row, spec, storage: optuna.storages.BaseStorage) -> list[dict]:
    """The parameters the same sampler suggests on ``storage`` when each trial ends as in ``study``,
    asked as the worker asked them: one at a time, or a population's trials together (each sampled
    before the next is asked), then told in order."""
    sampler_spec = next(s for s in spec.samplers if s.name == row.sampler)
    space = spec.search_space(row.optimizer)
    oracle = optuna.create_study(storage=storage, study_name=row.study_name, sampler=make_sampler(
        sampler_spec, space, sampler_seed(spec, row, sampler_spec, 0), row.n_trials, generation_size(spec, space)))
    for group in populations([t for t in study.trials if t.state.is_finished()]):
        asked = []
        for _ in group:
            asked.append(oracle.ask())
            suggest(asked[-1], space)
        for trial, original in zip(asked, group, strict=True):
            for step, value in original.intermediate_values.items():
                trial.report(value, step)
            if original.state == optuna.trial.TrialState.PRUNED:
                oracle.tell(trial, state=optuna.trial.TrialState.PRUNED)
            else:
                oracle.tell(trial, original.value)
    return [t.params for t in oracle.trials]


def check_against_optuna(storage: optuna.storages.BaseStorage, engine, spec, tmp_path) -> None:
    experiment_id, _ = queries.experiment(engine, spec.name)
    rows = queries.studies(engine, experiment_id)
    assert {row.sampler for row in rows} == {"random", "tpe", "cmaes", "qmc", "grid"}
    for row in rows:
        study = optuna.load_study(study_name=row.study_name, storage=storage)
        states = [t.state for t in study.trials]
        assert len(states) >= row.n_trials and all(s.is_finished() for s in states), (row.study_name, states)
        ours = [t.params for t in study.trials]
        assert replay(study, row, spec, optuna.storages.InMemoryStorage()) == ours, row.study_name
        stock = optuna.storages.RDBStorage(f"sqlite:///{tmp_path}/stock-{row.id}.db")
        assert replay(study, row, spec, stock) == ours, row.study_name
        stock.engine.dispose()


@pytest.mark.e2e
def test_every_sampler_launched_on_a_database_suggests_what_optuna_suggests(database, tmp_path) -> None:
    quiet_optuna()
    study_file = tmp_path / "oracle.yaml"
    study_file.write_text(yaml.safe_dump(EVERY_SAMPLER))
    result = tuner("launch", str(study_file), "--workers", "1", "--storage", database, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    store = Store.open(database)
    try:
        check_against_optuna(store.optuna, store.engine, parse_experiment(EVERY_SAMPLER), tmp_path)
    finally:
        store.close()


def test_every_sampler_in_memory_suggests_what_optuna_suggests(tmp_path) -> None:
    quiet_optuna()
    spec = parse_experiment(EVERY_SAMPLER)
    store = Store.memory()
    create_experiment(store, spec)
    assert run_worker(store, spec.name) >= 10 * 10
    check_against_optuna(store.optuna, store.engine, spec, tmp_path)


ADAPTIVE = {
    "name": "adapts",
    "task": {"name": "quadratic", "options": {"dim": 10, "condition_number": 10}},
    "optimizers": [{"name": "momentum", "space": {"lr": {"low": 1e-4, "high": 0.2}, "schedule": "constant"}}],
    "samplers": ["random", "tpe", "cmaes"],
    "trials": 60,
    "budget": {"steps": 40, "eval_every": 40},
    "objective": "final_train_loss",
    "reevaluate": 0,
}


def test_tpe_and_cma_es_adapt_through_tuner_s_storage(tmp_path) -> None:
    """Later trials concentrate where the objective is low; CMA-ES moves through its generations
    (through the old worker storage it stayed in generation 0 and sampled like random search)."""
    quiet_optuna()
    spec = parse_experiment(ADAPTIVE)
    store = Store.open(f"sqlite:///{tmp_path}/adapts.db")
    create_experiment(store, spec)
    run_worker(store, spec.name)
    experiment_id, _ = queries.experiment(store.engine, spec.name)
    late_median = {}
    for row in queries.studies(store.engine, experiment_id):
        trials = optuna.load_study(study_name=row.study_name, storage=store.optuna).trials
        values = [t.value if t.value is not None else float("inf") for t in trials]
        first, last = values[:20], values[-20:]
        late_median[row.sampler] = statistics.median(last)
        if row.sampler != "random":
            assert statistics.median(last) < statistics.median(first) / 10, (row.sampler, first, last)
        if row.sampler == "cmaes":
            generations = {v for t in trials for k, v in t.system_attrs.items() if k.endswith("generation")}
            assert max(generations) >= 3, generations
    assert late_median["tpe"] < late_median["random"] and late_median["cmaes"] < late_median["random"]
    store.close()
