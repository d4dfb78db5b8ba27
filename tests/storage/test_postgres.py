"""The same launch, view and queries on PostgreSQL (TUNER_TEST_POSTGRES_URL)."""

import json

from tests.helpers import check_consistent, expected_best, tuner, write_study
from tuner.storage import queries
from tuner.storage.engine import reader_engine


def test_launch_and_best_view_on_postgres(postgres_url, tmp_path) -> None:
    study = write_study(tmp_path, name="on postgres")
    result = tuner("launch", str(study), "--workers", "2", "--storage", postgres_url, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not (tmp_path / "tuner.db").exists()
    engine = reader_engine(postgres_url)
    check_consistent(engine, "on postgres", workers=2)
    rows = queries.best_configs(engine, "on postgres")
    assert {(r["optimizer"], r["sampler"]): r["run_id"] for r in rows} == expected_best(engine, "on postgres")
    best = json.loads(tuner("best", "on postgres", "--format", "json", "--storage", postgres_url, cwd=tmp_path).stdout)
    assert {b["config"]["optimizer"] for b in best} == {"sgd", "adam"}
    assert all(b["objective"]["seeds"] == 2 for b in best)
    engine.dispose()
