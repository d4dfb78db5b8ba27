"""Names that reach SQL are bound, never spliced: stored and shown verbatim, never executed."""

import json

import pytest
from typer.testing import CliRunner

from tests.dashboard.test_pages import open_page
from tests.helpers import TINY, check_consistent, tuner, write_study
from tuner.cli import app
from tuner.spec import parse_experiment
from tuner.storage import queries
from tuner.storage.engine import reader_engine
from tuner.storage.store import Store
from tuner.worker import create_experiment, run_worker

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


def test_hostile_names_on_a_server(server_url, monkeypatch) -> None:
    store = Store.open(server_url)
    for name in NAMES:  # in this process: the launch command itself is covered above
        spec = parse_experiment({**TINY, "name": name, "trials": 2, "optimizers": ["sgd"], "samplers": ["random"],
                                 "reevaluate": 0})
        create_experiment(store, spec)
        assert run_worker(store, name) == 2
    store.close()
    engine = reader_engine(server_url)
    assert [row["name"] for row in queries.experiments(engine)] == NAMES  # verbatim; no table was dropped
    for name in NAMES:
        check_consistent(engine, name)
        best = CliRunner().invoke(app, ["best", name, "--format", "json", "--storage", server_url])
        assert [b["experiment"] for b in json.loads(best.output)] == [name]
    engine.dispose()
    app_test = open_page(monkeypatch, server_url, "experiments", NAMES[0])
    assert app_test.sidebar.selectbox[0].options == NAMES and app_test.sidebar.selectbox[0].value == NAMES[0]
    from dashboard import data

    data.engine(server_url).dispose()
