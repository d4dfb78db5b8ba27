"""Summaries of a run: objective values, divergence, downsampled curves."""

import numpy as np
import pytest

from tuner.errors import ConfigError
from tuner.objective import Budget, objective_value, run_config, summarize
from tuner.spec import parse_experiment
from tuner.storage.records import MAX_POINTS, RunRecord, downsample
from tuner.tasks import make_task

DATA = {"name": "x", "task": {"name": "softmax"}, "optimizers": ["adam"], "samplers": ["random"], "trials": 1,
        "budget": {"epochs": 4}}
SYNTHETIC = {**DATA, "task": {"name": "quadratic", "options": {"dim": 10}}, "budget": {"steps": 300, "eval_every": 50},
             "objective": "final_train_loss"}
ADAM = {"optimizer": "adam", "lr": 0.01, "batch_size": 64, "schedule": {"kind": "constant"}}


def run(spec_data: dict, config: dict):
    spec = parse_experiment(spec_data)
    task = make_task(spec.task.name, spec.task.options)
    result = run_config(task, config, Budget.of(spec), seed=3)
    return spec, task, result, summarize(spec, task, result, config, 3, "trial")


def test_data_task_summary_and_curves() -> None:
    spec, task, result, record = run(DATA, ADAM)
    assert record.state == "COMPLETE" and record.objective == record.final_val_loss == result.evals["val_loss"][-1]
    assert record.best_val_loss == min(result.evals["val_loss"])
    per_epoch = task.steps_per_epoch(64)
    assert record.final_train_loss == pytest.approx(result.train_loss[-per_epoch:].mean())
    assert set(record.curves) == {"train_loss", "val_loss", "val_accuracy"}
    val = record.curves["val_loss"]
    assert val.steps.tolist() == [per_epoch * e for e in range(1, 5)] and (np.diff(val.seconds) >= 0).all()
    assert record.samples == 4 * len(task.data.y_train) and record.steps == 4 * per_epoch


@pytest.mark.parametrize("objective", ["best_val_loss", "final_train_loss", "train_auc"])
def test_objectives(objective: str) -> None:
    _, _, result, record = run({**DATA, "objective": objective}, ADAM)
    expected = {"best_val_loss": record.best_val_loss, "final_train_loss": record.final_train_loss,
                "train_auc": float(np.mean(result.train_loss))}[objective]
    assert record.objective == pytest.approx(expected)


def test_steps_to_target_counts_steps_or_penalises_a_miss() -> None:
    config = {"optimizer": "momentum", "momentum": 0.5, "lr": 0.02, "schedule": {"kind": "constant"}}
    spec_data = {**SYNTHETIC, "objective": {"name": "steps_to_target", "target": 1e-3}}
    _, _, result, record = run(spec_data, config)
    first = int(np.flatnonzero(result.train_loss <= 1e-3)[0])
    assert record.objective == first < 300
    spec = parse_experiment({**spec_data, "objective": {"name": "steps_to_target", "target": 1e-30}})
    miss = RunRecord(kind="trial", seed=0, state="COMPLETE", params={}, wall_time=0, steps=300, samples=300,
                     final_train_loss=1e-20)
    assert objective_value(spec, miss, np.full(300, 1.0), 300) == pytest.approx(300 * (1 + 10))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_rate_is_the_error_rate_before_the_float_floor_of_the_tasks_dtype(dtype: str) -> None:
    options = {"dim": 10, "dtype": dtype}
    theory = make_task("quadratic", options).theory()
    data = {**SYNTHETIC, "task": {"name": "quadratic", "options": options}, "objective": "rate"}
    gd = {"optimizer": "sgd", "lr": theory["gd_lr"], "schedule": {"kind": "constant"}}
    _, _, _, record = run(data, gd)
    assert record.state == "COMPLETE" and record.objective == pytest.approx(theory["gd_rate"], rel=1e-6)
    heavy_ball = {"optimizer": "momentum", "momentum": theory["heavy_ball_momentum"], "lr": theory["heavy_ball_lr"],
                  "schedule": {"kind": "constant"}}
    _, _, result, record = run(data, heavy_ball)  # at the float floor long before step 300
    assert result.train_loss[-1] < 1e-12 * result.train_loss[0]
    assert record.objective == pytest.approx(theory["heavy_ball_rate"], abs=0.025)  # a transient (see theory)


def test_rate_is_refused_on_data_tasks() -> None:
    with pytest.raises(ConfigError, match=r"objective='rate' needs the noise-free loss of a synthetic task, which "
                                          r"task 'softmax' \(trained on data\) has not; allowed: final_val_loss, "):
        parse_experiment({**DATA, "objective": "rate"})


def test_diverged_run_has_no_objective_and_finite_curves() -> None:
    _, _, result, record = run(DATA, {**ADAM, "optimizer": "sgd", "lr": 1e6})
    assert record.state == "DIVERGED" and record.objective is None and record.diverged_at == result.diverged_at
    values = record.curves["train_loss"].values
    assert np.isnan(values[-1]) or values[-1] > 100 * values[0]  # non-finite values are stored as NaN


def test_downsample_keeps_first_and_last_and_at_most_the_limit() -> None:
    n = 12_345
    curve = downsample(np.arange(n), np.linspace(0, 1, n), np.arange(n, dtype=float))
    assert len(curve.values) <= MAX_POINTS and curve.steps[0] == 0 and curve.steps[-1] == n - 1
    assert curve.values[-1] == n - 1
    short = downsample(np.arange(3), np.zeros(3), np.array([1.0, np.inf, np.nan]))
    assert np.array_equal(short.values, [1.0, np.nan, np.nan], equal_nan=True)
