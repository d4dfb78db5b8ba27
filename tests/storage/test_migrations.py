"""tuner's schema comes from its migrations, matches the table definitions, and coexists with Optuna's."""

from datetime import UTC, datetime

import optuna
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import delete, insert, inspect, select, text
from sqlalchemy.exc import IntegrityError

from tests.helpers import downgrade
from tuner.storage import schema
from tuner.storage.engine import writer_engine
from tuner.storage.migrate import MIGRATIONS, upgrade
from tuner.storage.store import Store


def test_migrations_build_exactly_the_declared_schema(tmp_path) -> None:
    engine = writer_engine(f"sqlite:///{tmp_path}/m.db")
    upgrade(engine)
    upgrade(engine)  # idempotent
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"version_table": "tuner_alembic_version"})
        diff = [d for d in compare_metadata(context, schema.metadata) if "tuner_" in str(d)]
        assert diff == []
        assert conn.execute(text("SELECT version_num FROM tuner_alembic_version")).scalar() == HEAD
    assert schema.BEST_CONFIGS_VIEW in inspect(engine).get_view_names()

HEAD = ScriptDirectory(str(MIGRATIONS)).get_current_head()


def populate(engine) -> None:
    """Two slots: one decided by its re-evaluations (the trial with the worse own objective wins),
    one without re-evaluations (the lowest objective wins, ties to the first run)."""
    now = datetime.now(UTC)
    run = {"params": {}, "wall_time": 1.0, "steps": 10, "samples": 10, "created_at": now, "kind": "trial",
           "state": "COMPLETE", "trial_number": None, "source_run_id": None}
    with engine.begin() as conn:
        conn.execute(insert(schema.experiments).values(id=1, name="e", task="quadratic", spec={}, created_at=now))
        conn.execute(insert(schema.studies), [
            {"id": 1, "experiment_id": 1, "study_name": "a", "optimizer": "adam", "sampler": "tpe", "repeat": 0,
             "n_trials": 3},
            {"id": 2, "experiment_id": 1, "study_name": "b", "optimizer": "sgd", "sampler": "tpe", "repeat": 0,
             "n_trials": 3}])
        conn.execute(insert(schema.runs), [
            {**run, "id": 1, "study_id": 1, "trial_number": 0, "seed": 0, "objective": 0.1},
            {**run, "id": 2, "study_id": 1, "trial_number": 1, "seed": 1, "objective": 0.2},
            {**run, "id": 3, "study_id": 1, "trial_number": 2, "seed": 2, "objective": 0.3, "state": "DIVERGED"},
            {**run, "id": 4, "study_id": 1, "kind": "reevaluation", "source_run_id": 1, "seed": 9, "objective": 0.9},
            {**run, "id": 5, "study_id": 1, "kind": "reevaluation", "source_run_id": 2, "seed": 9, "objective": 0.4},
            {**run, "id": 6, "study_id": 1, "kind": "reevaluation", "source_run_id": 2, "seed": 8, "objective": 0.6},
            {**run, "id": 7, "study_id": 1, "kind": "reevaluation", "source_run_id": 2, "seed": 7, "objective": None,
             "state": "DIVERGED"},
            {**run, "id": 8, "study_id": 2, "trial_number": 0, "seed": 0, "objective": 0.5},
            {**run, "id": 9, "study_id": 2, "trial_number": 1, "seed": 1, "objective": 0.5},
            {**run, "id": 10, "study_id": 2, "trial_number": 2, "seed": 2, "objective": 0.7}])


def best_rows(engine) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(text(
            "SELECT optimizer, run_id, reeval_mean, reeval_min, reeval_max, reeval_count, reeval_diverged"
            " FROM tuner_best_configs ORDER BY optimizer"))]


def test_every_revision_of_the_view_ranks_the_same_way_and_downgrades(tmp_path) -> None:
    engine = writer_engine(f"sqlite:///{tmp_path}/m.db")
    upgrade(engine, "0001")
    populate(engine)
    expected = [("adam", 2, 0.5, 0.4, 0.6, 2, 1), ("sgd", 8, None, None, None, 0, 0)]
    assert best_rows(engine) == expected
    upgrade(engine)
    assert best_rows(engine) == expected
    downgrade(engine, "0001")
    assert best_rows(engine) == expected


