"""Search spaces: scales, conditional schedule parameters, pasteable configurations, grids."""

import math

import optuna
import pytest

from tuner.objective import Budget, configure, run_config
from tuner.schedules import make_schedule
from tuner.space import grid_space, resolve, schedule_config, suggest, to_config
from tuner.tasks import make_task

optuna.logging.set_verbosity(optuna.logging.ERROR)


def sample(optimizer: str, overrides: dict, n: int = 40, data_task: bool = True) -> list[tuple[dict, dict]]:
    space = resolve(optimizer, overrides, data_task=data_task, where="space")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    out = []
    for _ in range(n):
        trial = study.ask()
        values = suggest(trial, space)
        out.append((values, dict(trial.params)))
        study.tell(trial, 0.0)
    return out


def test_betas_are_sampled_as_one_minus_beta_on_a_log_scale() -> None:
    for values, params in sample("adam", {}):
        assert values["beta1"] == pytest.approx(1 - params["one_minus_beta1"])
        assert 0.5 <= values["beta1"] <= 0.999 and 0.9 <= values["beta2"] <= 0.9999
    space = {p.name: p for p in resolve("adam", {}, data_task=True, where="space")}
    assert space["beta2"].optuna_name == "one_minus_beta2" and space["lr"].log


def test_batch_size_is_a_power_of_two_and_only_for_data_tasks() -> None:
    for values, params in sample("sgd", {}):
        assert values["batch_size"] == 2 ** params["log2_batch_size"] and 16 <= values["batch_size"] <= 256
    assert "batch_size" not in [p.name for p in resolve("sgd", {}, data_task=False, where="s")]


def test_schedule_parameters_are_conditional_on_the_schedule() -> None:
    seen = set()
    for values, _ in sample("sgd", {}, n=80):
        seen.add(values["schedule"])
        conditional = {"step_every", "step_gamma", "decay_to", "inverse_rate", "cosine_floor"} & set(values)
        expected = {"step": {"step_every", "step_gamma"}, "exponential": {"decay_to"},
                    "inverse_time": {"inverse_rate"}, "cosine": {"cosine_floor"}, "constant": set()}
        assert conditional == expected[values["schedule"]]
    assert seen == {"constant", "step", "exponential", "inverse_time", "cosine"}


def test_fixed_and_dropped_parameters_are_not_searched() -> None:
    for values, params in sample("adamw", {"eps": None, "beta2": 0.99, "schedule": "constant"}, n=5):
        assert "eps" not in values and values["beta2"] == 0.99
        assert "one_minus_beta2" not in params and "schedule" not in params


def test_config_uses_constructor_arguments_and_an_absolute_schedule() -> None:
    config = to_config("adam", {"lr": 0.01, "beta1": 0.8, "beta2": 0.99, "eps": 1e-7, "batch_size": 64,
                                "schedule": "cosine", "cosine_floor": 0.1, "warmup": 0.1}, total_steps=1000)
    assert config == {"optimizer": "adam", "betas": [0.8, 0.99], "eps": 1e-7, "lr": 0.01, "batch_size": 64,
                      "schedule": {"kind": "cosine", "total_steps": 900, "lr_min": 0.001, "warmup_steps": 100}}
    assert to_config("lbfgs", {"history_size": 7}, total_steps=10) == {"optimizer": "lbfgs", "history_size": 7}


@pytest.mark.parametrize(
    ("values", "at_end"),
    [
        ({"schedule": "exponential", "decay_to": 0.01}, 0.01),
        ({"schedule": "inverse_time", "inverse_rate": 9.0}, 0.1),
        ({"schedule": "cosine", "cosine_floor": 0.05}, 0.05),
        ({"schedule": "step", "step_every": 0.25, "step_gamma": 0.5}, 0.5**4),
    ],
)
def test_relative_schedule_parameters_mean_what_they_say(values: dict, at_end: float) -> None:
    config = schedule_config(values, lr=1.0, total_steps=400)
    schedule = make_schedule(config.pop("kind"), 1.0, **config)
    assert schedule(400) == pytest.approx(at_end, rel=1e-9)


def test_every_sampled_configuration_builds_and_trains() -> None:
    task = make_task("softmax", {})
    budget = Budget(epochs=1, eval_every=1, synthetic=False)
    for optimizer in ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw", "lbfgs"):
        for values, _ in sample(optimizer, {}, n=6):
            config = configure(optimizer, values, task, budget)
            result = run_config(task, config, budget, seed=0)
            assert result.steps > 0


