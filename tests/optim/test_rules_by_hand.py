"""Two steps of every rule on one coordinate, against values worked out by hand.

These hold everywhere (no torch needed). p0 = 1, gradients 1 then 2, unless stated.
"""

from math import sqrt

import numpy as np
import pytest

from tuner.optim import make_optimizer


def run(name: str, grads: list[float], lr: float = 0.1, dtype: str = "float64", **options) -> list[float]:
    optimizer = make_optimizer(name, **options)
    params = np.ones(1, dtype)
    state = optimizer.init(params)
    seen = []
    for g in grads:
        optimizer.update(params, np.array([g], dtype), lr, state)
        seen.append(float(params[0]))
    return seen


CASES = [
    # p1 = 1 - .1 * 1; p2 = .9 - .1 * 2
    ("sgd", {}, [0.9, 0.7]),
    # coupled decay: g = 1 + .5 * 1 = 1.5; then g = 2 + .5 * .85 = 2.425
    ("sgd", {"weight_decay": 0.5}, [0.85, 0.85 - 0.1 * 2.425]),
    # first step b = g (no dampening); b = .9 * 1 + 2 = 2.9
    ("momentum", {"momentum": 0.9}, [0.9, 0.9 - 0.29]),
    # b = .9 * 1 + (1 - .5) * 2 = 1.9
    ("momentum", {"momentum": 0.9, "dampening": 0.5}, [0.9, 0.9 - 0.19]),
    # b = 1, g = 1 + .9 * 1 = 1.9; b = 2.9, g = 2 + .9 * 2.9 = 4.61
    ("nesterov", {"momentum": 0.9}, [1 - 0.19, 1 - 0.19 - 0.461]),
    # s = 1 + 1 = 2, clr = .1; s = 6, clr = .1 / (1 + .5)
    ("adagrad", {"lr_decay": 0.5, "initial_accumulator_value": 1.0, "eps": 0.0},
     [1 - 0.1 / sqrt(2), 1 - 0.1 / sqrt(2) - (0.1 / 1.5) * 2 / sqrt(6)]),
    # eps outside the root: 1 / (sqrt(1) + 1)
    ("adagrad", {"eps": 1.0}, [1 - 0.1 * 1 / (1 + 1), 1 - 0.05 - 0.1 * 2 / (sqrt(5) + 1)]),
    # v = .5; v = .25 + .5 * 4 = 2.25
    ("rmsprop", {"alpha": 0.5, "eps": 0.0}, [1 - 0.1 / sqrt(0.5), 1 - 0.1 / sqrt(0.5) - 0.1 * 2 / 1.5]),
    # a = .5, v - a^2 = .25; a = .25 + 1 = 1.25, v = 2.25, v - a^2 = .6875
    ("rmsprop", {"alpha": 0.5, "eps": 0.0, "centered": True}, [0.8, 0.8 - 0.1 * 2 / sqrt(0.6875)]),
    # b = 1 / sqrt(.5); b = .9 b + 2 / 1.5
    ("rmsprop", {"alpha": 0.5, "eps": 0.0, "momentum": 0.9},
     [1 - 0.1 / sqrt(0.5), 1 - 0.1 / sqrt(0.5) - 0.1 * (0.9 / sqrt(0.5) + 2 / 1.5)]),
    # m = .1, v = .001, both corrected to 1; m = .29, v = .004999, c1 = .19, c2 = .001999
    ("adam", {"eps": 0.0}, [0.9, 0.9 - (0.1 / 0.19) * 0.29 / (sqrt(0.004999) / sqrt(0.001999))]),
    # eps is added after the bias correction of sqrt(v): d = 1 + .5
    ("adam", {"eps": 0.5}, [1 - 0.1 / 1.5, None]),
    # decoupled: p = 1 * (1 - .1 * .5) = .95, then the Adam step of .1
    ("adamw", {"eps": 0.0, "weight_decay": 0.5}, [0.85, None]),
    # momentum_decay 0: mu = .9 * .5 = .45 each step, P = .45, .2025, .091125; d = 1, then sqrt(.004999 / .001999)
    ("nadam", {"eps": 0.0, "momentum_decay": 0.0},
     [0.9 - 0.0045 / 0.7975, 0.9 - 0.0045 / 0.7975 - (0.055 / 0.7975 * 2 + 0.045 / 0.908875 * 0.29)
      / sqrt(0.004999 / 0.001999)]),
    # decoupled: p = 1 * (1 - .1 * .5) = .95 first, then the NAdam step above (which does not read p)
    ("nadamw", {"eps": 0.0, "momentum_decay": 0.0, "weight_decay": 0.5}, [0.85 - 0.0045 / 0.7975, None]),
    # rho_1 = 1, rho_2 = 1.95 < 5: unrectified, p = p - lr * m / (1 - b1**t), eps and v unused
    ("radam", {"eps": 1.0}, [0.9, 0.9 - (0.1 / 0.19) * 0.29]),
    ("radamw", {"weight_decay": 0.5}, [0.85, None]),
    # u = max(0, |1|) = 1, m / c1 = 1; m = .29, u = max(.999, 2) = 2, c1 = .19
    ("adamax", {"eps": 0.0}, [0.9, 0.9 - (0.1 / 0.19) * 0.29 / 2]),
    # v = .5, delta = sqrt(1) / sqrt(1.5), a = .5 / 1.5; v = 2.25, delta = sqrt(4 / 3) / sqrt(3.25) * 2
    ("adadelta", {"rho": 0.5, "eps": 1.0},
     [1 - 0.1 / sqrt(1.5), 1 - 0.1 / sqrt(1.5) - 0.1 * 2 * sqrt(4 / 3) / sqrt(3.25)]),
]


