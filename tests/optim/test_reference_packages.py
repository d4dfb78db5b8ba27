"""Lion and schedule-free SGD / AdamW against their reference packages (lion_pytorch, schedulefree).

Each case draws every option from a generator seeded by its id (the same draws on every run and
every xdist worker) and trains 300 float64 steps on a quadratic with noisy gradients, taken at each
side's own parameters, with a learning rate that changes every step. Ours updates one flat vector;
the package updates several torch tensors. Every step's parameters are compared (the package's train
mode, y for schedule-free); at checkpoints the package's ``eval()`` point is compared with
``eval_params``, then the package goes back to ``train()`` and both continue, as a training loop
with periodic evaluation does.
"""

import zlib

import numpy as np
import pytest

from tests.conftest import optional_package, optional_torch
from tuner.errors import ConfigError
from tuner.optim import OPTIMIZERS, make_optimizer
from tuner.optim.transforms import WeightDecay
from tuner.snippets import torch_snippet
from tuner.space import to_config

STEPS = 300
SHAPES = [(5,), (3, 4), (7,), (2, 3, 2)]
SIZES = [int(np.prod(s)) for s in SHAPES]
DIM = sum(SIZES)
CHECKPOINTS = (1, 2, 40, 111, 250, 300)
TOLERANCE = 1e-10
NAMES = ["lion", "schedule_free_sgd", "schedule_free_adamw"]
DRAWS = 8
CASES = [(name, draw) for name in NAMES for draw in range(DRAWS)]


def log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(10.0 ** rng.uniform(np.log10(low), np.log10(high)))


