"""Optuna's own storage contract, run on the storage tuner's workers use, on every database.

``optuna.testing.pytest_storages.StorageTestCase`` is the suite Optuna runs on its own storages;
every case runs here unchanged. The heartbeat cases below follow Optuna's own heartbeat tests
(``tests/storages_tests/test_heartbeat.py`` in Optuna's repository, which Optuna does not ship),
with time passing by moving the heartbeats back instead of sleeping.

Where a case cannot apply as written, the test says so:

- MariaDB keeps whole seconds in Optuna's ``DATETIME`` columns (Optuna's schema), so on MariaDB
  ``test_get_trial`` and ``test_get_all_trials`` compare trial times to the second; Optuna's own
  ``RDBStorage`` fails them there as written (checked below).
- A trial is written with its first heartbeat, so a trial whose worker never beat is failed after
  the grace period (Optuna keeps it RUNNING forever: ``test_fail_stale_trials`` expects that).
"""

import copy
import datetime as dt
import pickle

import optuna
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.storages import RetryHeartbeatStaleTrialCallback as Retry
from optuna.storages import fail_stale_trials
from optuna.testing.pytest_storages import StorageTestCase, _setup_studies
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import select, update

from tuner.storage._optuna_fast import _HEARTBEATS, WorkerCache, _Trial
from tuner.storage.store import MAX_RETRY, Store, worker_storage

pytestmark = [pytest.mark.e2e,
              pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning",
                                         "ignore:Heartbeat of storage")]
optuna.logging.set_verbosity(optuna.logging.ERROR)

WHOLE_SECONDS_CASES = ("test_get_trial", "test_get_all_trials")


@pytest.fixture
def storage(database):
    store = Store.open(database)
    yield store.optuna
    store.close()


def _to_the_second(trial: FrozenTrial) -> FrozenTrial:
    cut = FrozenTrial.__new__(FrozenTrial)
    cut.__dict__.update(trial.__dict__)
    for name in ("_datetime_start", "datetime_complete"):
        if isinstance(getattr(cut, name, None), dt.datetime):
            setattr(cut, name, getattr(cut, name).replace(microsecond=0))
    return cut


@pytest.fixture(autouse=True)
def _whole_seconds_on_mariadb(request, monkeypatch):
    """On MariaDB, the two cases that compare trial times compare them to the second."""
    if request.node.originalname in WHOLE_SECONDS_CASES and "mariadb" in request.node.callspec.id:
        equal = FrozenTrial.__eq__
        monkeypatch.setattr(FrozenTrial, "__eq__", lambda a, b: equal(_to_the_second(a), _to_the_second(b)))


class TestWorkerStorage(StorageTestCase):
    """Every case of Optuna's suite on a worker's storage."""


def test_optuna_s_own_storage_keeps_whole_seconds_on_mariadb(mysql_url) -> None:
    """Why the two cases above compare to the second on MariaDB: Optuna's stock storage does too."""
    stock = optuna.storages.RDBStorage(mysql_url)
    _, study_to_trials = _setup_studies(stock, n_study=1, n_trial=5, seed=47)
    for expected in next(iter(study_to_trials.values())).values():
        got = stock.get_trial(expected._trial_id)
        assert got.datetime_start == expected.datetime_start.replace(microsecond=0)
        assert _to_the_second(got) == _to_the_second(expected)
    stock.engine.dispose()


# heartbeats ----------------------------------------------------------------------------------
INTERVAL, GRACE = 1, 2


def heartbeat_storage(url: str, on_stale=None) -> WorkerCache:
    return WorkerCache(worker_storage(url, INTERVAL, GRACE, on_stale))


def time_passes(storage: WorkerCache, seconds: float = GRACE + 1) -> None:
    """Every heartbeat becomes ``seconds`` older, as if that much time had passed without a beat."""
    with storage._backend.engine.begin() as conn:
        for trial_id, beat in conn.execute(select(_HEARTBEATS.c.trial_id, _HEARTBEATS.c.heartbeat)).all():
            conn.execute(update(_HEARTBEATS).where(_HEARTBEATS.c.trial_id == trial_id)
                         .values(heartbeat=beat - dt.timedelta(seconds=seconds)))


def test_heartbeat_is_enabled_and_checks_its_settings(database) -> None:
    storage = heartbeat_storage(database)
    assert storage.get_heartbeat_interval() == INTERVAL
    for wrong in ({"heartbeat_interval": -1}, {"grace_period": -1}):
        with pytest.raises(ValueError):
            worker_storage(database, **wrong)


