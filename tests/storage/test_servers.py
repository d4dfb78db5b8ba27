"""The same launch, view and queries on PostgreSQL and MariaDB (TUNER_TEST_POSTGRES_URL, TUNER_TEST_MYSQL_URL)."""

import json

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from tests.dashboard.test_pages import PAGES, open_page
from tests.helpers import check_consistent, expected_best, tuner, write_study
from tuner.storage import queries
from tuner.storage.engine import read_once, reader_engine, writer_engine

pytestmark = pytest.mark.e2e


def test_launch_best_view_and_dashboard_on_a_server(server_url, tmp_path, monkeypatch) -> None:
    study = write_study(tmp_path, name="on a server")
    result = tuner("launch", str(study), "--workers", "2", "--storage", server_url, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not (tmp_path / "tuner.db").exists()
    engine = reader_engine(server_url)
    check_consistent(engine, "on a server", workers=2)
    rows = queries.best_configs(engine, "on a server")
    assert {(r["optimizer"], r["sampler"]): r["run_id"] for r in rows} == expected_best(engine, "on a server")
    best = json.loads(tuner("best", "on a server", "--format", "json", "--storage", server_url, cwd=tmp_path).stdout)
    assert {b["config"]["optimizer"] for b in best} == {"sgd", "adam"}
    assert all(b["objective"]["seeds"] == 2 for b in best)
    with engine.connect() as conn:  # the ranking, for plain SQL
        ranked = conn.execute(text(
            "SELECT r.optimizer, r.sampler, r.rank, r.runs, r.mean_low, r.mean_high FROM tuner_rankings r "
            "JOIN tuner_experiments e ON e.id = r.experiment_id WHERE e.name = :name"), {"name": "on a server"}).all()
    assert {(r.optimizer, r.sampler) for r in ranked} == {(r["optimizer"], r["sampler"]) for r in rows}
    assert all(r.runs == 2 and r.mean_low <= r.mean_high for r in ranked)
    full = queries.best_configs(engine, "on a server")[0]
    assert full["trial_objective"] != round(full["trial_objective"], 7), "objectives must keep double precision"
    if server_url.startswith("postgresql"):  # workers commit without waiting for the WAL flush
        with writer_engine(server_url).connect() as conn:
            assert conn.execute(text("SHOW synchronous_commit")).scalar() == "off"
    with engine.connect() as conn, pytest.raises(DBAPIError, match="(?i)read.only"):
        conn.execute(text("DELETE FROM tuner_runs"))  # the readers' sessions cannot write
    engine.dispose()
    from dashboard import data

    for page in PAGES:
        app = open_page(monkeypatch, server_url, page, "on a server")
        assert app.title[0].value
    data.engine(server_url).dispose()


def test_a_connection_lost_while_a_read_sets_autocommit_is_sqlalchemy_s_error(server_url, monkeypatch) -> None:
    """``read_once`` sets AUTOCOMMIT by a driver call SQLAlchemy does not wrap: a server restarting
    right then must reach the worker as the DBAPIError it retries on, not as the driver's own
    (a worker died of pymysql's 'Lost connection' in CI), and the pool must go on."""
    engine = writer_engine(server_url)
    dbapi = engine.dialect.loaded_dbapi

    def lost(*args, **kwargs):
        raise dbapi.OperationalError("server restarted")

    with monkeypatch.context() as patch:
        patch.setattr(engine.dialect, "set_isolation_level", lost)
        with pytest.raises(DBAPIError) as raised:
            read_once(engine)
    assert isinstance(raised.value.orig, dbapi.OperationalError)
    with read_once(engine) as conn:
        assert conn.execute(text("SELECT 1")).scalar_one() == 1
    engine.dispose()
