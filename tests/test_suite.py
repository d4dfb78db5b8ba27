"""Suite files: the shipped one and its expansion, every mistake in one line (exit 2, nothing written),
and a suite launched end to end with ``tuner best --suite`` checked against the stored curves."""

import copy
import json
import math
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from sqlalchemy import select
from typer.testing import CliRunner

from tests.helpers import REPO, run_rows, tuner
from tuner import cli
from tuner.optim import OPTIMIZERS
from tuner.spec import Experiment
from tuner.storage import schema
from tuner.storage.engine import reader_engine
from tuner.storage.store import Store
from tuner.suite import PROTOCOLS, load_suite, parse_suite
from tuner.worker import create_experiment

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

SHIPPED = REPO / "suites" / "algoperf_small.yaml"
FAST = {
    "suite": "fast",
    "samplers": ["random"],
    "trials": 2,
    "repeats": 2,
    "optimizers": ["sgd", "momentum"],
    "space": {"batch_size": 64, "schedule": "constant", "lr": {"low": 0.01, "high": 0.1}},
    "tasks": [
        {"name": "quad", "task": {"name": "quadratic", "options": {"dim": 5, "condition_number": 10}},
         "budget": {"steps": 60, "eval_every": 10}, "target": 0.05},
        {"name": "soft", "task": {"name": "softmax"}, "budget": {"epochs": 2}, "target": 0.8},
    ],
}
"""A suite that runs in seconds: two optimizers, random search, 2 trials x 2 studies, two tasks."""
runner = CliRunner()


def write(directory: Path, data: dict, name: str = "suite.yaml") -> Path:
    path = directory / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def one_error_line(*args: str) -> str:
    """The single line a refused input prints (exit 2, nothing on stdout)."""
    result = runner.invoke(cli.app, list(args))
    assert result.exit_code == 2, result.output
    assert result.stdout == "" and result.stderr.count("\n") == 1, result.output
    assert result.stderr.startswith("error: ")
    return result.stderr.removeprefix("error: ").rstrip("\n")


def test_the_shipped_suite_runs_seven_tasks_under_the_algoperf_protocol() -> None:
    suite = load_suite(SHIPPED)
    assert suite.suite == SHIPPED.stem and suite.protocol == "algoperf"
    tasks = {(t.task.name, t.task.options.get("condition_number")) for t in suite.tasks}
    assert tasks >= {("quadratic", 100), ("quadratic", 1000), ("rosenbrock", None), ("logistic", None),
                     ("softmax", None), ("svm", None), ("mlp", None)}
    experiments = suite.experiments()
    assert [e.name for e in experiments] == [f"algoperf_small/{t.name}" for t in suite.tasks]
    for experiment, task in zip(experiments, suite.tasks, strict=True):
        assert ([s.name for s in experiment.samplers], experiment.trials, experiment.repeats, experiment.pruner,
                experiment.reevaluate) == (["qmc"], 5, 3, "none", 0)
        assert experiment.in_suite.tasks == [t.name for t in suite.tasks]
        assert experiment.in_suite.target == task.target
        assert [o.name for o in experiment.optimizers] == [o.name for o in suite.optimizers]


def test_every_task_shares_one_search_space() -> None:
    """The same space for every task; the batch size only where there is one (data tasks)."""
    experiments = {e.task.name: e for e in load_suite(SHIPPED).experiments()}
    for optimizer in ("sgd", "adam"):
        quadratic, mlp = (experiments[name].search_space(optimizer) for name in ("quadratic", "mlp"))
        assert [p for p in mlp if p.name != "batch_size"] == quadratic
        assert next(p for p in mlp if p.name == "batch_size").fixed == 64


def test_objectives_follow_the_target() -> None:
    experiments = load_suite(SHIPPED).experiments()
    for experiment in experiments:
        objective = experiment.objective
        if experiment.task.name in ("quadratic", "rosenbrock"):
            assert (objective.name, objective.target) == ("steps_to_target", experiment.in_suite.target)
        else:
            assert objective.name == "best_val_loss"


def test_a_suite_without_a_protocol_sets_its_own_samplers_and_trials() -> None:
    (quad, soft) = parse_suite(FAST).experiments()
    assert (quad.name, [s.name for s in quad.samplers], quad.trials, quad.repeats, quad.pruner) == (
        "fast/quad", ["random"], 2, 2, "none")
    assert "batch_size" not in quad.space and soft.space["batch_size"] == 64
    assert Experiment.model_validate(soft.model_dump()) == soft  # a valid study file


