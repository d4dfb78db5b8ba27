"""Studies run in populations: the same trials as one at a time, written in one transaction each
way, readable by Optuna's own storage, on SQLite, PostgreSQL and MariaDB."""

import numpy as np
import optuna
import pytest
from optuna.storages import RDBStorage
from sqlalchemy import event

from tests.helpers import check_consistent, expected_best
from tuner.populations import POPULATION_ATTR
from tuner.spec import parse_experiment
from tuner.storage import queries
from tuner.storage.store import Store
from tuner.worker import create_experiment, quiet_optuna, run_worker

QUADRATIC = {
    "task": {"name": "quadratic", "options": {"dim": 10, "noise": 0.05}},
    "optimizers": ["sgd", "adam"],
    "samplers": ["random"],
    "trials": 24,
    "budget": {"steps": 60, "eval_every": 10},
    "objective": "final_train_loss",
    "reevaluate": 1,
}


def launch(url: str, name: str, **changes) -> Store:
    quiet_optuna()
    store = Store.open(url)
    create_experiment(store, parse_experiment({**QUADRATIC, "name": name, **changes}))
    run_worker(store, name)
    return store


def trials_by_study(url: str, store: Store, name: str) -> dict[str, list[optuna.trial.FrozenTrial]]:
    """Each study's trials as Optuna's own storage reads them (by optimizer and sampler)."""
    stock = RDBStorage(url)
    experiment_id, _ = queries.experiment(store.engine, name)
    return {f"{row.optimizer}/{row.sampler}": optuna.load_study(study_name=row.study_name, storage=stock).trials
            for row in queries.studies(store.engine, experiment_id)}


def test_auto_gives_the_same_trials_as_one_at_a_time(database) -> None:
    """Random search: same suggestions, same objectives (1e-12), same best configurations."""
    one = launch(database, "one at a time", population=1)
    many = launch(database, "in populations", population="auto")
    alone, together = trials_by_study(database, one, "one at a time"), trials_by_study(database, many, "in populations")
    assert alone.keys() == together.keys()
    for study, trials in alone.items():
        assert len(trials) == len(together[study]) == QUADRATIC["trials"]
        for a, b in zip(trials, together[study], strict=True):
            assert a.number == b.number and a.state == b.state, study
            assert a.params == b.params, study
            if a.value is not None:
                np.testing.assert_allclose(b.value, a.value, rtol=1e-12)
            assert a.user_attrs == {k: v for k, v in b.user_attrs.items() if k != POPULATION_ATTR}
    best_one, best_many = _best(one, "one at a time"), _best(many, "in populations")
    assert {k: v["params"] for k, v in best_one.items()} == {k: v["params"] for k, v in best_many.items()}
    for slot, row in best_one.items():
        np.testing.assert_allclose(best_many[slot]["trial_objective"], row["trial_objective"], rtol=1e-12)
    for store, name in ((one, "one at a time"), (many, "in populations")):
        check_consistent(store.engine, name)
        assert {(r["optimizer"], r["sampler"]): r["run_id"] for r in queries.best_configs(store.engine, name)} == \
            expected_best(store.engine, name)
        store.close()


def _best(store: Store, name: str) -> dict:
    return {(r["optimizer"], r["sampler"]): r for r in queries.best_configs(store.engine, name)}


def population_commits(tmp_path, size: int) -> int:
    """The transactions a worker commits to run one study of ``size`` trials as one population."""
    url = f"sqlite:///{tmp_path}/t{size}.db"
    quiet_optuna()
    store = Store.open(url)
    spec = parse_experiment({**QUADRATIC, "name": "count", "optimizers": ["adam"], "trials": size,
                             "population": size, "reevaluate": 0})
    create_experiment(store, spec)
    commits = []
    event.listen(store.engine, "commit", lambda conn: commits.append(1))
    assert run_worker(store, "count", max_trials=size) == size
    check_consistent(store.engine, "count")
    store.close()
    return len(commits)


def test_a_population_is_created_and_finished_in_a_fixed_number_of_transactions(tmp_path) -> None:
    """The writes of a population do not grow with its size: one transaction reserves its trials,
    one writes their parameters, one finishes them (states, values, runs, curves)."""
    assert population_commits(tmp_path, 4) == population_commits(tmp_path, 64)


def test_pruned_and_diverged_members_are_told_as_lone_trials_are(tmp_path) -> None:
    url = f"sqlite:///{tmp_path}/p.db"
    store = launch(url, "pruned", optimizers=["sgd"], trials=40, pruner="median",
                   space={"lr": {"low": 1e-4, "high": 10.0}})
    trials = trials_by_study(url, store, "pruned")["sgd/random"]
    states = {t.state.name for t in trials}
    assert states == {"COMPLETE", "PRUNED"}
    diverged = [t for t in trials if "diverged_at" in t.user_attrs]
    assert diverged and all(t.state.name == "PRUNED" for t in diverged)
    pruned = [t for t in trials if t.state.name == "PRUNED" and "diverged_at" not in t.user_attrs]
    assert pruned and all(t.intermediate_values for t in pruned)
    check_consistent(store.engine, "pruned")
    store.close()


