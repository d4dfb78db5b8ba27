"""Two launchers creating the same experiment at once, with the interleaving forced, on every
database: a creator paused between its lookup (nothing found) and its insert of a tuner row while
the other creates the row ends with the other's row; a creator of an Optuna study whose insert
waits on the other's uncommitted one loads the other's study."""

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import optuna
import pytest
from sqlalchemy import event, func, select

from tests.helpers import TINY
from tuner.spec import parse_experiment
from tuner.storage import schema
from tuner.storage import store as store_module
from tuner.storage.store import Store
from tuner.worker import create_experiment

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

optuna.logging.set_verbosity(optuna.logging.ERROR)

PAUSE_S = 10
"""The longest a paused creator waits to be let go (a test that hangs fails instead)."""
_Result = TypeVar("_Result")


def paused_at_the_seam(monkeypatch, table: str, first: Callable[[], _Result],
                       second: Callable[[], _Result]) -> tuple[_Result, _Result]:
    """Run ``first`` in a thread until it reaches ``store._between_lookup_and_insert`` for
    ``table``, then ``second`` to its end, then let ``first`` go on; both results."""
    arrived, go_on = threading.Event(), threading.Event()

    def pause(name: str) -> None:
        if name == table and threading.current_thread().name.startswith("first"):
            arrived.set()
            assert go_on.wait(PAUSE_S), "never let go"

    monkeypatch.setattr(store_module, "_between_lookup_and_insert", pause)
    with ThreadPoolExecutor(1, thread_name_prefix="first") as pool:
        pending = pool.submit(first)
        assert arrived.wait(PAUSE_S), "the first creator found the row"
        with ThreadPoolExecutor(1, thread_name_prefix="second") as other:
            try:
                done = other.submit(second).result(timeout=PAUSE_S)  # while the first one waits
            finally:
                go_on.set()
        return pending.result(), done


@pytest.fixture
def launchers(database):
    """Two launchers' stores on one database, as two processes would have them."""
    one = Store.open(database, heartbeat=False)
    two = Store.open(database, heartbeat=False)
    yield one, two
    one.close()
    two.close()


def count(store: Store, table) -> int:
    with store.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


@pytest.mark.parametrize("table", [schema.experiments, schema.studies], ids=lambda table: table.name)
def test_the_creator_that_loses_the_race_for_a_row_takes_the_winner_s(launchers, table, monkeypatch) -> None:
    spec = parse_experiment(TINY)
    create = [lambda store=store: create_experiment(store, spec) for store in launchers]
    first, second = paused_at_the_seam(monkeypatch, table.name, *create)
    assert first == second
    assert count(launchers[0], table) == (1 if table is schema.experiments else 4)


def test_optuna_s_create_study_takes_the_study_of_a_creator_that_wins_the_race(launchers) -> None:
    """Optuna inserts first and, on a duplicate, reads the study in a transaction of its own: a
    creator whose insert waits on another's uncommitted one loads the other's study."""
    one, two = launchers
    inserted, go_on = threading.Event(), threading.Event()

    @event.listens_for(one.rdb.engine, "after_cursor_execute")
    def pause(conn, cursor, statement: str, *args) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO STUDIES "):
            inserted.set()
            assert go_on.wait(PAUSE_S), "never let go"

    def create(store: Store) -> int:
        return optuna.create_study(storage=store.optuna, study_name="s", load_if_exists=True)._study_id

    with ThreadPoolExecutor(1, thread_name_prefix="first") as pool, \
            ThreadPoolExecutor(1, thread_name_prefix="second") as other:
        pending = pool.submit(create, one)
        assert inserted.wait(PAUSE_S)
        waiting = other.submit(create, two)
        with pytest.raises(TimeoutError):  # the first creator's row holds the second one back
            waiting.result(timeout=1)
        go_on.set()
        assert pending.result() == waiting.result()
    assert len(optuna.get_all_study_names(one.optuna)) == 1
