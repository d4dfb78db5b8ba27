"""The Store's worker-side storage: batched parameter writes, the first heartbeat, stale trials."""

import datetime
import time

import optuna
import pytest
from sqlalchemy import text

from tests.helpers import TINY
from tuner.spec import parse_experiment
from tuner.storage._optuna_fast import WorkerCache, WorkerStorage
from tuner.storage.records import RunRecord
from tuner.storage.store import Store
from tuner.worker import create_experiment

pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage", "ignore::optuna.exceptions.ExperimentalWarning")

optuna.logging.set_verbosity(optuna.logging.ERROR)


@pytest.fixture
def store(tmp_path):
    store = Store.open(f"sqlite:///{tmp_path}/s.db")
    yield store
    store.close()


def study_of(store: Store) -> tuple[optuna.Study, int]:
    spec = parse_experiment(TINY)
    rows = create_experiment(store, spec)[1]
    return optuna.load_study(study_name=rows[0].study_name, storage=store.optuna), rows[0].id


def count(store: Store, sql: str) -> int:
    with store.engine.connect() as conn:
        return conn.execute(text(sql)).scalar()


def test_parameters_are_written_in_one_flush_and_the_first_heartbeat_with_the_trial(store) -> None:
    study, _ = study_of(store)
    trial = study.ask()
    assert count(store, "SELECT COUNT(*) FROM trial_heartbeats") == 1
    trial.suggest_float("lr", 1e-3, 1.0, log=True)
    trial.suggest_int("n", 1, 4)
    assert count(store, "SELECT COUNT(*) FROM trial_params") == 0
    assert set(trial.params) == {"lr", "n"}  # this process sees them at once
    store.flush_params()
    assert count(store, "SELECT COUNT(*) FROM trial_params") == 2
    second = study.ask()
    second.suggest_float("lr", 1e-3, 1.0, log=True)  # the known-distribution path
    study.tell(second, 1.0)  # a state change flushes what is pending
    assert count(store, "SELECT COUNT(*) FROM trial_params") == 3
    assert study.trials[1].params == second.params


def test_incompatible_distribution_is_still_refused(store) -> None:
    study, _ = study_of(store)
    first = study.ask()
    first.suggest_float("lr", 1e-3, 1.0)
    study.tell(first, 1.0)
    second = study.ask()
    with pytest.raises(ValueError):
        second.suggest_categorical("lr", ["a", "b"])
        store.flush_params()


def record_for(trial: optuna.Trial, lr: float) -> RunRecord:
    return RunRecord(kind="trial", seed=0, state="COMPLETE", params={"lr": lr}, wall_time=1.0, steps=10, samples=10,
                     objective=0.5, optuna_trial_id=trial._trial_id, trial_number=trial.number)


def test_a_trial_s_run_is_written_with_its_final_state(store) -> None:
    study, study_id = study_of(store)
    trial = study.ask()
    store.save_trial_run(study_id, record_for(trial, trial.suggest_float("lr", 1e-3, 1.0, log=True)))
    assert count(store, "SELECT COUNT(*) FROM tuner_runs") == 0  # held until the trial ends
    study.tell(trial, 0.5)
    assert count(store, "SELECT COUNT(*) FROM tuner_runs") == 1
    assert count(store, "SELECT COUNT(*) FROM tuner_curves") == 0  # the record had none


def test_a_failed_trial_drops_its_held_run(store) -> None:
    study, study_id = study_of(store)
    trial = study.ask()
    store.save_trial_run(study_id, record_for(trial, trial.suggest_float("lr", 1e-3, 1.0, log=True)))
    study.tell(trial, state=optuna.trial.TrialState.FAIL)
    assert count(store, "SELECT COUNT(*) FROM tuner_runs") == 0


def test_a_run_is_not_written_when_the_trial_was_failed_elsewhere(store) -> None:
    study, study_id = study_of(store)
    trial = study.ask()
    store.save_trial_run(study_id, record_for(trial, trial.suggest_float("lr", 1e-3, 1.0, log=True)))
    other = Store.open(store.url)  # another worker found this trial's heartbeat stale and failed it
    other.optuna.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
    other.close()
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        study.tell(trial, 0.5)
    assert count(store, "SELECT COUNT(*) FROM tuner_runs") == 0
    time.sleep(WorkerCache.MIN_INTERVAL_S)
    assert study.trials[trial.number].state == optuna.trial.TrialState.FAIL


def test_a_stale_trial_fails_and_is_retried_with_the_same_parameters(store) -> None:
    study, study_id = study_of(store)
    trial = study.ask()
    lr = trial.suggest_float("lr", 1e-3, 1.0, log=True)
    store.flush_params()
    store.save_trial_run(study_id, record_for(trial, lr))  # the worker died before telling
    with store.engine.begin() as conn:  # its heartbeat stopped long ago
        conn.execute(text("UPDATE trial_heartbeats SET heartbeat = '2000-01-01 00:00:00'"))
    optuna.storages.fail_stale_trials(study)
    time.sleep(WorkerCache.MIN_INTERVAL_S)  # this process re-reads a study at most every 50 ms
    states = {t.number: t.state for t in study.get_trials(deepcopy=False)}
    assert states[trial.number] == optuna.trial.TrialState.FAIL
    waiting = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.WAITING]
    assert len(waiting) == 1 and waiting[0].params == {"lr": lr}
    assert count(store, "SELECT COUNT(*) FROM tuner_runs") == 0
    retry = study.ask()
    assert retry.number == waiting[0].number and retry.suggest_float("lr", 1e-3, 1.0, log=True) == lr


