"""tuner's schema comes from its migrations, matches the table definitions, and coexists with Optuna's."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from tuner.storage import schema
from tuner.storage.engine import writer_engine
from tuner.storage.migrate import upgrade
from tuner.storage.store import Store


def test_migrations_build_exactly_the_declared_schema(tmp_path) -> None:
    engine = writer_engine(f"sqlite:///{tmp_path}/m.db")
    upgrade(engine)
    upgrade(engine)  # idempotent
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"version_table": "tuner_alembic_version"})
        diff = [d for d in compare_metadata(context, schema.metadata) if "tuner_" in str(d)]
        assert diff == []
        assert conn.execute(text("SELECT version_num FROM tuner_alembic_version")).scalar() == "0001"
    assert schema.BEST_CONFIGS_VIEW in inspect(engine).get_view_names()


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
