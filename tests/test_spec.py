"""Study files: the shipped ones load; each kind of mistake gives its own clear message."""

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tuner import ConfigError
from tuner.cli import app
from tuner.spec import load_experiment, parse_experiment

STUDIES = Path(__file__).parent.parent / "studies"

VALID = """
name: ok
task: {name: softmax}
optimizers: [sgd, {name: adam, space: {lr: {low: 1e-4, high: 1e-1}, eps: null}}]
samplers: [random, tpe]
trials: 4
budget: {epochs: 2}
"""


def spec_with(**changes) -> dict:
    data = yaml.safe_load(VALID)
    for key, value in changes.items():
        if value is None:
            data.pop(key)
        else:
            data[key] = value
    return data


@pytest.mark.parametrize("path", sorted(STUDIES.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_study_files_are_valid(path: Path) -> None:
    spec = load_experiment(path)
    assert spec.name == path.stem
    for optimizer in spec.optimizers:
        assert spec.search_space(optimizer.name)


def test_quickstart_compares_six_or_more_optimizers_with_random_and_tpe() -> None:
    spec = load_experiment(STUDIES / "quickstart.yaml")
    assert spec.task.name == "mlp" and spec.task.options.get("dataset", "digits") == "digits"
    assert len(spec.optimizers) >= 6 and {s.name for s in spec.samplers} == {"random", "tpe"}


def test_numbers_like_1e_minus_3_are_numbers(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text(VALID)
    spec = load_experiment(path)
    lr = next(p for p in spec.search_space("adam") if p.name == "lr")
    assert (lr.low, lr.high) == (1e-4, 1e-1)
    assert "eps" not in [p.name for p in spec.search_space("adam")]


def test_experiment_level_space_applies_to_every_optimizer_that_has_the_parameter() -> None:
    spec = parse_experiment(spec_with(space={"schedule": "cosine", "momentum": 0.9},
                                      optimizers=["sgd", "momentum", "lbfgs"]))
    momentum = {p.name: p for p in spec.search_space("momentum")}
    assert momentum["schedule"].fixed == "cosine" and momentum["momentum"].fixed == 0.9
    assert "momentum" not in {p.name for p in spec.search_space("sgd")}
    assert "schedule" not in {p.name for p in spec.search_space("lbfgs")}


MALFORMED = [
    ({"trails": 5}, r"^trails: unknown field"),
    ({"optimizers": ["adamz"]}, r"optimizers\.0\.name='adamz': Input should be 'sgd', 'momentum'"),
    ({"samplers": ["random", "bayes"]}, r"samplers\.1\.name='bayes': Input should be 'random', 'tpe', 'cmaes', 'qmc' or 'grid'"),
    ({"task": {"name": "resnet"}}, r"task.name='resnet' is unknown; allowed: quadratic, rosenbrock"),
    ({"task": {"name": "mlp", "options": {"hidden_sizes": [0]}}}, r"task.options: hidden_sizes=\[0\]: each must be in \[1, 100000\]"),
    ({"task": {"name": "softmax", "options": {"datset": "digits"}}}, r"task.options.datset: unknown field"),
    ({"optimizers": [{"name": "sgd", "space": {"lr": {"low": 1, "high": 0.1}}}]},
     r"optimizers\.0\.space\.lr: low=1 > high=0.1; allowed: low <= high"),
    ({"optimizers": [{"name": "adam", "space": {"beta1": {"low": 0.9, "high": 1.0}}}]},
     r"optimizers\.0\.space\.beta1\.high=1\.0 is not allowed; allowed: a finite number in \[0, 1\)"),
    ({"optimizers": [{"name": "sgd", "space": {"momentum": 0.9}}]},
     r"optimizers\.0\.space\.momentum: unknown parameter for sgd; allowed: lr, weight_decay, batch_size"),
    ({"optimizers": [{"name": "sgd", "space": {"schedule": "constant", "step_gamma": 0.5}}]},
     r"optimizers\.0\.space\.step_gamma is a parameter of schedule 'step', which is not chosen; chosen: constant"),
    ({"optimizers": [{"name": "sgd", "space": {"batch_size": 48}}]}, r"optimizers\.0\.space\.batch_size=48 is not allowed; allowed: a power of two"),
    ({"optimizers": [{"name": "sgd", "space": {"schedule": {"choices": ["linear"]}}}]},
     r"^optimizers\.0\.space\.schedule\.choices\.0='linear' is not allowed; allowed: constant, step, exponential, inverse_time, cosine, "
     r"inverse_sqrt, polynomial, one_cycle, cosine_restarts, wsd$"),
    ({"budget": {"epochs": 0}}, r"budget\.epochs=0: Input should be greater than 0"),
    ({"budget": {"steps": 100}}, r"budget: task 'softmax' trains on data and counts epochs; allowed: budget.epochs only"),
    ({"task": {"name": "quadratic"}, "budget": {"epochs": 3}}, r"budget: task 'quadratic' is synthetic and counts steps"),
    ({"task": {"name": "quadratic"}, "budget": {"steps": 10}, "objective": "final_val_loss"},
     r"objective='final_val_loss' needs validation data, which task 'quadratic' has not; allowed: final_train_loss"),
    ({"objective": "steps_to_target"}, r"target is required by steps_to_target and allowed only there"),
    ({"objective": "accuracy"}, r"objective\.name='accuracy': Input should be 'final_val_loss', 'best_val_loss'"),
    ({"trials": None}, r"^trials: required field is missing"),
    ({"trials": -3}, r"trials=-3: Input should be greater than 0"),
    ({"optimizers": ["sgd", "sgd"]}, r'optimizers: each name may appear once; got \["sgd", "sgd"\]' ),
    ({"pruner": "sha"}, r"pruner='sha': Input should be 'none', 'median' or 'hyperband'"),
    ({"storage": "not a url"}, r"storage='not a url' is not a database URL; allowed: e.g. sqlite:///tuner.db"),
    ({"storage": "oracle://scott@db/orcl"}, r"database 'oracle' is not supported; allowed: sqlite, postgresql, mysql"),
    ({"storage": "sqlite:///:memory:"}, r"in-memory SQLite database cannot be shared by workers"),
    ({"samplers": ["grid"], "optimizers": ["sgd"]},
     r"^samplers\.0 \(grid\) with optimizers\.0 \(sgd\): the grid sampler cannot search a schedule choice together with its conditional parameters"),
    ({"space": {"amsgrad": True}, "optimizers": ["sgd"]}, r"space.amsgrad: no optimizer of this experiment has this parameter"),
]


@pytest.mark.parametrize(("changes", "message"), MALFORMED, ids=lambda v: str(v)[:60])
def test_malformed_study_file_gives_its_specific_error(changes: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_experiment(spec_with(**changes))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- a\n- list\n", r"expected a mapping of fields"),
        ("name: [unclosed\n", r"not valid YAML"),
    ],
)
def test_unreadable_study_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_experiment(path)


def test_cli_reports_a_bad_study_file_in_one_line_without_traceback(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(spec_with(optimizers=["adamz"])))
    result = CliRunner().invoke(app, ["launch", str(path), "--storage", f"sqlite:///{tmp_path}/t.db"])
    assert result.exit_code == 2
    assert "optimizers.0.name='adamz'" in result.output and "Traceback" not in result.output
    missing = CliRunner().invoke(app, ["launch", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 2 and "cannot read" in missing.output and "No such file"  in missing.output
    assert not (tmp_path / "t.db").exists(), "a bad study file must not touch the storage"


def test_allowed_names_are_the_registries() -> None:
    from typing import get_args

    from tuner.optim import OPTIMIZERS
    from tuner.samplers import PRUNERS, SAMPLERS
    from tuner.spec import OBJECTIVES, ObjectiveName, OptimizerName, PrunerName, SamplerName

    for literal, registry in ((OptimizerName, OPTIMIZERS), (SamplerName, SAMPLERS), (PrunerName, PRUNERS),
                              (ObjectiveName, OBJECTIVES)):
        assert get_args(literal) == tuple(registry)
