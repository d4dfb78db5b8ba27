"""How a worker picks its next study: furthest behind its budget, a waiting retry first."""

import optuna
import pytest

from tests.helpers import TINY
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