@pytest.mark.parametrize(("name", "options", "expected"), CASES, ids=lambda v: str(v))
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_two_steps_by_hand(name: str, options: dict, expected: list, dtype: str) -> None:
    seen = run(name, [1.0, 2.0], dtype=dtype, **options)
    tolerance = 1e-12 if dtype == "float64" else 1e-6
    for got, want in zip(seen, expected, strict=True):
        if want is not None:
            assert got == pytest.approx(want, abs=tolerance)


def test_amsgrad_normalises_by_the_largest_raw_second_moment() -> None:
    # g = 2 then 0: v1 = .004, v2 = .003996 < v1, so AMSGrad keeps .004 (raw, then corrected)
    plain = run("adam", [2.0, 0.0], eps=0.0)
    ams = run("adam", [2.0, 0.0], eps=0.0, amsgrad=True)
    assert plain[0] == ams[0] == pytest.approx(0.9)
    m2 = 0.9 * 0.2
    assert plain[1] == pytest.approx(0.9 - (0.1 / 0.19) * m2 / (sqrt(0.003996) / sqrt(0.001999)), abs=1e-12)
    assert ams[1] == pytest.approx(0.9 - (0.1 / 0.19) * m2 / (sqrt(0.004) / sqrt(0.001999)), abs=1e-12)


@pytest.mark.parametrize("name", ["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw",
                                  "nadam", "nadamw", "radam", "radamw", "adamax", "adadelta"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_update_is_in_place_and_keeps_dtype(name: str, dtype: str) -> None:
    optimizer = make_optimizer(name, weight_decay=0.1)
    params = np.linspace(-1, 1, 64).astype(dtype)
    buffer = params
    grad = np.full(64, 0.5, dtype)
    state = optimizer.init(params)
    for _ in range(3):
        optimizer.update(params, grad, 0.1, state)
    assert params is buffer and params.dtype == dtype
    assert np.all(grad == 0.5), "the caller's gradient must not be modified"
    assert not np.allclose(params, np.linspace(-1, 1, 64))


@pytest.mark.parametrize("name", ["momentum", "adam", "rmsprop"])
def test_learning_rate_is_read_at_every_step(name: str) -> None:
    # a step taken with lr = 0 after one with lr = .1 must not move the parameters
    optimizer = make_optimizer(name)
    params = np.ones(3)
    state = optimizer.init(params)
    optimizer.update(params, np.ones(3), 0.1, state)
    after_first = params.copy()
    optimizer.update(params, np.ones(3), 0.0, state)
    np.testing.assert_array_equal(params, after_first)