def fields(trial: optuna.trial.FrozenTrial) -> tuple:
    return (trial.number, trial.state, trial.params, trial.distributions, trial.values, trial.user_attrs,
            trial.system_attrs, trial.intermediate_values)


def objective(trial: optuna.Trial) -> float:
    lr = trial.suggest_float("lr", 1e-4, 1.0, log=True)
    width = trial.suggest_int("width", 1, 8)
    kind = trial.suggest_categorical("kind", ["a", "b"])
    trial.set_user_attr("note", f"{kind}{width}")
    if trial.number % 5 == 3:
        raise RuntimeError("a failing trial")
    if trial.number % 5 == 4:
        trial.report(lr, 0)
        raise optuna.TrialPruned()
    return lr * width


def test_the_worker_storage_writes_what_optuna_s_own_storage_writes(tmp_path) -> None:
    """The same seeded study through tuner's storage and through Optuna's: read back by Optuna's
    own RDBStorage, every trial's number, state, parameters, values and attributes agree."""
    def run(storage) -> None:
        study = optuna.create_study(study_name="same", storage=storage, sampler=optuna.samplers.RandomSampler(seed=3))
        study.optimize(objective, n_trials=12, catch=(RuntimeError,))

    ours = Store.open(f"sqlite:///{tmp_path}/ours.db")
    run(ours.optuna)
    ours.close()
    run(optuna.storages.RDBStorage(f"sqlite:///{tmp_path}/optuna.db"))
    read = [optuna.load_study(study_name="same", storage=f"sqlite:///{tmp_path}/{name}.db").trials
            for name in ("ours", "optuna")]
    assert [fields(t) for t in read[0]] == [fields(t) for t in read[1]]
    assert {t.state for t in read[0]} == {optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL,
                                          optuna.trial.TrialState.PRUNED}


def test_a_worker_sees_another_worker_s_trials_as_they_are_stored(tmp_path) -> None:
    url = f"sqlite:///{tmp_path}/two.db"
    one, two = Store.open(url), Store.open(url)
    optuna.create_study(study_name="shared", storage=url)
    first, second = (optuna.load_study(study_name="shared", storage=s.optuna) for s in (one, two))

    def agree() -> None:
        time.sleep(WorkerCache.MIN_INTERVAL_S)
        stored = optuna.load_study(study_name="shared", storage=url).trials
        assert [fields(t) for t in first.trials] == [fields(t) for t in stored]

    mine = first.ask()
    mine.suggest_float("x", 0.0, 1.0)
    first.tell(mine, 1.0)  # its own trial is in its cache as told
    assert [fields(t) for t in first.trials] == [fields(t) for t in optuna.load_study(
        study_name="shared", storage=url).trials]
    theirs = second.ask()
    theirs.suggest_float("x", 0.0, 1.0)
    two.flush_params()
    agree()  # another worker's trial, running
    second.tell(theirs, 2.0)
    agree()  # the same trial, finished
    for _ in range(3):
        for study in (first, second):
            trial = study.ask()
            study.tell(trial, trial.suggest_float("x", 0.0, 1.0))
    agree()
    one.close()
    two.close()


def test_other_workers_trials_load_as_optuna_loads_them(tmp_path, monkeypatch) -> None:
    """Every kind of stored value (all parameter types, inf objectives, user and system attributes,
    intermediate values, unfinished trials) reads back from our loader as from Optuna's."""
    url = f"sqlite:///{tmp_path}/load.db"
    study = optuna.create_study(study_name="load", storage=url, sampler=optuna.samplers.RandomSampler(seed=1))
    study.optimize(objective, n_trials=10, catch=(RuntimeError,))
    study.tell(study.ask(), float("inf"))
    running = study.ask()
    running.suggest_float("lr", 1e-4, 1.0, log=True)
    running.report(float("-inf"), 2)
    study._storage.set_trial_system_attr(running._trial_id, "retry", {"of": [1, 2]})
    study.enqueue_trial({"lr": 0.5})  # WAITING, with a fixed parameter as a system attribute
    reference = optuna.storages.RDBStorage(url)
    expected = reference.get_all_trials(study._study_id, deepcopy=False)
    store = Store.open(url)
    with store.engine.connect() as conn:
        loaded = store.rdb.load_trials(conn, {t._trial_id for t in expected})
        assert store.rdb.load_trials(conn, {expected[2]._trial_id}) == [expected[2]]
        monkeypatch.setattr(WorkerStorage, "LOAD_CHUNK", 4)  # many trials: read a few at a time
        assert store.rdb.load_trials(conn, {t._trial_id for t in expected}) == loaded
    store.close()
    assert loaded == expected and [t.datetime_start for t in loaded] == [t.datetime_start for t in expected]
    assert {t.state for t in loaded} == set(optuna.trial.TrialState)  # every state, WAITING and RUNNING too


def test_trial_times_are_stored_in_utc_as_optuna_stores_them(tmp_path, monkeypatch) -> None:
    """Optuna keeps naive UTC in its tables and hands out local time: in a zone far from UTC, a trial
    written by a worker reads back (through Optuna's own storage) at the local time it ran."""
    monkeypatch.setenv("TZ", "Pacific/Kiritimati")  # UTC+14
    time.tzset()
    try:
        store = Store.open(f"sqlite:///{tmp_path}/tz.db")
        study, _ = study_of(store)
        before = datetime.datetime.now()
        study.tell(study.ask(), 1.0)
        after = datetime.datetime.now()
        store.close()
        (stored,) = optuna.load_study(study_name=study.study_name, storage=store.url).trials
        assert before <= stored.datetime_start <= stored.datetime_complete <= after + datetime.timedelta(seconds=1)
    finally:
        monkeypatch.undo()  # TZ as it was, then the process's zone with it
        time.tzset()
