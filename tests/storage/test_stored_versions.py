"""An experiment stored by an earlier tuner resumes: study files are compared as this tuner
reads them (fields an earlier tuner did not know take their defaults), and only in the same
format (tuner_experiments.spec_version)."""

import datetime as dt

import pytest
from sqlalchemy import insert, select

from tests.helpers import TINY
from tuner.errors import ConfigError
from tuner.spec import parse_experiment
from tuner.storage import schema
from tuner.storage.store import Store
from tuner.worker import SPEC_VERSION, create_experiment, stored_study_file

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

TODAY = {k: v for k, v in TINY.items() if k != "reevaluate"}
"""A study file that leaves pruner and reevaluate at their defaults."""


@pytest.fixture
def store(tmp_path):
    store = Store.open(f"sqlite:///{tmp_path}/v.db", heartbeat=False)
    yield store
    store.close()


def stored_earlier(store: Store, spec: dict, **columns) -> int:
    """Store ``spec`` as the study file of experiment 'tiny', as an earlier tuner wrote it; its id."""
    with store.engine.begin() as conn:
        return conn.execute(insert(schema.experiments).values(
            name="tiny", task="softmax", spec=spec, created_at=dt.datetime.now(dt.UTC), **columns,
        )).inserted_primary_key[0]


def without_later_fields() -> dict:
    """Today's stored study file of TODAY as a tuner before pruner and reevaluate stored it."""
    written = stored_study_file(parse_experiment(TODAY))
    return {k: v for k, v in written.items() if k not in ("pruner", "reevaluate")}


def test_an_experiment_stored_before_fields_with_defaults_existed_resumes(store) -> None:
    experiment_id = stored_earlier(store, without_later_fields())
    assert create_experiment(store, parse_experiment(TODAY))[0] == experiment_id
    assert create_experiment(store, parse_experiment(TODAY))[0] == experiment_id  # and again


def test_a_field_an_earlier_tuner_did_not_know_set_to_another_value_is_refused(store) -> None:
    stored_earlier(store, without_later_fields())
    with pytest.raises(ConfigError) as refused:
        create_experiment(store, parse_experiment({**TODAY, "pruner": "median"}))
    assert str(refused.value) == ("experiment 'tiny' already exists with a different study file (changed: pruner); "
                                  "give it a new name to start another experiment")


def test_a_stored_study_file_this_tuner_cannot_read_is_refused_naming_the_field(store) -> None:
    stored = {**stored_study_file(parse_experiment(TODAY)), "pruner": "retired"}
    stored_earlier(store, stored)
    with pytest.raises(ConfigError, match=r"^experiment 'tiny' was stored by another version of tuner, whose study "
                                          r"file does not read here \(pruner='retired': Input should be"):
        create_experiment(store, parse_experiment(TODAY))


def test_a_stored_study_file_with_a_field_this_tuner_does_not_know_is_one_line_for_every_reader(store) -> None:
    from tuner.worker import run_worker

    stored_earlier(store, {**stored_study_file(parse_experiment(TODAY)), "future_field": 1})
    for attempt in (lambda: create_experiment(store, parse_experiment(TODAY)), lambda: run_worker(store, "tiny")):
        with pytest.raises(ConfigError, match=r"^experiment 'tiny' was stored by another version of tuner, whose "
                                              r"study file does not read here \(future_field: unknown field\); use"):
            attempt()


def test_an_experiment_stored_in_another_format_is_refused(store) -> None:
    stored_earlier(store, stored_study_file(parse_experiment(TODAY)),
                   spec_version=SPEC_VERSION + 1)
    with pytest.raises(ConfigError) as refused:
        create_experiment(store, parse_experiment(TODAY))
    assert str(refused.value) == (
        f"experiment 'tiny' was stored by a tuner whose study files have format {SPEC_VERSION + 1}; this "
        f"tuner's have format {SPEC_VERSION}: resume it with that tuner, or give it a new name to start "
        "another experiment")


def test_a_new_experiment_stores_the_format_of_its_study_file(store) -> None:
    create_experiment(store, parse_experiment(TODAY))
    with store.engine.connect() as conn:
        assert conn.execute(select(schema.experiments.c.spec_version)).scalar_one() == SPEC_VERSION
