"""The Store's worker-side storage: batched parameter writes, the first heartbeat, stale trials."""

import time
import warnings

import optuna
import pytest
from sqlalchemy import text

from tests.helpers import TINY
from tuner.spec import parse_experiment
from tuner.storage.records import RunRecord
from tuner.storage.store import Store, WorkerCache

warnings.filterwarnings("ignore", "Heartbeat of storage", UserWarning)
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

optuna.logging.set_verbosity(optuna.logging.ERROR)


@pytest.fixture
def store(tmp_path):
    store = Store.open(f"sqlite:///{tmp_path}/s.db")
    yield store
    store.close()


def study_of(store: Store) -> tuple[optuna.Study, int]:
    spec = parse_experiment(TINY)
    rows = store.ensure_studies(spec, store.ensure_experiment(spec))
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


def test_a_stale_trial_fails_with_its_run_and_is_retried_with_the_same_parameters(store) -> None:
    study, study_id = study_of(store)
    trial = study.ask()
    lr = trial.suggest_float("lr", 1e-3, 1.0, log=True)
    store.flush_params()
    store.save_run(study_id, RunRecord(kind="trial", seed=0, state="COMPLETE", params={"lr": lr}, wall_time=1.0,
                                       steps=10, samples=10, objective=0.5, optuna_trial_id=trial._trial_id,
                                       trial_number=trial.number))
    with store.engine.begin() as conn:  # the worker died: its heartbeat stopped long ago
        conn.execute(text("UPDATE trial_heartbeats SET heartbeat = '2000-01-01 00:00:00'"))
    optuna.storages.fail_stale_trials(study)
    time.sleep(WorkerCache.MIN_INTERVAL_S)  # this process re-reads a study at most every 50 ms
    states = {t.number: t.state for t in study.get_trials(deepcopy=False)}
    assert states[trial.number] == optuna.trial.TrialState.FAIL
    waiting = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.WAITING]
    assert len(waiting) == 1 and waiting[0].params == {"lr": lr}
    assert count(store, "SELECT state FROM tuner_runs") == "FAIL"
    retry = study.ask()
    assert retry.number == waiting[0].number and retry.suggest_float("lr", 1e-3, 1.0, log=True) == lr
