"""Pasteable forms of a configuration: the study-file entry rebuilds the configuration, and the
torch code builds the same optimizer and the same learning rate at every step."""

import numpy as np
import pytest
import yaml

from tests.conftest import optional_torch
from tuner.schedules import make_schedule
from tuner.snippets import study_snippet, torch_snippet
from tuner.space import from_config, to_config
from tuner.spec import parse_experiment

TOTAL = 1000
SCHEDULES = [
    {"schedule": "constant"},
    {"schedule": "step", "step_every": 0.25, "step_gamma": 0.5},
    {"schedule": "exponential", "decay_to": 0.01},
    {"schedule": "inverse_time", "inverse_rate": 20.0},
    {"schedule": "cosine", "cosine_floor": 0.05},
    {"schedule": "cosine", "cosine_floor": 0.0, "warmup": 0.1},
    {"schedule": "step", "step_every": 0.3, "step_gamma": 0.2, "warmup": 0.05},
    {"schedule": "inverse_sqrt", "inverse_sqrt_flat": 0.05},
    {"schedule": "polynomial", "poly_power": 0.9, "warmup": 0.02},
    {"schedule": "one_cycle", "cycle_rise": 0.3, "cycle_div": 25.0, "cycle_final_div": 1e4, "cycle_anneal": "cos"},
    {"schedule": "one_cycle", "cycle_rise": 0.15, "cycle_div": 10.0, "cycle_final_div": 100.0, "cycle_anneal": "linear"},
    {"schedule": "cosine_restarts", "restart_period": 0.1, "restart_mult": 2, "restart_floor": 0.01, "warmup": 0.05},
    {"schedule": "cosine_restarts", "restart_period": 0.25, "restart_mult": 1, "restart_floor": 0.0},
    {"schedule": "wsd", "wsd_decay": 0.2, "wsd_cooldown": "1-sqrt", "warmup": 0.05},
    {"schedule": "wsd", "wsd_decay": 0.3, "wsd_cooldown": "linear"},
]
CONFIGS = [
    ("adam", {"lr": 3e-3, "beta1": 0.85, "beta2": 0.995, "eps": 1e-7, "weight_decay": 1e-4, "amsgrad": True,
              "batch_size": 64}),
    ("adamw", {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.05, "amsgrad": False,
               "batch_size": 32}),
    ("momentum", {"lr": 0.05, "momentum": 0.9, "weight_decay": 0.0, "batch_size": 16}),
    ("nesterov", {"lr": 0.02, "momentum": 0.95, "weight_decay": 1e-5, "batch_size": 128}),
    ("rmsprop", {"lr": 1e-3, "alpha": 0.99, "eps": 1e-8, "momentum": 0.5, "centered": True, "weight_decay": 0.0,
                 "batch_size": 32}),
    ("adagrad", {"lr": 0.1, "eps": 1e-10, "weight_decay": 0.0, "batch_size": 32}),
    ("sgd", {"lr": 0.1, "weight_decay": 0.0, "batch_size": 256}),
]
CASES = [(opt, {**values, **schedule}) for opt, values in CONFIGS for schedule in SCHEDULES]


@pytest.mark.parametrize(("optimizer", "values"), CASES)
def test_from_config_inverts_to_config(optimizer: str, values: dict) -> None:
    config = to_config(optimizer, values, TOTAL)
    recovered = from_config(config, TOTAL)
    assert recovered.keys() == values.keys()
    for key, value in values.items():
        assert recovered[key] == (pytest.approx(value, rel=1e-9) if isinstance(value, float) else value), key


@pytest.mark.parametrize(("optimizer", "values"), CASES)
def test_study_snippet_fixes_the_same_configuration(optimizer: str, values: dict) -> None:
    config = to_config(optimizer, values, TOTAL)
    entry = yaml.safe_load(study_snippet(config, TOTAL))
    spec = parse_experiment({"name": "pasted", "task": {"name": "softmax"}, "samplers": ["random"], "trials": 1,
                             "budget": {"epochs": 1}, **entry})
    space = spec.search_space(optimizer)
    assert all(not p.searched for p in space), [p.name for p in space if p.searched]
    rebuilt = to_config(optimizer, {p.name: p.fixed for p in space}, TOTAL)
    assert _close(rebuilt, config), (rebuilt, config)