def test_optimize_fails_the_stale_trials_of_its_own_study_only(database) -> None:
    storage = heartbeat_storage(database)
    first, second = optuna.create_study(storage=storage), optuna.create_study(storage=storage)
    first.ask(), second.ask()
    time_passes(storage)
    assert first.trials[0].state is second.trials[0].state is TrialState.RUNNING
    first.optimize(lambda _: 1.0, n_trials=1)
    assert first.trials[0].state is TrialState.FAIL
    assert first.trials[1].state is TrialState.COMPLETE
    assert second.trials[0].state is TrialState.RUNNING


def test_a_beating_trial_stays_running_and_a_silent_one_fails(database) -> None:
    seen = []
    storage = heartbeat_storage(database, on_stale=lambda study, trial: seen.append(
        (study._storage.get_study_system_attrs(study._study_id)["test"], trial.system_attrs["test"])))
    study = optuna.create_study(storage=storage)
    storage.set_study_system_attr(study._study_id, "test", "A")
    trial = study.ask()
    trial.storage.set_trial_system_attr(trial._trial_id, "test", "B")
    time_passes(storage)
    storage.record_heartbeat(trial._trial_id)
    assert storage._get_stale_trial_ids(study._study_id) == []
    fail_stale_trials(study)
    assert study.trials[0].state is TrialState.RUNNING
    time_passes(storage)
    assert storage._get_stale_trial_ids(study._study_id) == [trial._trial_id]
    assert storage._get_stale_trial_ids(study._study_id) == [trial._trial_id]  # asking twice changes nothing
    fail_stale_trials(study)
    assert study.trials[0].state is TrialState.FAIL
    assert seen == [("A", "B")]  # the callback saw the study's and the trial's attributes


def test_a_trial_whose_worker_never_beat_is_failed_too(database) -> None:
    """Differs from Optuna's stock storage by design: the first beat is written with the trial."""
    storage = heartbeat_storage(database)
    study = optuna.create_study(storage=storage)
    study.ask()
    time_passes(storage)
    fail_stale_trials(study)
    assert study.trials[0].state is TrialState.FAIL


@pytest.mark.parametrize("max_retry", [None, 0, 1])
@pytest.mark.parametrize("inherit", [False, True])
def test_a_failed_trial_is_retried_with_what_it_had(database, max_retry, inherit) -> None:
    storage = heartbeat_storage(database, Retry(max_retry, inherit_intermediate_values=inherit))
    study = optuna.create_study(storage=storage)
    trial = study.ask()
    trial.suggest_float("x", 0.5, 2.0, log=True)
    trial.set_user_attr("note", [1, 2])
    trial.report(0.5, 1)
    time_passes(storage)
    study.optimize(lambda t: t.params.get("x", 1.0), n_trials=1)
    failed, retry = study.trials[0], study.trials[1]
    assert failed.state is TrialState.FAIL
    assert Retry.retried_trial_number(retry) == (None if max_retry == 0 else 0)
    if max_retry != 0:
        assert retry.state is TrialState.COMPLETE and retry.value == failed.params["x"]
        assert (retry.params, retry.distributions, retry.user_attrs) == (
            failed.params, failed.distributions, failed.user_attrs)
        assert retry.intermediate_values == (failed.intermediate_values if inherit else {})


def test_retries_of_retries_keep_their_history_up_to_max_retry(database) -> None:
    """A retry taken from the queue gets its first heartbeat as it starts, so it too is failed."""
    storage = heartbeat_storage(database, Retry(max_retry=3))
    study = optuna.create_study(storage=storage)
    for _ in range(5):
        study.ask()
        time_passes(storage)
        fail_stale_trials(study)
    trials = study.trials
    assert len(trials) == 6
    assert [t.system_attrs.get("failed_trial") for t in trials] == [None, 0, 0, 0, None, 4]
    assert [t.system_attrs.get("retry_history") for t in trials] == [None, [0], [0, 1], [0, 1, 2], None, [4]]


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
                           max_leaves=8)
names = st.text(min_size=1, max_size=4)


@settings(max_examples=200, deadline=None)
@given(params=st.dictionaries(names, st.floats(-10, 10) | st.sampled_from(["a", "b", None]), max_size=4),
       user=st.dictionaries(names, json_values, max_size=4), system=st.dictionaries(names, json_values, max_size=3),
       reports=st.dictionaries(st.integers(0, 50), st.floats(allow_nan=False), max_size=3),
       values=st.none() | st.lists(st.floats(allow_nan=False), min_size=1, max_size=2))