def test_experiments_stored_before_0003_have_study_file_format_1(database) -> None:
    """Upgrading a database of revision 0002 keeps its experiment, now with spec_version 1 (the
    format of every study file stored before); a downgrade drops the column again."""
    engine = writer_engine(database)
    upgrade(engine, "0002")
    with engine.begin() as conn:
        conn.execute(insert(schema.experiments).values(id=1, name="e", task="quadratic", spec={"trials": 3},
                                                       created_at=datetime.now(UTC)))
    upgrade(engine)
    with engine.connect() as conn:
        e = schema.experiments
        assert conn.execute(select(e.c.name, e.c.spec, e.c.spec_version)).all() == [("e", {"trials": 3}, 1)]
    downgrade(engine, "0002")
    assert "spec_version" not in {column["name"] for column in inspect(engine).get_columns("tuner_experiments")}
    engine.dispose()


def test_optuna_and_tuner_tables_share_the_database(tmp_path) -> None:
    store = Store.open(f"sqlite:///{tmp_path}/s.db")
    names = set(inspect(store.engine).get_table_names())
    assert {"studies", "trials", "alembic_version"} <= names  # Optuna's
    assert {"tuner_experiments", "tuner_studies", "tuner_runs", "tuner_curves", "tuner_alembic_version"} <= names
    with store.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA synchronous")).scalar() == 1  # NORMAL
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() >= 10_000
    store.close()


def name_collations(engine) -> dict[str, str]:
    with engine.connect() as conn:
        return dict(conn.execute(text(
            "SELECT CONCAT(TABLE_NAME, '.', COLUMN_NAME), COLLATION_NAME FROM information_schema.COLUMNS"
            " WHERE TABLE_SCHEMA = DATABASE() AND COLUMN_NAME IN ('name', 'study_name')")).all())


def test_0004_makes_names_compare_exactly_on_mariadb(mysql_url) -> None:
    """Optuna's tables are made first (as Store.open makes them), then tuner's up to 0003 with an
    experiment; 0004 gives every name column, Optuna's too, the binary NO PAD collation, and keeps
    the unique indexes; a downgrade gives back the table's own collation."""
    optuna.storages.RDBStorage(mysql_url).engine.dispose()
    engine = writer_engine(mysql_url)
    upgrade(engine, "0003")
    with engine.begin() as conn:
        conn.execute(insert(schema.experiments).values(name="ok", task="quadratic", spec={},
                                                       created_at=datetime.now(UTC)))
    columns = {"tuner_experiments.name", "tuner_studies.study_name", "studies.study_name"}
    assert name_collations(engine) == dict.fromkeys(columns, "utf8mb4_general_ci")
    upgrade(engine)
    assert name_collations(engine) == dict.fromkeys(columns, "utf8mb4_nopad_bin")
    for name in ("OK", "ok ", "ók"):
        with engine.begin() as conn:
            conn.execute(insert(schema.experiments).values(name=name, task="quadratic", spec={},
                                                           created_at=datetime.now(UTC)))
    with pytest.raises(IntegrityError), engine.begin() as conn:  # still unique
        conn.execute(insert(schema.experiments).values(name="ok", task="quadratic", spec={},
                                                       created_at=datetime.now(UTC)))
    with engine.begin() as conn:
        assert conn.execute(select(schema.experiments.c.name).where(schema.experiments.c.name == "ok")).all() == [
            ("ok",)]
        conn.execute(delete(schema.experiments).where(schema.experiments.c.name != "ok"))
    downgrade(engine, "0003")
    assert name_collations(engine) == dict.fromkeys(columns, "utf8mb4_general_ci")
    engine.dispose()


def test_a_new_mariadb_database_gets_exact_names(mysql_url) -> None:
    store = Store.open(mysql_url, heartbeat=False)
    assert set(name_collations(store.engine).values()) == {"utf8mb4_nopad_bin"} and len(
        name_collations(store.engine)) == 3
    store.close()