def _close(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return a == pytest.approx(b, rel=1e-5, abs=1e-12)
    return a == b


@pytest.mark.parametrize(("optimizer", "values"), CASES)
def test_torch_snippet_builds_the_same_optimizer_and_learning_rates(optimizer: str, values: dict) -> None:
    torch = optional_torch()
    config = to_config(optimizer, values, TOTAL)
    model = torch.nn.Linear(3, 1)
    scope = {"model": model}
    exec(torch_snippet(config), scope)  # the snippet as a user pastes it
    group = scope["optimizer"].param_groups[0]
    for key, value in config.items():
        if key in ("optimizer", "schedule", "batch_size"):
            continue
        actual = {"betas": list(group["betas"]) if "betas" in group else None,
                  # a warm-up scales lr; OneCycleLR starts at max_lr / div_factor and peaks at max_lr
                  "lr": group.get("max_lr", group.get("initial_lr", group["lr"]))}.get(key, group.get(key))
        assert _close(actual, value), key
    if optimizer in ("momentum", "nesterov"):
        assert group["nesterov"] == (optimizer == "nesterov")
    expected = make_schedule(config["schedule"].pop("kind"), config["lr"], **config["schedule"]).values(TOTAL)
    lrs = []
    for _ in range(TOTAL):
        lrs.append(scope["optimizer"].param_groups[0]["lr"])
        scope["optimizer"].step()
        if "scheduler" in scope:
            scope["scheduler"].step()
    np.testing.assert_allclose(lrs, expected, rtol=1e-9, atol=1e-15)


def test_lbfgs_snippet_names_the_nearest_torch_optimizer() -> None:
    scope = {"model": optional_torch().nn.Linear(3, 1)}
    exec(torch_snippet({"optimizer": "lbfgs", "history_size": 7}), scope)
    group = scope["optimizer"].param_groups[0]
    assert (group["history_size"], group["line_search_fn"]) == (7, "strong_wolfe")


@pytest.mark.parametrize("schedule", [{"schedule": "constant"}, {"schedule": "cosine", "cosine_floor": 0.1, "warmup": 0.1},
                                      {"schedule": "one_cycle", "cycle_rise": 0.3, "cycle_div": 10.0,
                                       "cycle_anneal": "linear"},
                                      {"schedule": "wsd", "wsd_decay": 0.3, "wsd_cooldown": "1-sqrt", "warmup": 0.05}])
def test_muon_snippet_trains_matrices_with_muon_and_the_rest_with_adamw(schedule: dict) -> None:
    torch = optional_torch()
    values = {"lr": 0.02, "momentum": 0.9, "weight_decay": 0.05, "adjust_lr_fn": "match_rms_adamw", "nesterov": True,
              "adamw_beta1": 0.8, "adamw_beta2": 0.99, "adamw_eps": 1e-7, "batch_size": 32, **schedule}
    config = to_config("muon", values, TOTAL)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    scope = {"model": model}
    exec(torch_snippet(config), scope)  # the snippet as a user pastes it
    muon, adamw = scope["optimizer"], scope["adamw"]
    assert isinstance(muon, torch.optim.Muon) and isinstance(adamw, torch.optim.AdamW)
    assert [p.ndim for p in muon.param_groups[0]["params"]] == [2, 2]
    assert [p.ndim for p in adamw.param_groups[0]["params"]] == [1, 1]
    group = muon.param_groups[0]
    initial = group.get("max_lr", group.get("initial_lr", group["lr"]))  # a warm-up starts lower
    assert (initial, group["momentum"], group["weight_decay"], group["adjust_lr_fn"]) == (0.02, 0.9, 0.05,
                                                                                         "match_rms_adamw")
    group = adamw.param_groups[0]
    initial = group.get("max_lr", group.get("initial_lr", group["lr"]))
    assert (initial, group["betas"], group["eps"], group["weight_decay"]) == (0.02, (0.8, 0.99), 1e-7, 0.05)
    if schedule["schedule"] != "constant":
        expected = make_schedule(schedule["schedule"], 0.02,
                                 **{k: v for k, v in config["schedule"].items() if k != "kind"})
        for k in range(TOTAL):
            for optimizer in (muon, adamw):
                assert optimizer.param_groups[0]["lr"] == pytest.approx(expected(k), rel=1e-12)
            muon.step()
            adamw.step()
            scope["scheduler"].step()
            scope["adamw_scheduler"].step()
