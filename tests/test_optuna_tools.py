"""Optuna's own tools on tuner's database: metric names shown, and a study deleted by them harmless."""

import json
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from typer.testing import CliRunner

from tests.helpers import TINY
from tuner import analysis, cli, open_experiment
from tuner.spec import parse_experiment
from tuner.storage import queries
from tuner.storage.store import Store
from tuner.worker import create_experiment, quiet_optuna, run_worker

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

SMALL = {**TINY, "name": "tools", "optimizers": ["adam"], "samplers": ["random"], "trials": 4, "reevaluate": 0}


@pytest.fixture
def experiment(tmp_path):
    quiet_optuna()
    url = f"sqlite:///{tmp_path}/tools.db"
    store = Store.open(url)
    spec = parse_experiment(SMALL)
    create_experiment(store, spec)
    run_worker(store, spec.name)
    store.close()
    return url, spec


def optuna_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([Path(sys.executable).with_name("optuna"), *args], capture_output=True, text=True)


def test_optuna_s_tools_show_the_objective_s_name(experiment) -> None:
    url, spec = experiment
    study = optuna.load_study(study_name="tools/adam/random/0", storage=url)
    assert study.metric_names == ["final_val_loss"]
    best = optuna_cli("best-trial", "--study-name", "tools/adam/random/0", "--storage", url, "-f", "json")
    assert best.returncode == 0, best.stderr
    assert set(json.loads(best.stdout)["value"]) == {"final_val_loss"}  # named, not "Objective 0"


def test_a_study_deleted_with_optuna_s_tools_breaks_no_tuner_command(experiment, tmp_path) -> None:
    """What optuna-dashboard's delete button does: Optuna's study and trials go, tuner's rows stay."""
    url, spec = experiment
    optuna.delete_study(study_name="tools/adam/random/0", storage=url)
    runner = CliRunner()
    for command in (["status", "tools"], ["best", "tools", "--format", "json"], ["list"]):
        result = runner.invoke(cli.app, [*command, "--storage", url])
        assert result.exit_code == 0, (command, result.output)
    with open_experiment("tools", storage=url) as stored:
        assert len(stored.trials()) == 4 and len(stored.best()) == 1 and len(stored.studies()) == 1
    assert analysis.importances(url, "tools", "adam") == {}  # no Optuna trials left to analyse
    store = Store.open(url)  # a worker or launch on the experiment again: the study is made anew, its budget met
    create_experiment(store, spec)
    assert run_worker(store, spec.name) == 0
    experiment_id, _ = queries.experiment(store.engine, "tools")
    assert queries.optuna_study_ids(store.engine, ["tools/adam/random/0"])
    store.close()
    from dashboard import data

    assert data.problem(url) is None
    assert len(data.trials(url, "tools")) == 4