def draw(name: str, index: int) -> tuple[dict, float, bool]:
    """Options (every one the optimizer takes besides the techniques), the base lr, and the
    package's foreach switch (both of schedulefree's code paths)."""
    rng = np.random.default_rng([zlib.crc32(name.encode()), index])
    options: dict = {"weight_decay": 0.0 if rng.random() < 0.25 else log_uniform(rng, 1e-4, 0.5)}
    if name == "lion":
        beta1 = 0.0 if index == 0 else 1.0 - log_uniform(rng, 1e-3, 1.0)
        options["betas"] = (beta1, 1.0 - log_uniform(rng, 1e-4, 0.5))
        return options, log_uniform(rng, 1e-4, 1e-2), False
    # the evaluation lerp's weight 1 - 1/beta is small for beta > 2/3 and large below: both branches
    beta = float(rng.uniform(0.1, 0.66)) if index % 4 == 0 else 1.0 - log_uniform(rng, 1e-3, 0.33)
    if name == "schedule_free_sgd":
        options["momentum"] = beta
        lr = log_uniform(rng, 1e-3, 0.5)
    else:
        options["betas"] = (beta, 1.0 - log_uniform(rng, 1e-4, 0.5))
        options["eps"] = log_uniform(rng, 1e-10, 1e-3)
        lr = log_uniform(rng, 1e-4, 3e-2)
    options["warmup_steps"] = [0, int(rng.integers(1, 50)), int(rng.integers(50, 400))][index % 3]
    options["r"] = float(rng.uniform(0.0, 2.0)) if index // 2 % 2 else 0.0
    options["weight_lr_power"] = [2.0, 0.0, float(rng.uniform(0.0, 3.0))][index // 3 % 3]
    return options, lr, bool(index % 2)


def problem(name: str, index: int, base: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Start point, curvature of the quadratic, gradient noise (zero in part of the first step:
    sign(0) and untouched coordinates), and the learning rate of every step (zero for the first
    steps of some cases: no weight in schedule-free's average while lr_max is 0)."""
    rng = np.random.default_rng([zlib.crc32(name.encode()), index, 1])
    p0 = rng.standard_normal(DIM)
    curvature = rng.uniform(0.0, 1.0, DIM)
    noise = rng.standard_normal((STEPS, DIM)) * rng.uniform(0.05, 2.0, (STEPS, 1))
    noise[0, ::3] = 0.0
    curvature[::3] = 0.0
    lrs = base * (1.1 + np.sin(np.arange(STEPS) / 7.0)) / 2.1
    if index % 4 == 1:
        lrs[:3] = 0.0
    return p0, curvature, noise, lrs


def reference(name: str, options: dict, tensors: list, lr: float, foreach: bool):
    if name == "lion":
        return optional_package("lion_pytorch").Lion(tensors, lr=lr, **options)
    schedulefree = optional_package("schedulefree")
    cls = schedulefree.SGDScheduleFree if name == "schedule_free_sgd" else schedulefree.AdamWScheduleFree
    return cls(tensors, lr=lr, foreach=foreach, **options)


def run(name: str, index: int, dtype: str) -> tuple[np.ndarray, np.ndarray, list, list]:
    """Both trajectories: every step's parameters (train mode), and the evaluation points."""
    torch = optional_torch()
    options, base, foreach = draw(name, index)
    p0, curvature, noise, lrs = problem(name, index, base)
    schedule_free = name != "lion"

    optimizer = make_optimizer(name, **options)
    params = p0.astype(dtype)
    grad = np.empty_like(params)
    state = optimizer.init(params)
    ours, ours_eval = np.empty((STEPS, DIM)), []

    torch_dtype = getattr(torch, dtype)
    pieces = np.split(p0, np.cumsum(SIZES)[:-1])
    tensors = [torch.tensor(piece.reshape(shape), dtype=torch_dtype, requires_grad=True)
               for piece, shape in zip(pieces, SHAPES, strict=True)]
    package = reference(name, options, tensors, base, foreach)
    if schedule_free:
        package.train()
    theirs, theirs_eval = np.empty((STEPS, DIM)), []
    torch_curvature = [torch.tensor(c.reshape(s), dtype=torch_dtype)
                       for c, s in zip(np.split(curvature, np.cumsum(SIZES)[:-1]), SHAPES, strict=True)]
    torch_noise = torch.tensor(noise, dtype=torch_dtype)

    def flat() -> np.ndarray:
        return np.concatenate([t.detach().numpy().ravel() for t in tensors])

    for k in range(STEPS):
        np.multiply(curvature.astype(dtype), params, out=grad)
        grad += noise[k].astype(dtype)
        optimizer.update(params, grad, float(lrs[k]), state)
        ours[k] = params

        offset = 0
        for t, c, size in zip(tensors, torch_curvature, SIZES, strict=True):
            t.grad = c * t.detach() + torch_noise[k, offset:offset + size].reshape(t.shape)
            offset += size
        package.param_groups[0]["lr"] = float(lrs[k])  # as a torch scheduler sets it
        package.step()
        theirs[k] = flat()

        if k + 1 in CHECKPOINTS:
            ours_eval.append(optimizer.eval_params(params, state).copy())
            if schedule_free:
                package.eval()
            theirs_eval.append(flat())
            if schedule_free:
                package.train()
    return ours, theirs, ours_eval, theirs_eval


@pytest.mark.parametrize(("name", "index"), CASES, ids=[f"{n}-{i}" for n, i in CASES])
def test_float64_matches_the_reference_package(name: str, index: int) -> None:
    ours, theirs, ours_eval, theirs_eval = run(name, index, "float64")
    assert np.abs(ours - theirs).max() <= TOLERANCE
    assert len(ours_eval) == len(CHECKPOINTS)
    for step, mine, package in zip(CHECKPOINTS, ours_eval, theirs_eval, strict=True):
        assert np.abs(mine - package).max() <= TOLERANCE, f"evaluation point after step {step}"
    assert np.abs(theirs).max() < 1e3  # a bounded run: the comparison is absolute


@pytest.mark.parametrize(("name", "index"), CASES[::DRAWS // 2], ids=[f"{n}-{i}" for n, i in CASES[::DRAWS // 2]])
def test_float32_stays_close_to_the_reference_package(name: str, index: int) -> None:
    ours, theirs, ours_eval, theirs_eval = run(name, index, "float32")
    scale = np.abs(theirs).max()
    assert np.abs(ours - theirs).max() <= 1e-5 * scale
    for mine, package in zip(ours_eval, theirs_eval, strict=True):
        assert np.abs(mine - package).max() <= 1e-5 * scale


def test_evaluation_is_the_average_and_training_goes_on_from_y() -> None:
    # x = (y - (1 - beta) z) / beta, in a state buffer; y (the parameters) is left as it is
    optimizer = make_optimizer("schedule_free_sgd", momentum=0.8)
    params = np.array([1.0, -2.0, 3.0])
    state = optimizer.init(params)
    before = optimizer.eval_params(params, state)
    np.testing.assert_array_equal(before, params)  # before the first step x = y, as eval() leaves it
    assert before is not params
    for k in range(3):
        optimizer.update(params, np.array([0.5, 1.0, -1.0]) * (k + 1), 0.1, state)
    y = params.copy()
    x = optimizer.eval_params(params, state)
    np.testing.assert_array_equal(params, y)
    np.testing.assert_allclose(x, (y - 0.2 * state.rule.z) / 0.8, rtol=1e-14)
    assert optimizer.eval_params(params, state) is x  # the same buffer every time: nothing allocated


def test_first_steps_by_hand() -> None:
    # step 1: c = 1, y = z = y0 - lr * g; step 2 (weights lr**2 each): c = 1/2
    optimizer = make_optimizer("schedule_free_sgd", momentum=0.9)
    params = np.array([1.0])
    state = optimizer.init(params)
    optimizer.update(params, np.array([2.0]), 0.1, state)
    np.testing.assert_allclose(params, [0.8], rtol=1e-15)  # lerp(y, z, 1) = z = y0, then - 0.1 * 2
    optimizer.update(params, np.array([1.0]), 0.1, state)
    # z: 1 - 0.2 - 0.1 = 0.7; y: lerp(0.8, 0.8, 1/2) + 0.1 * (0.9 * 0.5 - 1) * 1 = 0.745
    np.testing.assert_allclose(state.rule.z, [0.7], rtol=1e-15)
    np.testing.assert_allclose(params, [0.745], rtol=1e-15)
    # x = (y - 0.1 z) / 0.9 = (0.745 - 0.07) / 0.9 = 0.75, the mean of z1 = 0.8 and z2 = 0.7
    np.testing.assert_allclose(optimizer.eval_params(params, state), [0.75], rtol=1e-14)


def test_lion_steps_by_the_sign() -> None:
    optimizer = make_optimizer("lion", betas=(0.9, 0.99), weight_decay=0.5)
    params = np.array([1.0, 1.0, 1.0])
    state = optimizer.init(params)
    optimizer.update(params, np.array([3.0, -1e-9, 0.0]), 0.01, state)
    np.testing.assert_allclose(params, [0.995 - 0.01, 0.995 + 0.01, 0.995], rtol=1e-15)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_update_is_in_place_and_leaves_the_gradient(name: str, dtype: str) -> None:
    optimizer = make_optimizer(name, weight_decay=0.1)
    params = np.linspace(-1, 1, 64).astype(dtype)
    buffer = params
    grad = np.linspace(0.5, -0.3, 64).astype(dtype)
    original = grad.copy()
    state = optimizer.init(params)
    for _ in range(3):
        optimizer.update(params, grad, 0.1, state)
    assert params is buffer and params.dtype == dtype
    np.testing.assert_array_equal(grad, original)
    assert not np.allclose(params, np.linspace(-1, 1, 64))
    assert optimizer.eval_params(params, state).dtype == dtype


def test_registry_entries_name_their_packages_and_weight_decay() -> None:
    assert (OPTIMIZERS["lion"].package, OPTIMIZERS["lion"].torch) == ("lion_pytorch", "Lion")
    assert OPTIMIZERS["schedule_free_sgd"].torch == "SGDScheduleFree"
    assert OPTIMIZERS["schedule_free_adamw"].torch == "AdamWScheduleFree"
    assert {OPTIMIZERS[n].package for n in NAMES[1:]} == {"schedulefree"}
    assert make_optimizer("lion", weight_decay=0.1).decay == WeightDecay(0.1, coupled=False)
    assert make_optimizer("schedule_free_sgd", weight_decay=0.1).decay == WeightDecay(0.1, coupled=True)
    adamw = make_optimizer("schedule_free_adamw", weight_decay=0.1)
    assert adamw.decay is None and adamw.rule.weight_decay == 0.1  # inside the rule, at y
    for name in NAMES:
        assert "weight_decay" in OPTIMIZERS[name].options


BAD = [
    ("lion", {"betas": (1.5, 0.99)}, r"betas\[0\]"),
    ("lion", {"betas": (0.9, -0.1)}, r"betas\[1\]"),
    ("lion", {"betas": 0.9}, "betas"),
    ("lion", {"weight_decay": -1.0}, "weight_decay"),
    ("lion", {"decoupled_weight_decay": True}, "decoupled_weight_decay"),
    ("schedule_free_sgd", {"momentum": 0.0}, "momentum"),
    ("schedule_free_sgd", {"momentum": 1.0}, "momentum"),
    ("schedule_free_sgd", {"warmup_steps": -1}, "warmup_steps"),
    ("schedule_free_sgd", {"warmup_steps": 2.5}, "warmup_steps"),
    ("schedule_free_sgd", {"r": -1.0}, "r="),
    ("schedule_free_sgd", {"weight_lr_power": float("nan")}, "weight_lr_power"),
    ("schedule_free_sgd", {"weight_decay": -0.1}, "weight_decay"),
    ("schedule_free_adamw", {"betas": (0.0, 0.999)}, r"betas\[0\]"),
    ("schedule_free_adamw", {"betas": (0.9, 1.0)}, r"betas\[1\]"),
    ("schedule_free_adamw", {"eps": -1e-8}, "eps"),
    ("schedule_free_adamw", {"weight_decay": -0.1}, "weight_decay"),
    ("schedule_free_adamw", {"warmup_steps": True}, "warmup_steps"),
    ("schedule_free_adamw", {"ema_decay": 0.99}, "evaluates at its own average"),
    ("schedule_free_sgd", {"polyak_start": 10}, "evaluates at its own average"),
]


@pytest.mark.parametrize(("name", "options", "message"), BAD, ids=[f"{n}-{'-'.join(o)}-{i}" for i, (n, o, _) in
                                                                     enumerate(BAD)])
def test_bad_hyperparameters_are_rejected_with_the_field_named(name: str, options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_optimizer(name, **options)


SNIPPETS = [
    ("lion", {"lr": 3e-4, "beta1": 0.95, "beta2": 0.98, "weight_decay": 0.1, "batch_size": 32}),
    ("schedule_free_sgd", {"lr": 0.5, "momentum": 0.8, "weight_decay": 1e-4, "warmup_steps": 20, "r": 0.5,
                           "weight_lr_power": 1.0}),
    ("schedule_free_adamw", {"lr": 2e-3, "beta1": 0.9, "beta2": 0.995, "eps": 1e-7, "weight_decay": 0.05,
                             "warmup_steps": 10, "r": 0.75, "weight_lr_power": 2.0, "warmup": 0.1}),
]


@pytest.mark.parametrize(("name", "values"), SNIPPETS, ids=[n for n, _ in SNIPPETS])
def test_snippet_builds_the_package_class_with_the_same_hyperparameters(name: str, values: dict) -> None:
    torch = optional_torch()
    package = optional_package(OPTIMIZERS[name].package)
    config = to_config(name, {"schedule": "cosine", "cosine_floor": 0.0, **values}, 100)
    code = torch_snippet(config)
    assert f"import {OPTIMIZERS[name].package}\n" in code
    scope = {"model": torch.nn.Linear(3, 1)}
    exec(code, scope)  # the snippet as a user pastes it
    optimizer = scope["optimizer"]
    assert type(optimizer) is getattr(package, OPTIMIZERS[name].torch)
    group = optimizer.param_groups[0]
    for key, value in config.items():
        if key in ("optimizer", "schedule", "batch_size"):
            continue
        actual = list(group["betas"]) if key == "betas" else group.get("initial_lr", group["lr"]) if key == "lr" \
            else group[key]
        assert actual == pytest.approx(value, rel=1e-12), key
    if name != "lion":
        assert "optimizer.eval()" in code and group["train_mode"]  # the snippet leaves it ready to step
        scope["model"](torch.ones(2, 3)).sum().backward()
        optimizer.step()
        scope["scheduler"].step()