def test_cmaes_trains_one_generation_per_population(tmp_path) -> None:
    url = f"sqlite:///{tmp_path}/c.db"
    store = launch(url, "cma", optimizers=["adam"], samplers=["cmaes"], trials=30, population=6, reevaluate=0)
    trials = trials_by_study(url, store, "cma")["adam/cmaes"]
    generations: dict[int, list[int]] = {}
    for t in trials:
        generation = next((v for k, v in t.system_attrs.items() if k.endswith(":generation")), None)
        if generation is not None:
            generations.setdefault(generation, []).append(t.number)
    assert len(generations) >= 2, "CMA-ES never left its start-up trials"
    for numbers in generations.values():  # one population, asked together: consecutive numbers
        assert len(numbers) == 6 and numbers == list(range(numbers[0], numbers[0] + 6)), generations
    check_consistent(store.engine, "cma")
    store.close()


def test_tpe_proposes_a_population_with_its_constant_liar(tmp_path) -> None:
    url = f"sqlite:///{tmp_path}/tpe.db"
    store = launch(url, "tpe", optimizers=["adam"], samplers=["tpe"], trials=30, reevaluate=0)
    trials = trials_by_study(url, store, "tpe")["adam/tpe"]
    assert len({tuple(sorted(t.params.items())) for t in trials}) == len(trials) == 30
    check_consistent(store.engine, "tpe")
    store.close()


def test_an_experiment_stored_before_populations_resumes_one_trial_at_a_time(tmp_path) -> None:
    """Its stored study file has no ``population``: it reads as 1, a file that does not set it
    resumes it so (TPE and CMA-ES propose as before), one that sets another is refused."""
    from sqlalchemy import update

    from tuner.errors import ConfigError
    from tuner.storage import schema

    url = f"sqlite:///{tmp_path}/old.db"
    quiet_optuna()
    store = Store.open(url)
    data = {**QUADRATIC, "name": "old", "optimizers": ["adam"], "trials": 6, "reevaluate": 0}
    create_experiment(store, parse_experiment(data))
    stored = queries.experiment(store.engine, "old")[1]
    del stored["population"]
    with store.engine.begin() as conn:
        conn.execute(update(schema.experiments).where(schema.experiments.c.name == "old").values(spec=stored))
    create_experiment(store, parse_experiment(data))  # the same file: resumed
    with pytest.raises(ConfigError, match="changed: population"):
        create_experiment(store, parse_experiment({**data, "population": "auto"}))
    run_worker(store, "old")
    trials = trials_by_study(url, store, "old")["adam/random"]
    assert len({t.datetime_start for t in trials}) == len(trials) == 6, "one at a time: each its own start"
    store.close()


@pytest.mark.parametrize("sampler", ["random", "tpe", "cmaes"])
def test_a_population_never_takes_more_memory_than_its_budget(sampler: str) -> None:
    """``population: 65536`` on the quickstart's MLP would need tens of GB of activations: the size is
    capped by POPULATION_BYTES whatever the file asks."""
    import yaml

    from tests.helpers import REPO
    from tuner.objective import Budget
    from tuner.populations import MEMBER_BUFFERS, POPULATION_BYTES, population_size
    from tuner.tasks import make_task

    data = yaml.safe_load((REPO / "studies" / "quickstart.yaml").read_text())
    spec = parse_experiment({**data, "population": 65536, "samplers": [sampler]})
    task = make_task(spec.task.name, spec.task.options)
    space = spec.search_space("adam")
    size = population_size(spec, sampler, "adam", space, task, Budget.of(spec), 100_000, None)
    member = MEMBER_BUFFERS * task.dim * 4 + task.member_bytes(256)
    assert 1 < size <= POPULATION_BYTES // member
    assert population_size(spec, sampler, "lbfgs", spec.search_space("adam"), task, Budget.of(spec), 100, None) == 1


def test_a_population_takes_the_queued_trials_it_reserved_and_leaves_the_rest_queued(tmp_path) -> None:
    """Optuna's ask starts a queued (WAITING) trial at every call, a transaction each; a population
    takes queued trials when it reserves its trials, and the rest of the queue (after a crash,
    thousands of retries) waits for the next reservations, in order."""
    quiet_optuna()
    store = Store.open(f"sqlite:///{tmp_path}/queue.db")
    spec = parse_experiment({**QUADRATIC, "name": "queue", "optimizers": ["adam"], "trials": 12, "population": 4,
                             "reevaluate": 0})
    _, rows = create_experiment(store, spec)
    study = optuna.load_study(study_name=rows[0].study_name, storage=store.optuna)
    for k in range(10):
        study.enqueue_trial({"lr": 10.0 ** -(1 + k / 10)})
    commits = []
    event.listen(store.engine, "commit", lambda conn: commits.append(1))
    assert run_worker(store, "queue", max_trials=4) == 4
    first = len(commits)
    states = [t.state for t in RDBStorage(store.url).get_all_trials(study._study_id)]
    assert states[:4].count(optuna.trial.TrialState.WAITING) == 0 and states[4:] == [optuna.trial.TrialState.WAITING] * 6
    assert run_worker(store, "queue", max_trials=4) == 4 and len(commits) - first == first
    trials = RDBStorage(store.url).get_all_trials(study._study_id)
    assert [t.params["lr"] for t in trials[:8]] == [10.0 ** -(1 + k / 10) for k in range(8)]
    store.close()
