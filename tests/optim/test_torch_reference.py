"""Step-by-step agreement with torch.optim on a fixed sequence of random gradients."""

import numpy as np
import pytest

from tests.conftest import optional_torch
from tuner.optim import OPTIMIZERS, make_optimizer

STEPS = 200
DIM = 37

CASES = [
    ("sgd", {}),
    ("sgd", {"weight_decay": 0.1}),
    ("momentum", {"momentum": 0.9}),
    ("momentum", {"momentum": 0.9, "dampening": 0.5}),
    ("momentum", {"momentum": 0.5, "dampening": 0.1, "weight_decay": 0.1}),
    ("nesterov", {"momentum": 0.9}),
    ("nesterov", {"momentum": 0.8, "weight_decay": 0.05}),
    ("adagrad", {}),
    ("adagrad", {"lr_decay": 0.01, "weight_decay": 0.1, "initial_accumulator_value": 0.5, "eps": 1e-6}),
    *[
        ("rmsprop", {"centered": c, "momentum": m, "weight_decay": w, "alpha": 0.9})
        for c in (False, True)
        for m in (0.0, 0.9)
        for w in (0.0, 0.1)
    ],
    *[("adam", {"amsgrad": a, "weight_decay": w}) for a in (False, True) for w in (0.0, 0.1)],
    ("adam", {"betas": (0.5, 0.9), "eps": 1e-3}),
    *[("adamw", {"amsgrad": a, "weight_decay": w}) for a in (False, True) for w in (1e-2, 0.3)],
]

TORCH_CLASS = {
    "sgd": "SGD", "momentum": "SGD", "nesterov": "SGD", "adagrad": "Adagrad",
    "rmsprop": "RMSprop", "adam": "Adam", "adamw": "AdamW",
}


def trajectories(name: str, options: dict, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    torch = optional_torch()
    rng = np.random.default_rng(0)
    p0 = rng.standard_normal(DIM)
    grads = rng.standard_normal((STEPS, DIM)) * rng.uniform(0.1, 3.0, (STEPS, 1))
    lrs = 0.01 * (1.5 + np.sin(np.arange(STEPS) / 7.0))  # changes every step: nothing may cache it

    optimizer = make_optimizer(name, **options)
    params = p0.astype(dtype)
    state = optimizer.init(params)
    ours = np.empty((STEPS, DIM))
    for k in range(STEPS):
        optimizer.update(params, grads[k].astype(dtype), float(lrs[k]), state)
        ours[k] = params

    torch_dtype = getattr(torch, dtype)
    tp = torch.tensor(p0, dtype=torch_dtype, requires_grad=True)
    arguments = {**OPTIMIZERS[name].variant, **options}
    reference = getattr(torch.optim, TORCH_CLASS[name])([tp], lr=float(lrs[0]), foreach=False, **arguments)
    theirs = np.empty((STEPS, DIM))
    for k in range(STEPS):
        tp.grad = torch.tensor(grads[k], dtype=torch_dtype)
        reference.param_groups[0]["lr"] = float(lrs[k])
        reference.step()
        theirs[k] = tp.detach().numpy()
    return ours, theirs


@pytest.mark.parametrize(("name", "options"), CASES, ids=lambda v: str(v))
def test_float64_matches_torch(name: str, options: dict) -> None:
    ours, theirs = trajectories(name, options, "float64")
    assert np.abs(ours - theirs).max() <= 1e-10


@pytest.mark.parametrize(("name", "options"), CASES, ids=lambda v: str(v))
def test_float32_matches_torch(name: str, options: dict) -> None:
    ours, theirs = trajectories(name, options, "float32")
    relative = np.abs(ours - theirs).max(axis=1) / np.abs(theirs).max(axis=1)
    assert relative.max() <= 1e-5
