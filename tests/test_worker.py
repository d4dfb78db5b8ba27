"""How a worker picks its next study: furthest behind its budget, a waiting retry first."""

import optuna
import pytest

from tests.helpers import TINY, check_consistent
from tuner.spec import parse_experiment
from tuner.storage import queries
from tuner.storage.store import Store
from tuner.worker import create_experiment, next_study, quiet_optuna, run_worker


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # the other worker asks outside optimize
def test_a_waiting_retry_holds_its_slot_and_runs_first(tmp_path) -> None:
    """The race the fault test caught: a trial is failed as stale and re-queued (WAITING) while
    another worker, not seeing the retry yet, starts a new trial in the same study."""
    quiet_optuna()
    url = f"sqlite:///{tmp_path}/w.db"
    store, other = Store.open(url), Store.open(url)
    spec = parse_experiment({**TINY, "name": "retry", "trials": 2, "optimizers": ["sgd"], "samplers": ["random"],
                             "reevaluate": 0})
    rows = create_experiment(store, spec)[1]
    ids = {rows[0].id: queries.optuna_study_ids(store.engine, [rows[0].study_name])[rows[0].study_name]}
    assert run_worker(store, "retry", max_trials=1) == 1
    study = optuna.load_study(study_name=rows[0].study_name, storage=other.optuna)
    running = study.ask()  # the other worker's new trial
    study.enqueue_trial(study.trials[0].params)  # the retry the stale-trial callback leaves
    assert queries.workload(store.engine, ids) == {rows[0].id: (1, 1, 1)}
    assert next_study(store, rows, ids) == rows[0]  # full by count, but the retry must run
    assert run_worker(store, "retry", max_trials=1) == 1
    states = {t.number: t.state.name for t in optuna.load_study(study_name=rows[0].study_name, storage=url).trials}
    assert states == {0: "COMPLETE", 1: "RUNNING", 2: "COMPLETE"}  # the retry (number 2) ran
    assert next_study(store, rows, ids) == "wait"
    study.tell(running, 1.0)
    assert next_study(store, rows, ids) is None
    store.close()
    other.close()


def interrupting(monkeypatch, interruption) -> None:
    """Make every trial's objective call ``interruption(trial)`` once it has trained, before it returns."""
    import tuner.worker as worker

    made = worker.make_objective

    def make(*args, **kwargs):
        objective = made(*args, **kwargs)

        def wrapped(trial):
            value = objective(trial)
            interruption(trial)
            return value

        return wrapped

    monkeypatch.setattr(worker, "make_objective", make)


def small_experiment(tmp_path, name: str, population: int | str = 1):
    quiet_optuna()
    url = f"sqlite:///{tmp_path}/{name}.db"
    store = Store.open(url)
    spec = parse_experiment({**TINY, "name": name, "trials": 3, "optimizers": ["sgd"], "samplers": ["random"],
                             "reevaluate": 0, "population": population})
    create_experiment(store, spec)
    return url, store


def interrupting_populations(monkeypatch, interruption) -> None:
    """Make every population call ``interruption(trials)`` once it has trained, before it is told."""
    from tuner.populations import PopulationRunner

    trained = PopulationRunner._train

    def train(self, trials, configs):
        outcomes = trained(self, trials, configs)
        interruption(trials)
        return outcomes

    monkeypatch.setattr(PopulationRunner, "_train", train)


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_a_trial_failed_elsewhere_while_it_ran_does_not_stop_the_worker(tmp_path, monkeypatch) -> None:
    """Another worker found the trial's heartbeat stale and failed it (Optuna then masks the
    UpdateFinishedTrialError as an AssertionError): the worker logs it and goes on."""
    url, store = small_experiment(tmp_path, "failed-elsewhere")
    failed = []

    def fail_the_first(trial) -> None:
        if not failed:
            other = Store.open(url)
            other.optuna.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
            other.close()
            failed.append(trial.number)

    interrupting(monkeypatch, fail_the_first)
    run_worker(store, "failed-elsewhere")
    states = [t.state.name for t in optuna.load_study(study_name="failed-elsewhere/sgd/random/0", storage=url).trials]
    assert states.count("FAIL") == 1 and states.count("COMPLETE") == 3, states
    assert queries.run_states(store.engine, 1)[1]["COMPLETE"] == 3  # no run for the failed trial
    store.close()


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_a_population_s_trial_failed_elsewhere_is_dropped_and_the_rest_are_told(tmp_path, monkeypatch) -> None:
    """Another worker failed one trial of a population as stale: the others are told, that one's
    writes are dropped (no run), and the worker fills the budget."""
    url, store = small_experiment(tmp_path, "population-failed", population="auto")
    failed = []

    def fail_the_first(trials) -> None:
        if not failed:
            other = Store.open(url)
            other.optuna.set_trial_state_values(trials[0]._trial_id, optuna.trial.TrialState.FAIL)
            other.close()
            failed.append(trials[0].number)

    interrupting_populations(monkeypatch, fail_the_first)
    run_worker(store, "population-failed")
    states = [t.state.name for t in optuna.load_study(study_name="population-failed/sgd/random/0", storage=url).trials]
    assert states.count("FAIL") == 1 and states.count("COMPLETE") == 3, states
    assert queries.run_states(store.engine, 1)[1]["COMPLETE"] == 3
    store.close()