def changed(path: str, value) -> dict:
    """FAST with the field at ``path`` (dots; list indices as numbers) set to ``value`` (None: removed)."""
    data = copy.deepcopy(FAST)
    *parents, last = [int(part) if part.isdigit() else part for part in path.split(".")]
    target = data
    for part in parents:
        target = target[part]
    if value is None:
        del target[last]
    else:
        target[last] = value
    return data


@pytest.mark.parametrize(("data", "message"), [
    (changed("colour", "red"), "colour: unknown field"),
    (changed("tasks.0.colour", "red"), "tasks.0.colour: unknown field"),
    (changed("suite", "a/b"), "suite='a/b': allowed: letters, digits, '_', '.' and '-' (a letter or "
                              "digit first), at most 64 characters"),
    (changed("tasks.1.name", "quad"), "tasks: each name may appear once; got [\"quad\", \"quad\"]"),
    (changed("tasks.0.name", "-q"), "tasks.0.name='-q': allowed: letters, digits, '_', '.' and '-' "
                                    "(a letter or digit first), at most 64 characters"),
    (changed("tasks", []), "tasks=[]: List should have at least 1 item after validation, not 0"),
    (changed("tasks.0.target", 0), "tasks.0.target=0: Input should be greater than 0"),
    (changed("tasks.0.target", math.inf), "tasks.0.target=.inf is not allowed; allowed: a finite number"),
    (changed("tasks.0.target", None), "tasks.0.target: required field is missing"),
    (changed("tasks.0.budget", {"epochs": 3}), "tasks.0 (quad): budget: task 'quadratic' is synthetic and counts "
                                               "steps; allowed: budget.steps only"),
    (changed("optimizers", ["sgd", "adamx"]), "optimizers.1.name='adamx': Input should be "
                                              + ", ".join(map(repr, list(OPTIMIZERS)[:-1]))
                                              + f" or {list(OPTIMIZERS)[-1]!r}"),
    (changed("space.lr", {"low": -1, "high": 1}), "tasks.0 (quad): space.lr.low=-1 is not allowed; allowed: a "
                                                  "finite number in (0, inf)"),
    (changed("samplers", None), "samplers: required field is missing (or name a protocol: algoperf)"),
    (changed("protocol", "algoperf"), "samplers: set by protocol 'algoperf'; leave it out, or leave out protocol to "
                                      "choose samplers, trials, repeats and pruner"),
    (changed("protocol", "mlcommons"), "protocol='mlcommons': Input should be 'algoperf'"),
    (changed("storage", "oracle://x"), "storage='oracle://x': database 'oracle' is not supported; allowed: sqlite, "
                                       "postgresql, mysql, mariadb"),
])
def test_a_bad_suite_file_is_one_line_and_writes_nothing(tmp_path, data, message) -> None:
    database = tmp_path / "tuner.db"
    line = one_error_line("launch", str(write(tmp_path, data)), "--storage", f"sqlite:///{database}")
    assert line == message
    assert not database.exists()


def test_a_suite_file_that_is_not_a_mapping_is_refused(tmp_path) -> None:
    path = tmp_path / "suite.yaml"
    path.write_text("suite\n")  # not a mapping: a study file's message, which has no suite key
    assert "expected a mapping of fields" in one_error_line("launch", str(path), "--storage",
                                                            f"sqlite:///{tmp_path}/t.db")


def test_the_protocol_sets_algoperfs_numbers() -> None:
    protocol = PROTOCOLS["algoperf"]
    assert (protocol.samplers, protocol.trials, protocol.repeats, protocol.pruner) == (("qmc",), 5, 3, "none")


def test_a_suite_stored_with_other_tasks_or_a_changed_task_is_refused_before_any_trial(tmp_path) -> None:
    url = f"sqlite:///{tmp_path}/tuner.db"
    created = runner.invoke(cli.app, ["launch", str(write(tmp_path, FAST)), "--workers", "0", "--storage", url])
    assert created.exit_code == 0, created.output
    more = copy.deepcopy(FAST)
    more["tasks"].append({**FAST["tasks"][1], "name": "soft2"})
    assert one_error_line("launch", str(write(tmp_path, more)), "--storage", url) == (
        "suite 'fast' is stored with the tasks quad, soft; this suite file has quad, soft, soft2: give it a new "
        "name to start another suite")
    longer = changed("tasks.1.budget", {"epochs": 3})  # the second task: the first would run before it otherwise
    assert one_error_line("launch", str(write(tmp_path, longer)), "--workers", "1", "--storage", url) == (
        "experiment 'fast/soft' already exists with a different study file (changed: budget); give it a new name "
        "to start another experiment")
    engine = reader_engine(url)
    with engine.connect() as conn:
        assert conn.execute(select(schema.runs.c.id)).all() == []
        assert conn.execute(select(schema.experiments.c.name)).scalars().all() == ["fast/quad", "fast/soft"]
    engine.dispose()


