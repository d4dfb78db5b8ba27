"""Gradient clipping and weight averaging against torch (clip_grad_norm_, clip_grad_value_,
AveragedModel with get_ema_multi_avg_fn or the uniform average), on random settings, float64.

The parameters are several tensors in torch and one flat vector here, as a task lays them out."""

import numpy as np
import pytest

from tests.conftest import optional_torch
from tuner.optim import make_optimizer

STEPS = 300
SHAPES = [(7, 5), (5,), (3, 7), (3,)]
SIZES = [int(np.prod(s)) for s in SHAPES]
SEEDS = range(8)


def random_run(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Initial parameters, gradients whose scale spans clipping and not, and a changing lr."""
    rng = np.random.default_rng(seed)
    p0 = rng.standard_normal(sum(SIZES))
    grads = rng.standard_normal((STEPS, sum(SIZES))) * np.exp(rng.uniform(-3, 3, (STEPS, 1)))
    lrs = 10 ** rng.uniform(-3, -1) * (1.5 + np.sin(np.arange(STEPS) / 7.0))
    return p0, grads, lrs


def torch_tensors(torch, flat: np.ndarray) -> list:
    parts = np.split(flat, np.cumsum(SIZES)[:-1])
    return [torch.tensor(part.reshape(shape)) for part, shape in zip(parts, SHAPES, strict=True)]


def flat(tensors) -> np.ndarray:
    return np.concatenate([t.detach().numpy().ravel() for t in tensors])


def technique(seed: int, kind: str) -> dict:
    rng = np.random.default_rng([seed, 1])
    if kind == "norm":
        return {"clip_grad_norm": float(10 ** rng.uniform(-2, 2))}
    if kind == "value":
        return {"clip_grad_value": float(10 ** rng.uniform(-2, 1))}
    if kind == "ema":
        return {"ema_decay": float(1 - 10 ** rng.uniform(-3, -0.5))}
    return {"polyak_start": int(rng.integers(0, STEPS))}


def compare(seed: int, optimizer_name: str, options: dict, foreach: bool) -> float:
    """Train with ``options`` here and with the same step in torch; the largest difference of the
    trained parameters and of the evaluated ones (the average when averaging) over every step."""
    torch = optional_torch()
    p0, grads, lrs = random_run(seed)
    ours = make_optimizer(optimizer_name, **options)
    params = p0.copy()
    state = ours.init(params)

    module = torch.nn.ParameterList([torch.nn.Parameter(t) for t in torch_tensors(torch, p0)])
    torch_options = {k: v for k, v in options.items() if k not in ("clip_grad_norm", "clip_grad_value",
                                                                   "ema_decay", "polyak_start")}
    torch_class = {"sgd": torch.optim.SGD, "momentum": torch.optim.SGD, "adam": torch.optim.Adam,
                   "adamw": torch.optim.AdamW}[optimizer_name]
    reference = torch_class(module.parameters(), lr=float(lrs[0]), foreach=foreach, **torch_options)
    swa = torch.optim.swa_utils
    averaged = None
    if "ema_decay" in options:
        averaged = swa.AveragedModel(module, multi_avg_fn=swa.get_ema_multi_avg_fn(options["ema_decay"]))
    elif "polyak_start" in options:
        averaged = swa.AveragedModel(module)

    worst = 0.0
    for k in range(STEPS):
        ours.update(params, grads[k], float(lrs[k]), state)
        for p, g in zip(module, torch_tensors(torch, grads[k]), strict=True):
            p.grad = g
        if "clip_grad_norm" in options:
            torch.nn.utils.clip_grad_norm_(module.parameters(), options["clip_grad_norm"], foreach=foreach)
        if "clip_grad_value" in options:
            torch.nn.utils.clip_grad_value_(module.parameters(), options["clip_grad_value"], foreach=foreach)
        reference.param_groups[0]["lr"] = float(lrs[k])
        reference.step()
        if averaged is not None and k + 1 > options.get("polyak_start", 0):
            averaged.update_parameters(module)
        theirs = flat(module)
        evaluated = flat(averaged.module) if averaged is not None and averaged.n_averaged > 0 else theirs
        worst = max(worst, np.abs(params - theirs).max(), np.abs(ours.eval_params(params, state) - evaluated).max())
    return worst


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("kind", ["norm", "value", "ema", "polyak"])
@pytest.mark.parametrize("seed", SEEDS)
def test_technique_matches_torch(seed: int, kind: str, foreach: bool) -> None:
    optimizer = ["sgd", "momentum", "adam", "adamw"][seed % 4]
    options = {"momentum": 0.9} if optimizer == "momentum" else {}
    if seed % 3 == 0:
        options["weight_decay"] = 0.05  # coupled or decoupled, after clipping as in torch
    assert compare(seed, optimizer, {**options, **technique(seed, kind)}, foreach) <= 1e-10


@pytest.mark.parametrize("seed", SEEDS)
def test_clipping_and_averaging_together_match_torch(seed: int) -> None:
    options = {**technique(seed, "norm" if seed % 2 else "value"), **technique(seed, "ema" if seed % 2 else "polyak")}
    assert compare(seed, "adam", options, foreach=True) <= 1e-10


def test_clipping_by_norm_by_hand() -> None:
    # g = (3, 4), |g| = 5, max_norm 1: g * 1 / (5 + 1e-6); sgd with lr 1 from 0
    optimizer = make_optimizer("sgd", clip_grad_norm=1.0)
    params = np.zeros(2)
    grad = np.array([3.0, 4.0])
    optimizer.update(params, grad, 1.0, optimizer.init(params))
    np.testing.assert_allclose(params, -grad / (5 + 1e-6), rtol=1e-15)
    assert grad.tolist() == [3.0, 4.0], "the caller's gradient is not modified"


def test_a_small_gradient_is_not_clipped() -> None:
    optimizer = make_optimizer("sgd", clip_grad_norm=10.0)
    params = np.zeros(2)
    optimizer.update(params, np.array([3.0, 4.0]), 1.0, optimizer.init(params))
    assert params.tolist() == [-3.0, -4.0]


def test_polyak_average_is_the_mean_of_the_iterates_after_its_start() -> None:
    optimizer = make_optimizer("sgd", polyak_start=2)
    params = np.zeros(1)
    state = optimizer.init(params)
    for _ in range(2):
        optimizer.update(params, np.array([-1.0]), 1.0, state)
    assert optimizer.eval_params(params, state) is params, "no average before its start"
    for _ in range(3):
        optimizer.update(params, np.array([-1.0]), 1.0, state)
    assert optimizer.eval_params(params, state).tolist() == [4.0]  # mean of 3, 4, 5


@pytest.mark.parametrize(("options", "message"), [
    ({"clip_grad_norm": 0.0}, r"clip_grad_norm=0.0 is not allowed"),
    ({"clip_grad_value": -1.0}, r"clip_grad_value=-1.0 is not allowed"),
    ({"clip_grad_norm": 1.0, "clip_grad_value": 1.0}, "both set"),
    ({"ema_decay": 1.0}, r"ema_decay=1.0 is not allowed"),
    ({"polyak_start": 1.5}, r"polyak_start=1.5 is not allowed"),
    ({"ema_decay": 0.9, "polyak_start": 3}, "both set"),
])
def test_bad_technique_settings_are_rejected(options: dict, message: str) -> None:
    from tuner import ConfigError

    with pytest.raises(ConfigError, match=message):
        make_optimizer("adam", **options)


def test_techniques_are_not_options_of_lbfgs() -> None:
    from tuner import ConfigError

    with pytest.raises(ConfigError, match="unknown option 'clip_grad_norm'"):
        make_optimizer("lbfgs", clip_grad_norm=1.0)


@pytest.mark.parametrize("options", [{"clip_grad_norm": 0.5, "ema_decay": 0.99}, {"clip_grad_value": 0.1, "polyak_start": 7}])
def test_torch_snippet_clips_and_averages_the_same_way(options: dict) -> None:
    from tuner.snippets import torch_snippet

    torch = optional_torch()
    config = {"optimizer": "adam", "lr": 0.01, "schedule": {"kind": "constant"}, **options}
    code = torch_snippet(config)
    scope = {"model": torch.nn.Linear(3, 1)}
    exec(code, scope)  # the snippet as a user pastes it
    assert isinstance(scope["averaged"], torch.optim.swa_utils.AveragedModel)
    assert set(scope["optimizer"].param_groups[0]) >= {"lr", "betas"} and "ema_decay" not in code.split("Adam(")[1].split(")")[0]
    if "clip_grad_norm" in options:
        assert "clip_grad_norm_(model.parameters(), max_norm=0.5)" in code and "get_ema_multi_avg_fn(0.99)" in code
    else:
        assert "clip_grad_value_(model.parameters(), clip_value=0.1)" in code and "if k > 7" in code