def test_a_study_deleted_while_a_population_trains_is_made_anew(tmp_path, monkeypatch) -> None:
    url, store = small_experiment(tmp_path, "population-deleted", population="auto")
    deleted = []

    def delete_once(trials) -> None:
        if not deleted:
            optuna.delete_study(study_name="population-deleted/sgd/random/0", storage=url)
            deleted.append(True)

    interrupting_populations(monkeypatch, delete_once)
    run_worker(store, "population-deleted")
    assert deleted
    study = optuna.load_study(study_name="population-deleted/sgd/random/0", storage=url)
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3  # the deleted population's runs were dropped
    assert queries.run_states(store.engine, 1)[1]["COMPLETE"] == 3
    store.close()


def test_a_study_deleted_with_optuna_s_tools_while_the_worker_runs_is_made_anew(tmp_path, monkeypatch) -> None:
    """What optuna-dashboard's delete button does in the middle of a trial: the worker carries on."""
    url, store = small_experiment(tmp_path, "deleted")
    deleted = []

    def delete_once(trial) -> None:
        if trial.number == 1 and not deleted:
            optuna.delete_study(study_name="deleted/sgd/random/0", storage=url)
            deleted.append(True)

    interrupting(monkeypatch, delete_once)
    run_worker(store, "deleted")
    assert deleted
    assert queries.run_states(store.engine, 1)[1]["COMPLETE"] == 3  # trial 0, then a new study's 0 and 1
    study = optuna.load_study(study_name="deleted/sgd/random/0", storage=url)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    store.close()


def test_workers_that_find_the_budget_met_re_evaluate_the_winners_between_them(tmp_path) -> None:
    """The flow of docker compose: experiment created, workers only. Two workers at once store each
    re-evaluation exactly once (the runs table coordinates them), and a later worker finds none to do."""
    import threading

    quiet_optuna()
    url = f"sqlite:///{tmp_path}/r.db"
    creator = Store.open(url)
    spec = parse_experiment({**TINY, "name": "reeval", "trials": 2, "reevaluate": 3})
    experiment_id, rows = create_experiment(creator, spec)
    creator.close()

    stores = [Store.open(url) for _ in range(2)]  # Alembic's migration check is not thread-safe: opened here
    ran: dict[int, int] = {}

    def work(worker: int) -> None:
        ran[worker] = run_worker(stores[worker], "reeval", worker=worker)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for other in stores:
        other.close()
    assert sorted(ran) == [0, 1], ran  # both workers ended well
    store = Store.open(url)
    check_consistent(store.engine, "reeval", workers=2)
    done = queries.reevaluated(store.engine, experiment_id)
    best = queries.best_trials(store.engine, experiment_id)
    assert len(best) == len(rows) and done == {(b["id"], seed) for b in best for seed in range(1_000_000, 1_000_003)}
    from tuner import reevaluation

    assert reevaluation.pending(store.engine, spec, experiment_id) == []
    assert run_worker(store, "reeval") == 0
    assert len(queries.reevaluated(store.engine, experiment_id)) == 3 * len(rows)
    store.close()


def test_a_worker_stopped_by_max_trials_leaves_re_evaluation_to_others(tmp_path) -> None:
    quiet_optuna()
    url = f"sqlite:///{tmp_path}/m.db"
    store = Store.open(url)
    spec = parse_experiment({**TINY, "name": "capped", "trials": 1, "optimizers": ["sgd"], "samplers": ["random"],
                             "reevaluate": 2})
    experiment_id, _ = create_experiment(store, spec)
    assert run_worker(store, "capped", max_trials=1) == 1
    assert queries.reevaluated(store.engine, experiment_id) == set()
    assert run_worker(store, "capped") == 0
    assert len(queries.reevaluated(store.engine, experiment_id)) == 2
    store.close()


def test_a_worker_completes_an_experiment_whose_creation_was_interrupted(tmp_path, monkeypatch) -> None:
    """Ctrl-C during ``tuner launch --workers 0`` can leave some studies uncreated; a worker makes them."""
    quiet_optuna()
    store = Store.open(f"sqlite:///{tmp_path}/half.db")
    spec = parse_experiment({**TINY, "name": "half", "trials": 1, "reevaluate": 0})
    made = store.ensure_studies
    monkeypatch.setattr(store, "ensure_studies", lambda eid, name, studies, *a: made(eid, name, studies[:2], *a))
    experiment_id, _ = create_experiment(store, spec)
    assert len(queries.studies(store.engine, experiment_id)) == 2
    monkeypatch.undo()
    assert run_worker(store, "half") == 4
    assert len(queries.studies(store.engine, experiment_id)) == 4
    store.close()


def test_a_worker_that_reloads_its_studies_after_a_lost_connection_draws_on(tmp_path, monkeypatch) -> None:
    """Samplers survive the reload: a seeded random search does not replay the draws it made."""
    from sqlalchemy.exc import OperationalError

    url, store = small_experiment(tmp_path, "reloaded")
    lost, calls = [], []
    flush = Store.flush_params

    def flaky(self):  # the second trial's parameters meet a lost connection, once
        calls.append(True)
        if len(calls) == 2:
            lost.append(True)
            raise OperationalError("INSERT", {}, Exception("server closed the connection"))
        return flush(self)

    monkeypatch.setattr(Store, "flush_params", flaky)
    run_worker(store, "reloaded")
    assert lost
    trials = optuna.load_study(study_name="reloaded/sgd/random/0", storage=url).trials
    configurations = [tuple(sorted(t.params.items())) for t in trials if t.params]
    assert len(configurations) >= 3 and len(set(configurations)) == len(configurations), configurations
    store.close()