def test_best_suite_names_an_unknown_suite_the_missing_experiments_and_unfinished_ones(tmp_path) -> None:
    url = f"sqlite:///{tmp_path}/tuner.db"
    store = Store.open(url, heartbeat=False)
    quad, _ = parse_suite(FAST).experiments()
    create_experiment(store, quad)  # the suite's first task only
    store.close()
    assert one_error_line("best", "--suite", "other", "--storage", url) == (
        "suite 'other' is not in this storage; suites: 'fast'")
    assert one_error_line("best", "--suite", "fast", "--storage", url) == (
        "suite 'fast' has 1 of its 2 experiments not in this storage ('fast/soft'); run them: tuner launch "
        "SUITE_FILE (the suite file whose suite: is 'fast')")
    created = runner.invoke(cli.app, ["launch", str(write(tmp_path, FAST)), "--workers", "0", "--storage", url])
    assert created.exit_code == 0, created.output
    assert one_error_line("best", "--suite", "fast", "--storage", url) == (
        "suite 'fast' has experiments still running or stopped before their budget (trials finished: fast/quad 0 of "
        "8, fast/soft 0 of 8); finish them: tuner launch SUITE_FILE (the suite file whose suite: is 'fast')")


@pytest.mark.parametrize(("args", "message"), [
    (["--unit", "seconds"], "--unit is allowed only with --suite"),
    (["--suite", "fast", "--unit", "hours"], "--unit='hours' is not allowed; allowed: steps, seconds"),
    (["fast/quad", "--suite", "fast"], "EXPERIMENT is not allowed with --suite, which ranks every optimizer of the "
                                       "suite's experiments"),
    (["--suite", "fast", "--optimizer", "sgd"], "--optimizer is not allowed with --suite, which ranks every "
                                                "optimizer of the suite's experiments"),
])
def test_best_suite_options(tmp_path, args, message) -> None:
    assert one_error_line("best", *args, "--storage", f"sqlite:///{tmp_path}/none.db") == message


def oracle_times(engine, suite: dict, unit: str) -> dict[tuple[str, str], float]:
    """t per (optimizer, task) from the stored rows, written out plainly: per study the first `trials`
    finished trials by number, each one's first evaluation at or under the target; the fastest per
    study, the median over studies."""
    series = {"quadratic": "loss", "rosenbrock": "loss"}
    times = {}
    for task in suite["tasks"]:
        name = f"{suite['suite']}/{task['name']}"
        studies: dict[tuple[str, str], list] = {}
        for run in sorted(run_rows(engine, name), key=lambda r: r["trial_number"] if r["kind"] == "trial" else 0):
            if run["kind"] == "trial" and run["state"] in ("COMPLETE", "PRUNED", "DIVERGED"):
                studies.setdefault((run["optimizer"], run["study_name"]), []).append(run["id"])
        c = schema.curves
        for (optimizer, _), ids in studies.items():
            best = math.inf
            for run_id in ids[: suite["trials"]]:
                with engine.connect() as conn:
                    curve = conn.execute(select(c.c.steps, c.c.seconds, c.c["values"]).where(
                        c.c.run_id == run_id, c.c.series == series.get(task["task"]["name"], "val_loss"))).first()
                if curve is None:
                    continue
                # the stored format (schema): int32 steps, float32 seconds, float64 values (NaN: not finite)
                steps, seconds, values = (np.frombuffer(blob, dtype=dtype).tolist()
                                          for blob, dtype in zip(curve, ("<i4", "<f4", "<f8"), strict=True))
                hits = [i for i, v in enumerate(values) if v <= task["target"]]
                if hits:
                    best = min(best, (steps if unit == "steps" else seconds)[hits[0]])
            times.setdefault((optimizer, task["name"]), []).append(best)
    return {key: statistics.median(values) for key, values in times.items()}


