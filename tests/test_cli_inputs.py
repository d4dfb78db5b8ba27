"""Every input gets a clear answer: one line naming the problem and what is allowed (exit 2), or it works."""

import csv
import io
import os
import re
import shlex
import subprocess
import sys
from importlib.metadata import version

import pytest
import typer
import yaml
from click.testing import Result
from typer.testing import CliRunner

from tests.helpers import REPO, TINY
from tuner import cli, report
from tuner.spec import parse_experiment
from tuner.storage.store import Store
from tuner.tasks import TASKS
from tuner.worker import create_experiment

runner = CliRunner()


def invoke(*args: str) -> Result:
    return runner.invoke(cli.app, list(args))


def storage_with(tmp_path, *names: str) -> str:
    """A SQLite URL whose storage holds experiments ``names`` (created, no trial run)."""
    url = f"sqlite:///{tmp_path}/tuner.db"
    store = Store.open(url, heartbeat=False)
    for name in names:
        create_experiment(store, parse_experiment({**TINY, "name": name}))
    store.close()
    return url


def one_error_line(result: Result) -> str:
    """The single line a refused input prints (exit 2, nothing on stdout, no traceback)."""
    assert result.exit_code == 2, result.output
    assert result.stdout == "" and result.stderr.count("\n") == 1, result.output
    assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr
    return result.stderr.removeprefix("error: ").rstrip("\n")


def test_version_is_the_installed_packages() -> None:
    result = invoke("--version")
    assert result.exit_code == 0 and result.stdout == f"tuner {version('tuner')}\n"


def test_only_launch_mentions_a_study_file_in_its_storage_help() -> None:
    commands = typer.main.get_command(cli.app).commands
    helps = {name: next(p.help for p in command.params if p.name == "storage")
             for name, command in commands.items() if any(p.name == "storage" for p in command.params)}
    assert set(helps) == {"launch", "worker", "best", "tunability", "status", "list", "dashboard"}
    assert "study file" in helps.pop("launch")
    assert not any("study file" in text for text in helps.values()), helps


def test_best_without_a_name_shows_the_only_experiment(tmp_path) -> None:
    url = storage_with(tmp_path, "solo")
    result = invoke("best", "--storage", url)
    assert result.exit_code == 0 and result.stdout == "experiment 'solo' has no completed trial yet\n"


def test_best_without_a_name_lists_several_experiments_shortened(tmp_path) -> None:
    names = [f"exp{i}" for i in range(6)] + ["x" * 100]
    url = storage_with(tmp_path, *names)
    line = one_error_line(invoke("best", "--storage", url))
    shown = ", ".join(f"'{n}'" for n in names[:5])
    assert line == f"EXPERIMENT is needed: this storage holds 7 experiments; allowed: {shown} and 2 more"


def test_best_without_a_name_on_an_empty_storage_gives_lists_hint(tmp_path) -> None:
    url = storage_with(tmp_path)
    assert one_error_line(invoke("best", "--storage", url)) == cli.NO_EXPERIMENTS
    listing = invoke("list", "--storage", url)
    assert listing.exit_code == 0 and listing.stdout == cli.NO_EXPERIMENTS + "\n"


def test_status_without_a_name_shows_the_only_experiment_as_best_does(tmp_path) -> None:
    url = storage_with(tmp_path, "solo")
    result = invoke("status", "--storage", url)
    assert result.exit_code == 0 and result.stdout.startswith("experiment solo on softmax; objective "), result.output
    several = storage_with(tmp_path, "other")
    assert one_error_line(invoke("status", "--storage", several)) == (
        "EXPERIMENT is needed: this storage holds 2 experiments; allowed: 'solo', 'other'")
    (tmp_path / "empty").mkdir()
    assert one_error_line(invoke("status", "--storage", storage_with(tmp_path / "empty"))) == cli.NO_EXPERIMENTS


def test_list_folds_a_long_name_instead_of_cutting_it(tmp_path, monkeypatch) -> None:
    """A name in the table can be copied whole: folded onto more lines, never ended with …."""
    name = "long-" + "n" * 120 + "-end"
    monkeypatch.setattr(cli.console, "width", 80)
    result = invoke("list", "--storage", storage_with(tmp_path, name))
    assert result.exit_code == 0 and "…" not in result.stdout, result.stdout
    first_column = "".join(line.split("│")[1].strip() for line in result.stdout.splitlines()[3:-1])
    assert first_column == name, result.stdout