def test_a_stored_trial_deep_copies_as_the_generic_deep_copy(params, user, system, reports, values) -> None:
    """Trials this storage builds copy themselves faster than ``copy.deepcopy``'s generic walk
    (``study.tell`` returns a deep copy of each): the copy equals the generic one, is a plain
    FrozenTrial, and shares nothing mutable with the original."""
    dists = {name: CategoricalDistribution(["a", "b", None]) if not isinstance(v, float)
             else FloatDistribution(-10, 10) for name, v in params.items()}
    now = dt.datetime.now()
    stored = _Trial(number=3, state=TrialState.COMPLETE if values else TrialState.RUNNING, value=None, values=values,
                    datetime_start=now, datetime_complete=now if values else None, params=params, distributions=dists,
                    user_attrs=user, system_attrs=system, intermediate_values=reports, trial_id=7)
    generic = FrozenTrial.__new__(FrozenTrial)
    generic.__dict__.update(copy.deepcopy(stored.__dict__))
    fast = copy.deepcopy(stored)
    assert type(fast) is FrozenTrial and fast == generic and fast.__dict__ == generic.__dict__
    assert copy.copy(stored) == stored and type(copy.copy(stored)) is _Trial
    assert repr(stored) == repr(generic) and type(pickle.loads(pickle.dumps(stored))) is FrozenTrial
    assert pickle.loads(pickle.dumps(stored)) == generic
    before = copy.deepcopy(stored.__dict__)
    for container in (fast.params, fast.distributions, fast.user_attrs, fast.system_attrs, fast.intermediate_values):
        for key, value in list(container.items()):
            if isinstance(value, list):
                value.append("changed")
            elif isinstance(value, dict):
                value["changed"] = 1
            elif isinstance(value, CategoricalDistribution | FloatDistribution):
                value.__dict__.clear()
            container[key] = "changed"
        container["new"] = 1
    if fast.values:
        fast.values.append(0.0)
    assert stored.__dict__ == before


def _trial_id(storage, study: optuna.Study, number: int) -> int:
    """A trial's id by Optuna's public storage API."""
    return storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(study.study_name), number)


def _in_flight(storage, name: str) -> optuna.Study:
    """A study with every kind of trial a dead worker leaves: one with parameters, attributes and a
    report, one with nothing sampled, a first retry, a retry at the limit of retries, a finished
    trial; all RUNNING ones silent for an hour but one asked afterwards, which beats."""
    study = optuna.create_study(storage=storage, study_name=name, sampler=optuna.samplers.RandomSampler(seed=0))
    first = study.ask()
    first.suggest_float("x", 1e-3, 1.0, log=True)
    first.suggest_categorical("c", ["a", None, 2])
    first.set_user_attr("note", [1, {"k": 2}])
    storage.set_trial_system_attr(_trial_id(storage, study, first.number), "mine", "v")
    first.report(0.5, 1)
    study.ask()
    study.tell(study.ask(), 1.0)
    for history in ([0], list(range(MAX_RETRY))):
        study.add_trial(optuna.create_trial(state=TrialState.WAITING, params={"x": 0.1}, user_attrs={"u": 1},
                                            distributions={"x": FloatDistribution(1e-3, 1.0, log=True)},
                                            system_attrs={"failed_trial": 0, "retry_history": history}))
        study.ask()
    for trial in study.get_trials(states=(TrialState.RUNNING,)):
        storage.record_heartbeat(_trial_id(storage, study, trial.number))
    return study


def _as_read(storage: optuna.storages.RDBStorage, study: optuna.Study) -> list[tuple]:
    return [(t.number, t.state, t.params, t.distributions, t.user_attrs, t.system_attrs, t.intermediate_values,
             t.values) for t in storage.get_all_trials(storage.get_study_id_from_name(study.study_name))]


def test_a_worker_fails_stale_trials_and_queues_them_as_optuna_does(database) -> None:
    """``Store.fail_stale_trials`` writes in one transaction what Optuna's ``fail_stale_trials`` writes
    trial by trial with the retry callback tuner's workers use: the same trials, read back by Optuna."""
    store = Store.open(database)
    stock = optuna.storages.RDBStorage(database, heartbeat_interval=INTERVAL, grace_period=GRACE,
                                       heartbeat_stale_trial_callback=Retry(max_retry=MAX_RETRY))
    theirs, ours = _in_flight(stock, "stock"), _in_flight(store.optuna, "tuner")
    time_passes(store.optuna, 3600)
    for study, storage in ((theirs, stock), (ours, store.optuna)):
        storage.record_heartbeat(_trial_id(storage, study, study.ask().number))
    fail_stale_trials(theirs)
    store.fail_stale_trials(store.optuna.get_study_id_from_name(ours.study_name))
    expected = _as_read(stock, theirs)
    assert [t[1] for t in expected] == [TrialState.FAIL, TrialState.FAIL, TrialState.COMPLETE, TrialState.FAIL,
                                        TrialState.FAIL, TrialState.RUNNING, *[TrialState.WAITING] * 3]
    assert _as_read(stock, ours) == expected
    assert [t.state for t in ours.trials] == [t[1] for t in expected]  # the worker's cache sees them too
    stock.engine.dispose()
    store.close()
