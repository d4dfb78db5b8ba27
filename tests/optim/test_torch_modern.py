"""NAdam(W), RAdam(W), Adamax and Adadelta against torch.optim on random hyperparameters.

Each test draws its hyperparameters from a generator seeded by the optimizer's name (the same
draws on every run and every xdist worker), runs 300 steps on a random gradient sequence with a
learning rate that changes every step, and compares every step with torch's class, through both
of its code paths (``foreach=False``, the per-tensor loop, and ``foreach=True``).
"""

import functools
import inspect
import zlib

import numpy as np
import pytest

from tests.conftest import optional_torch
from tuner.optim import OPTIMIZERS, make_optimizer

NAMES = ["nadam", "nadamw", "radam", "radamw", "adamax", "adadelta"]
DRAWS = 16
STEPS = 300
DIM = 17
TOLERANCE = 1e-10


def log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(10.0 ** rng.uniform(np.log10(low), np.log10(high)))


def draw_options(name: str, rng: np.random.Generator) -> dict:
    """Random values of every option ``name`` takes besides the techniques: betas with 1 - beta on
    log scales (beta1 = 0 and small beta2, where RAdam never rectifies, included), eps, weight decay
    (zero or log-uniform), NAdam's momentum_decay (zero included), the decoupled switch, Adadelta's rho."""
    options: dict = {}
    entry = OPTIMIZERS[name]
    if "betas" in entry.options:
        beta1 = 0.0 if rng.random() < 0.15 else 1.0 - log_uniform(rng, 1e-3, 1.0)
        beta2 = float(rng.uniform(0.0, 0.7)) if rng.random() < 0.2 else 1.0 - log_uniform(rng, 1e-4, 0.5)
        options["betas"] = (beta1, beta2)
    if "rho" in entry.options:
        options["rho"] = 1.0 - log_uniform(rng, 1e-3, 1.0)
    options["eps"] = log_uniform(rng, 1e-10, 1e-2)
    options["weight_decay"] = 0.0 if rng.random() < 0.25 else log_uniform(rng, 1e-4, 1.0)
    if "momentum_decay" in entry.options:
        options["momentum_decay"] = 0.0 if rng.random() < 0.2 else log_uniform(rng, 1e-4, 0.3)
    if "decoupled_weight_decay" in entry.options:
        options["decoupled_weight_decay"] = bool(rng.random() < 0.5)
    return options


def problem(seed: int, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Start point, gradients of varying scale, and a learning rate that changes every step
    (around torch's default scale: 1 for Adadelta, 1e-3 for the others)."""
    rng = np.random.default_rng(seed)
    p0 = rng.standard_normal(DIM)
    grads = rng.standard_normal((STEPS, DIM)) * rng.uniform(0.05, 3.0, (STEPS, 1))
    base = log_uniform(rng, 0.05, 3.0) if name == "adadelta" else log_uniform(rng, 1e-4, 1e-1)
    lrs = base * (1.5 + np.sin(np.arange(STEPS) / 7.0))
    return p0, grads, lrs


def ours(name: str, options: dict, seed: int, dtype: str = "float64") -> np.ndarray:
    """Our parameters after each step."""
    p0, grads, lrs = problem(seed, name)
    optimizer = make_optimizer(name, **options)
    params = p0.astype(dtype)
    state = optimizer.init(params)
    seen = np.empty((STEPS, DIM))
    for k in range(STEPS):
        optimizer.update(params, grads[k].astype(dtype), float(lrs[k]), state)
        seen[k] = params
    return seen


def torchs(name: str, runs: list[tuple[dict, int]], foreach: bool, dtype: str = "float64") -> np.ndarray:
    """torch's parameters after each step for each (options, seed), shape (runs, STEPS, DIM): one
    optimizer with a parameter group per run (groups are stepped independently; one step() call for
    all of them keeps the test fast)."""
    torch = optional_torch()
    entry = OPTIMIZERS[name]
    torch_dtype = getattr(torch, dtype)
    tensors, grads, lrs, groups = [], [], [], []
    for options, seed in runs:
        p0, g, lr = problem(seed, name)
        tensors.append(torch.tensor(p0, dtype=torch_dtype, requires_grad=True))
        grads.append(torch.tensor(g, dtype=torch_dtype))
        lrs.append(lr)
        groups.append({"params": [tensors[-1]], "lr": float(lr[0]), **entry.variant, **options})
    reference = getattr(torch.optim, entry.torch)(groups, foreach=foreach)
    seen = np.empty((len(runs), STEPS, DIM))
    for k in range(STEPS):
        for i, (tensor, group) in enumerate(zip(tensors, reference.param_groups, strict=True)):
            tensor.grad = grads[i][k]
            group["lr"] = float(lrs[i][k])
        reference.step()
        for i, tensor in enumerate(tensors):
            seen[i, k] = tensor.detach().numpy()
    return seen


@functools.cache
def random_runs(name: str) -> tuple[tuple[dict, int], ...]:
    """DRAWS (options, seed) pairs for ``name``, the same on every call and every worker."""
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    return tuple((draw_options(name, rng), seed) for seed in range(DRAWS))


@functools.cache
def our_run(name: str, index: int) -> np.ndarray:
    """``ours`` for run ``index`` of ``random_runs(name)``, computed once for both torch paths."""
    options, seed = random_runs(name)[index]
    return ours(name, options, seed)


@pytest.mark.parametrize("foreach", [False, True], ids=["loop", "foreach"])
@pytest.mark.parametrize("name", NAMES)
def test_float64_matches_torch_on_random_hyperparameters(name: str, foreach: bool) -> None:
    runs = random_runs(name)
    theirs = torchs(name, list(runs), foreach)
    assert np.all(np.isfinite(theirs))
    differences = [float(np.abs(our_run(name, i) - theirs[i]).max()) for i in range(len(runs))]
    worst = int(np.argmax(differences))
    assert differences[worst] <= TOLERANCE, (runs[worst], differences[worst])
    print(f"{name} foreach={foreach}: max |ours - torch| = {differences[worst]:.3g} (draw {worst})")


FLOAT32 = {
    "nadam": {"betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.05, "momentum_decay": 0.01},
    "nadamw": {"betas": (0.9, 0.995), "eps": 1e-7, "weight_decay": 0.3},
    "radam": {"betas": (0.85, 0.99), "eps": 1e-6, "weight_decay": 0.02, "decoupled_weight_decay": True},
    "radamw": {"betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.1},
    "adamax": {"betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.05},
    "adadelta": {"rho": 0.95, "eps": 1e-5, "weight_decay": 0.01},
}


@pytest.mark.parametrize("foreach", [False, True], ids=["loop", "foreach"])
@pytest.mark.parametrize("name", NAMES)
def test_float32_matches_torch(name: str, foreach: bool) -> None:
    mine = ours(name, FLOAT32[name], seed=99, dtype="float32")
    theirs = torchs(name, [(FLOAT32[name], 99)], foreach, dtype="float32")[0]
    relative = np.abs(mine - theirs).max(axis=1) / np.abs(theirs).max(axis=1)
    assert relative.max() <= 1e-5


@pytest.mark.parametrize("name", NAMES)
def test_defaults_are_torchs(name: str) -> None:
    # every option's default is the torch class's, and the fixed ones are passed as its arguments
    torch = optional_torch()
    entry = OPTIMIZERS[name]
    signature = inspect.signature(getattr(torch.optim, entry.torch)).parameters
    for option, value in {**entry.reference_defaults, **entry.defaults}.items():
        assert signature[option].default == value, option
    for option, value in entry.variant.items():
        assert option in signature and signature[option].default != value
