"""Schedules against hand-written arrays and, where present, torch.optim.lr_scheduler."""

import numpy as np
import pytest

from tests.conftest import optional_torch
from tuner import ConfigError
from tuner.schedules import make_schedule

HAND = [
    (("constant", 0.5), {}, [0.5, 0.5, 0.5, 0.5]),
    (("step", 1.0), {"step_size": 2, "gamma": 0.5}, [1.0, 1.0, 0.5, 0.5, 0.25]),
    (("exponential", 2.0), {"gamma": 0.5}, [2.0, 1.0, 0.5, 0.25]),
    (("inverse_time", 1.0), {"rate": 1.0}, [1.0, 1 / 2, 1 / 3, 1 / 4]),
    (("cosine", 1.0), {"total_steps": 4, "lr_min": 0.2}, [1.0, 0.2 + 0.8 * (1 + np.sqrt(0.5)) / 2, 0.6,
                                                           0.2 + 0.8 * (1 - np.sqrt(0.5)) / 2, 0.2, 0.2]),
    # warm-up from .25 to 1 over 3 steps, then the decay restarts at its own step 0
    (("step", 1.0), {"step_size": 2, "gamma": 0.5, "warmup_steps": 3, "warmup_start_factor": 0.25},
     [0.25, 0.5, 0.75, 1.0, 1.0, 0.5]),
]


@pytest.mark.parametrize(("head", "params", "expected"), HAND, ids=lambda v: str(v))
def test_schedule_against_hand_written_values(head: tuple, params: dict, expected: list) -> None:
    schedule = make_schedule(*head, **params)
    np.testing.assert_allclose(schedule.values(len(expected)), expected, rtol=0, atol=1e-15)
    assert schedule(len(expected) - 1) == pytest.approx(expected[-1], abs=1e-15)


def torch_lrs(make, steps: int, lr: float) -> np.ndarray:
    torch = optional_torch()
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    scheduler = make(torch.optim.lr_scheduler, opt)
    seen = []
    for _ in range(steps):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        scheduler.step()
    return np.array(seen)


TORCH = [
    (lambda s, o: s.StepLR(o, step_size=7, gamma=0.3), ("step", 0.1), {"step_size": 7, "gamma": 0.3}, 60),
    (lambda s, o: s.ExponentialLR(o, gamma=0.97), ("exponential", 0.1), {"gamma": 0.97}, 60),
    (lambda s, o: s.CosineAnnealingLR(o, T_max=50, eta_min=1e-3), ("cosine", 0.1),
     {"total_steps": 50, "lr_min": 1e-3}, 51),
    (lambda s, o: s.LinearLR(o, start_factor=0.1, total_iters=10), ("constant", 0.1),
     {"warmup_steps": 10, "warmup_start_factor": 0.1}, 30),
    (lambda s, o: s.SequentialLR(o, [s.LinearLR(o, start_factor=0.2, total_iters=5),
                                     s.CosineAnnealingLR(o, T_max=20)], milestones=[5]),
     ("cosine", 0.1), {"total_steps": 20, "warmup_steps": 5, "warmup_start_factor": 0.2}, 26),
]


@pytest.mark.parametrize(("make", "head", "params", "steps"), TORCH, ids=lambda v: "torch" if callable(v) else str(v))
def test_schedule_matches_torch(make, head: tuple, params: dict, steps: int) -> None:
    np.testing.assert_allclose(
        make_schedule(*head, **params).values(steps), torch_lrs(make, steps, head[1]), rtol=1e-12, atol=1e-15
    )


@pytest.mark.parametrize(
    ("args", "params", "message"),
    [
        (("linear", 0.1), {}, r"schedule='linear' is unknown; allowed: constant, step"),
        (("constant", 0.0), {}, r"lr=0.0 .*\(0, inf\)"),
        (("step", 0.1), {"step_size": 0, "gamma": 0.5}, r"step_size=0 .*integer in \[1, inf\)"),
        (("step", 0.1), {"gamma": 0.5}, r"schedule 'step' needs 'step_size'"),
        (("exponential", 0.1), {"gamma": 1.5}, r"gamma=1.5 .*\(0, 1\]"),
        (("cosine", 0.1), {"total_steps": 10, "lr_min": 0.5}, r"lr_min=0.5 .*\[0, 0.1\]"),
        (("cosine", 0.1), {"total_steps": 10, "gamma": 0.5}, r"unknown option 'gamma' for schedule 'cosine'"),
        (("constant", 0.1), {"warmup_steps": -1}, r"warmup_steps=-1"),
        (("constant", 0.1), {"warmup_steps": 5, "warmup_start_factor": 0.0}, r"warmup_start_factor=0.0 .*\(0, 1\]"),
    ],
)
def test_bad_schedules_are_rejected(args: tuple, params: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_schedule(*args, **params)