@pytest.mark.parametrize("name", ["=HYPERLINK(\"http://127.0.0.1:9/?\"&A1,\"x\")", "+1+1", "-2+3", "@SUM(1)"])
def test_best_csv_quotes_a_name_a_spreadsheet_would_run(name) -> None:
    """OWASP's CSV injection rule: a text cell starting with = + - or @ gets a leading '; numbers do not."""
    row = {column: None for column in report.CSV_COLUMNS} | {
        "experiment": name, "optimizer": "sgd", "sampler": "tpe", "repeat": 0, "trial_number": 3,
        "trial_objective": -1.5, "params": {"lr": 0.1}}
    (written,) = csv.DictReader(io.StringIO(report.best_as_csv([row]), newline=""))
    assert written["experiment"] == f"'{name}" and written["optimizer"] == "sgd"
    assert written["trial_objective"] == "-1.5" and written["reeval_mean"] == "" and written["config"] == '{"lr": 0.1}'


def test_the_launchs_closing_hints_paste_into_a_shell(postgres_url, tmp_path) -> None:
    """The storage quoted for a shell (a query's & would end the command there), each hint on one
    line even in an 80-column terminal."""
    url = f"{postgres_url}?application_name=tuner&connect_timeout=5"
    study = tmp_path / "tiny.yaml"
    study.write_text(yaml.safe_dump({**TINY, "trials": 2, "optimizers": ["sgd"], "samplers": ["random"],
                                     "reevaluate": 0}))
    result = subprocess.run([sys.executable, "-m", "tuner", "launch", str(study), "--workers", "1", "--storage", url],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "80"})
    assert result.returncode == 0, result.stdout + result.stderr
    hints = [shlex.split(line) for line in result.stdout.splitlines() if "--storage" in line]
    assert [hint[-3:] for hint in hints] == [["tiny", "--storage", url], ["dashboard", "--storage", url]], hints


@pytest.mark.parametrize(("option", "value", "allowed"), [
    ("--optimizer", "adamx", "sgd, adam"),
    ("--sampler", "cmaes", "random, tpe"),  # a sampler tuner has, which this experiment did not use
])
def test_best_names_the_filter_that_matched_nothing(tmp_path, option, value, allowed) -> None:
    url = storage_with(tmp_path, "tiny")
    line = one_error_line(invoke("best", "tiny", option, value, "--storage", url))
    assert line == f"{option.lstrip('-')}='{value}' is not in experiment 'tiny'; allowed: {allowed}"


@pytest.mark.parametrize("task", list(TASKS))
def test_gradcheck_lists_the_tasks_options_for_an_unknown_one(task) -> None:
    line = one_error_line(invoke("gradcheck", task, "-o", "nope=1"))
    fields = ", ".join(TASKS[task][0].model_fields)
    assert line == f"task.options.nope: unknown field; allowed: {fields}"


@pytest.mark.parametrize(("option", "message"), [
    ("dim=[1, 2", r"^--option 'dim', line 1, column 6: not valid YAML: expected ',' or '\]'"),
    ("dim=&a [*a]", r"^--option 'dim': an alias refers to a node that contains it"),
    ("condition_number=.inf", r"^task\.options\.condition_number=\.inf: Input should be a finite number$"),
    ("dim=true", r"^task\.options\.dim=true: Input should be a valid integer$"),
    ("novalue", r"^--option 'novalue' is not allowed; allowed: KEY=VALUE$"),
])
def test_gradcheck_options_are_read_as_study_files_are(option: str, message: str) -> None:
    assert re.search(message, one_error_line(invoke("gradcheck", "quadratic", "-o", option)))


def test_reading_commands_import_neither_optuna_nor_scikit_learn_or_pandas(tmp_path) -> None:
    """What keeps ``tuner status/list/best`` quick: they load none of the heavy libraries but what
    they compute with (``best``: scipy's bootstrap)."""
    url = storage_with(tmp_path, "tiny")
    for command, needed in ((["list"], ""), (["status", "tiny"], ""), (["best", "tiny"], "scipy"),
                            (["best", "tiny", "--format", "json"], "scipy")):
        heavy = tuple(m for m in ("optuna", "sklearn", "scipy", "pandas", "alembic") if m != needed)
        code = (f"import sys\nfrom tuner.cli import app\ntry:\n    app({[*command, '--storage', url]!r})\n"
                "except SystemExit as exit:\n    assert not exit.code, exit.code\n"
                f"print('loaded:', *sorted(m for m in sys.modules if m.split('.')[0] in {heavy!r}))")
        result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines()[-1] == "loaded:", command
