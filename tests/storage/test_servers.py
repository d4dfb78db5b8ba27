"""The same launch, view and queries on PostgreSQL and MariaDB (TUNER_TEST_POSTGRES_URL, TUNER_TEST_MYSQL_URL)."""

import json

from tests.helpers import check_consistent, expected_best, tuner, write_study
from tuner.storage import queries
from tuner.storage.engine import reader_engine


def test_launch_and_best_view_on_a_server(server_url, tmp_path) -> None:
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
    full = queries.best_configs(engine, "on a server")[0]
    assert full["trial_objective"] != round(full["trial_objective"], 7), "objectives must keep double precision"
    engine.dispose()