def test_grid_space_covers_each_searched_parameter() -> None:
    space = resolve("momentum", {"schedule": "constant", "batch_size": 32}, data_task=True, where="s")
    grid = grid_space(space, 3)
    assert set(grid) == {"lr", "one_minus_momentum"}
    assert grid["lr"] == pytest.approx([1e-4, 1e-2, 1.0])
    assert all(isinstance(v, float) for v in grid["lr"]) and math.isclose(grid["one_minus_momentum"][-1], 0.5)


def test_spaces_and_schedule_choices_come_from_the_registries() -> None:
    from tuner.optim import OPTIMIZERS
    from tuner.schedules import SCHEDULES
    from tuner.space import SCHEDULE_PARAMS, default_space

    for name, entry in OPTIMIZERS.items():
        space = default_space(name, data_task=True)
        assert [p.name for p in entry.space] == list(space)[:len(entry.space)]
        assert ("schedule" in space) == (not entry.full_batch) == ("lr" in space)
        if not entry.full_batch:
            searched = tuple(k for k, kind in SCHEDULES.items() if kind.searched)
            assert space["schedule"].choices == (("constant",) if entry.package == "schedulefree" else searched)
            assert space["lr"].log
    assert {p.schedule for p in SCHEDULE_PARAMS} <= set(SCHEDULES)


TECHNIQUES = ("clip_grad_norm", "clip_grad_value", "ema_decay", "polyak_from")


def test_clipping_and_averaging_are_off_unless_a_study_file_opens_them() -> None:
    names = [p.name for p in resolve("adam", {}, data_task=True, where="space")]
    assert not set(TECHNIQUES) & set(names)
    assert "clip_grad_norm" not in to_config("adam", sample("adam", {}, n=1)[0][0], 100)


def test_opened_techniques_are_sampled_on_their_scales_and_converted() -> None:
    overrides = {"clip_grad_norm": {"low": 0.1, "high": 10.0}, "ema_decay": {"low": 0.9, "high": 0.999}}
    for values, params in sample("momentum", overrides):
        assert 0.1 <= values["clip_grad_norm"] <= 10.0 and values["ema_decay"] == pytest.approx(1 - params["one_minus_ema_decay"])
    space = {p.name: p for p in resolve("momentum", overrides, data_task=True, where="space")}
    assert space["clip_grad_norm"].log and space["ema_decay"].one_minus
    values = {"lr": 0.1, "momentum": 0.9, "schedule": "constant", "polyak_from": 0.25, "clip_grad_value": 0.5}
    config = to_config("momentum", values, 400)
    assert config["polyak_start"] == 100 and config["clip_grad_value"] == 0.5 and "polyak_from" not in config


@pytest.mark.parametrize(("overrides", "message"), [
    ({"clip_grad_norm": 1.0, "clip_grad_value": {"low": 0.1, "high": 1.0}}, r"space.clip_grad_value: clip_grad_norm is set too"),
    ({"ema_decay": 0.99, "polyak_from": 0.5}, r"space.polyak_from: ema_decay is set too"),
    ({"clip_grad_norm": 0.0}, r"space.clip_grad_norm=0.0 is not allowed"),
    ({"ema_decay": {"low": 0.9, "high": 1.0}}, r"space.ema_decay.high=1.0 is not allowed"),
    ({"polyak_from": 1.0}, r"space.polyak_from=1.0 is not allowed"),
])
def test_technique_overrides_that_could_fail_a_trial_are_refused(overrides: dict, message: str) -> None:
    from tuner.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        resolve("adam", overrides, data_task=True, where="space")


def test_configurations_with_techniques_train() -> None:
    task = make_task("softmax")
    budget = Budget(epochs=2, eval_every=1, synthetic=False)
    overrides = {"clip_grad_norm": {"low": 0.1, "high": 10.0}, "polyak_from": {"low": 0.0, "high": 0.5, "log": False}}
    for values, _ in sample("adam", overrides, n=3):
        run = run_config(task, configure("adam", values, task, budget), budget, seed=0)
        assert len(run.evals["val_loss"]) == 2 and not run.diverged


@pytest.mark.parametrize(("optimizer", "name"), [("lion", "beta1"), ("adadelta", "rho")])
def test_a_one_minus_range_reaching_one_is_refused_on_a_log_scale_and_sampled_on_a_linear_one(optimizer, name) -> None:
    from tuner.errors import ConfigError

    with pytest.raises(ConfigError, match=rf"space.{name}.high=1.0: a range sampled as 1 - value on a log scale"):
        resolve(optimizer, {name: {"low": 0.5, "high": 1.0}}, data_task=True, where="space")
    linear = {name: {"low": 0.5, "high": 1.0, "log": False}}
    values = [v[name] for v, _ in sample(optimizer, linear, n=200)]
    assert min(values) >= 0.5 and max(values) <= 1.0
    assert 70 < sum(v > 0.75 for v in values) < 130, "uniform in 1 - value: about half above 0.75"