def test_a_suite_launches_end_to_end_and_best_ranks_it_from_the_stored_curves(tmp_path, monkeypatch) -> None:
    url = f"sqlite:///{tmp_path}/tuner.db"
    launched = tuner("launch", str(write(tmp_path, FAST)), "--workers", "2", "--storage", url, cwd=tmp_path)
    assert launched.returncode == 0, launched.stdout + launched.stderr
    assert "suite fast: AlgoPerf score over 2 tasks" in launched.stdout
    assert f"tuner best --suite fast --storage {url}" in launched.stdout
    engine = reader_engine(url)
    for unit in ("steps", "seconds"):
        result = runner.invoke(cli.app, ["best", "--suite", "fast", "--unit", unit, "--format", "json",
                                         "--storage", url])
        assert result.exit_code == 0, result.output
        shown = json.loads(result.stdout)
        assert [t["name"] for t in shown["tasks"]] == ["quad", "soft"]
        assert (shown["unit"], shown["studies"], shown["trials"], shown["r_max"]) == (unit, 2, 2, 4.0)
        expected = oracle_times(engine, FAST, unit)
        fastest = {task: min(t for (_, name), t in expected.items() if name == task) for task in ("quad", "soft")}
        for row in shown["scores"]:
            total = 0.0
            for task, cell in row["tasks"].items():
                t = expected[row["optimizer"], task]
                assert cell["time"] == (None if math.isinf(t) else pytest.approx(t))
                ratio = t / fastest[task] if math.isfinite(t) else math.inf
                assert cell["ratio"] == (None if math.isinf(ratio) else pytest.approx(ratio))
                total += max(0.0, 4.0 - ratio) / 3.0
            assert row["score"] == pytest.approx(total / 2)
            assert row["reached"] == sum(cell["time"] is not None for cell in row["tasks"].values())
        assert {task for row in shown["scores"] for task, cell in row["tasks"].items() if cell["time"]} == {
            "quad", "soft"}  # every task reached by someone: ratios of finite times are checked too
        scores = [row["score"] for row in shown["scores"]]
        assert scores == sorted(scores, reverse=True)
    engine.dispose()
    monkeypatch.setattr(cli.console, "width", 200)
    table = runner.invoke(cli.app, ["best", "--suite", "fast", "--storage", url])
    words = " ".join(table.stdout.split())  # a title is wrapped to its table's width
    assert table.exit_code == 0 and "targets: quad loss <= 0.05; soft val_loss <= 0.8" in words, table.output
    assert "time to target (steps): median over 2 studies of the fastest of 2 trials" in words
    csv_lines = runner.invoke(cli.app, ["best", "--suite", "fast", "--format", "csv", "--storage", url]).stdout
    assert csv_lines.splitlines()[0] == "rank,optimizer,sampler,score,reached,quad_ratio,quad_steps,soft_ratio,soft_steps"
    code = (f"import sys\nfrom tuner.cli import app\ntry:\n    app(['best', '--suite', 'fast', '--storage', {url!r}])\n"
            "except SystemExit as exit:\n    assert not exit.code, exit.code\nprint('loaded:', *sorted(m for m in "
            "sys.modules if m.split('.')[0] in ('optuna', 'sklearn', 'scipy', 'pandas', 'alembic')))")
    quick = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert quick.stdout.splitlines()[-1] == "loaded:", quick.stdout + quick.stderr  # as quick as tuner best
    status = runner.invoke(cli.app, ["status", "fast/soft", "--storage", url])  # each task is an ordinary experiment
    assert status.exit_code == 0 and status.stdout.startswith("experiment fast/soft on softmax; objective "
                                                              "best_val_loss"), status.output


@pytest.mark.e2e
def test_the_shipped_suite_runs_end_to_end_on_a_reduced_budget(tmp_path) -> None:
    """Every task of suites/algoperf_small.yaml under its protocol (5 trials x 3 studies, qmc), with two
    optimizers and short budgets."""
    data = yaml.safe_load(SHIPPED.read_text())
    data["optimizers"] = ["sgd", "adam"]
    for task in data["tasks"]:
        task["budget"] = {"steps": 100, "eval_every": 10} if "steps" in task["budget"] else {"epochs": 2}
    url = f"sqlite:///{tmp_path}/tuner.db"
    launched = tuner("launch", str(write(tmp_path, data)), "--workers", "2", "--storage", url, cwd=tmp_path)
    assert launched.returncode == 0, launched.stdout + launched.stderr
    result = runner.invoke(cli.app, ["best", "--suite", "algoperf_small", "--format", "json", "--storage", url])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert len(shown["tasks"]) == 7 and (shown["studies"], shown["trials"]) == (3, 5)
    assert {row["optimizer"] for row in shown["scores"]} == {"sgd", "adam"}
    assert all(0.0 <= row["score"] <= 1.0 and row["sampler"] == "qmc" for row in shown["scores"])
