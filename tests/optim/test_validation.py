"""Bad hyperparameters raise ConfigError (a ValueError) naming the field, value and range."""

import pytest

from tuner import ConfigError
from tuner.optim import OPTIMIZERS, make_optimizer
from tuner.optim.transforms import WeightDecay

BAD = [
    ("adam", {"betas": (1.0, 0.999)}, r"betas\[0\]=1.0 .*\[0, 1\)"),
    ("adam", {"betas": (0.9, -0.1)}, r"betas\[1\]=-0.1 .*\[0, 1\)"),
    ("adam", {"betas": (0.9,)}, r"betas=\(0.9,\).*pair"),
    ("adam", {"eps": -1e-8}, r"eps=-1e-08 .*\[0, inf\)"),
    ("adamw", {"weight_decay": -0.1}, r"weight_decay=-0.1"),
    ("adam", {"amsgrad": "yes"}, r"amsgrad='yes' .*true or false"),
    ("momentum", {"momentum": 1.0}, r"momentum=1.0 .*\[0, 1\)"),
    ("momentum", {"dampening": 2.0}, r"dampening=2.0 .*\[0, 1\]"),
    ("nesterov", {"momentum": 0.0}, r"nesterov=True requires momentum > 0"),
    ("rmsprop", {"alpha": 1.5}, r"alpha=1.5"),
    ("rmsprop", {"centered": 1}, r"centered=1"),
    ("adagrad", {"initial_accumulator_value": -1.0}, r"initial_accumulator_value=-1.0"),
    ("adagrad", {"lr_decay": float("nan")}, r"lr_decay=\.nan is not allowed; allowed: a finite number"),
    ("lbfgs", {"history_size": 0}, r"history_size=0 .*integer in \[1, 1000\]"),
    ("sgd", {"momentum": 0.9}, r"unknown option 'momentum' for optimizer 'sgd'; allowed: clip_grad_norm, clip_grad_value, ema_decay, polyak_start, weight_decay"),
    ("adam", {"lr": 0.1}, r"unknown option 'lr' .*allowed: amsgrad, betas, clip_grad_norm, clip_grad_value, ema_decay, eps, polyak_start, weight_decay"),
    ("adamz", {}, r"optimizer='adamz' is unknown; allowed: sgd, momentum, nesterov"),
    ("nadam", {"momentum_decay": -0.1}, r"momentum_decay=-0.1 .*\[0, inf\)"),
    ("radam", {"decoupled_weight_decay": "yes"}, r"decoupled_weight_decay='yes' .*true or false"),
    ("nadamw", {"decoupled_weight_decay": False}, r"unknown option 'decoupled_weight_decay' for optimizer 'nadamw'"),
    ("adamax", {"betas": (0.9, 1.0)}, r"betas\[1\]=1.0 .*\[0, 1\)"),
    ("adadelta", {"rho": 1.5}, r"rho=1.5 .*\[0, 1\]"),
    ("adadelta", {"betas": (0.9, 0.99)}, r"unknown option 'betas' for optimizer 'adadelta'"),
]


@pytest.mark.parametrize(("name", "options", "message"), BAD, ids=lambda v: str(v))
def test_bad_hyperparameters_are_rejected_with_the_field_named(name: str, options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_optimizer(name, **options)


def test_config_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        make_optimizer("adam", eps=-1.0)


def test_every_registered_optimizer_builds_with_defaults() -> None:
    for name in OPTIMIZERS:
        make_optimizer(name)
    assert make_optimizer("adamw").decay == WeightDecay(1e-2, coupled=False)
    assert make_optimizer("adam").decay == WeightDecay(0.0, coupled=True)
    assert make_optimizer("nesterov").rule.nesterov is True
