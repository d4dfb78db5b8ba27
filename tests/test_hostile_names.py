"""Names that reach SQL are bound, never spliced: stored and shown verbatim, never executed."""

import json

import pytest

from tests.helpers import check_consistent, tuner, write_study
from tuner.storage.engine import reader_engine

NAMES = [
    "robert'); DROP TABLE tuner_runs; --",
    'quote " and \\ backslash; SELECT 1',
    "ünïcødé 名前 🚀 ½",
    "x" * 200,
]


@pytest.mark.parametrize("name", NAMES, ids=["injection", "quotes", "unicode", "long"])
def test_hostile_experiment_names_round_trip(tmp_path, name: str) -> None:
    path = write_study(tmp_path, name=name, trials=2, optimizers=["sgd"], samplers=["random"], reevaluate=1)
    path = path.rename(tmp_path / "study.yaml")
    result = tuner("launch", str(path), "--workers", "1", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    engine = reader_engine(f"sqlite:///{tmp_path}/tuner.db")
    check_consistent(engine, name)
    best = json.loads(tuner("best", name, "--format", "json", cwd=tmp_path).stdout)
    assert [b["experiment"] for b in best] == [name]
    listing = json.dumps(tuner("list", cwd=tmp_path).stdout)
    assert tuner("status", name, cwd=tmp_path).returncode == 0
    assert name[:20] in json.loads(listing)
