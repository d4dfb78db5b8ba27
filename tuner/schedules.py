"""Learning-rate schedules: closed-form functions of the step number k (counted from 0).

Closed forms follow torch.optim.lr_scheduler where torch has the schedule:

    constant       lr
    step           lr * gamma ** floor(k / step_size)                      (StepLR)
    exponential    lr * gamma ** k                                          (ExponentialLR)
    inverse_time   lr / (1 + rate * k)
    cosine         lr_min + (lr - lr_min) * (1 + cos(pi * min(k, T) / T)) / 2
                   (CosineAnnealingLR for k <= T; held at lr_min after T, no restarts)
    warm-up        lr * (s + (1 - s) * k / W) for k < W, then the schedule at k - W
                   (LinearLR(start_factor=s, total_iters=W) followed by it, as SequentialLR)

``SCHEDULES`` is the one list of schedule kinds: the search space's ``schedule`` choices and
the torch code of ``tuner.snippets`` derive from it.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from tuner.errors import ConfigError, check_options, check_range, shown


@dataclass(frozen=True, slots=True)
class Schedule:
    """A decay rule after an optional linear warm-up. Use ``make_schedule`` to build one."""

    kind: str
    lr: float
    params: tuple[tuple[str, float], ...] = ()
    warmup_steps: int = 0
    warmup_start_factor: float = 0.1

    def __call__(self, k: int) -> float:
        """The learning rate at step ``k``."""
        return float(self.values(np.array([k]))[0])

    def values(self, steps: "int | np.ndarray") -> np.ndarray:
        """Learning rates at ``steps`` (an array of step numbers, or n for steps 0..n-1)."""
        k = np.arange(steps, dtype=np.float64) if np.isscalar(steps) else np.asarray(steps, float)
        w = self.warmup_steps
        main = SCHEDULES[self.kind].decay(self.lr, np.maximum(k - w, 0.0), **dict(self.params))
        if w == 0:
            return main
        s = self.warmup_start_factor
        ramp = self.lr * (s + (1.0 - s) * np.minimum(k, w) / w)
        return np.where(k < w, ramp, main)


def _constant(lr: float, k: np.ndarray) -> np.ndarray:
    return np.full_like(k, lr)


def _step(lr: float, k: np.ndarray, step_size: int, gamma: float) -> np.ndarray:
    return lr * gamma ** np.floor(k / step_size)


def _exponential(lr: float, k: np.ndarray, gamma: float) -> np.ndarray:
    return lr * gamma**k


def _inverse_time(lr: float, k: np.ndarray, rate: float) -> np.ndarray:
    return lr / (1.0 + rate * k)


def _cosine(lr: float, k: np.ndarray, total_steps: int, lr_min: float) -> np.ndarray:
    return lr_min + (lr - lr_min) * (1.0 + np.cos(math.pi * np.minimum(k, total_steps) / total_steps)) / 2


@dataclass(frozen=True)
class ScheduleKind:
    """A registered decay rule: ``decay(lr, k, **params)``, the names of its parameters, and the
    ``torch.optim.lr_scheduler`` call with the same learning rates (a format string over the parameters)."""

    decay: Callable[..., np.ndarray]
    params: tuple[str, ...]
    torch: str


SCHEDULES: dict[str, ScheduleKind] = {
    "constant": ScheduleKind(_constant, (), "ConstantLR(optimizer, factor=1.0, total_iters=0)"),
    "step": ScheduleKind(_step, ("step_size", "gamma"), "StepLR(optimizer, step_size={step_size}, gamma={gamma})"),
    "exponential": ScheduleKind(_exponential, ("gamma",), "ExponentialLR(optimizer, gamma={gamma})"),
    "inverse_time": ScheduleKind(_inverse_time, ("rate",),
                                 "LambdaLR(optimizer, lambda k: 1.0 / (1.0 + {rate} * k))"),
    "cosine": ScheduleKind(_cosine, ("total_steps", "lr_min"),
                           "CosineAnnealingLR(optimizer, T_max={total_steps}, eta_min={lr_min})"),
}


def make_schedule(
    kind: str,
    lr: float,
    *,
    warmup_steps: int = 0,
    warmup_start_factor: float = 0.1,
    **params: Any,
) -> Schedule:
    """Validate and build a schedule; ConfigError names the bad field and its allowed values."""
    if kind not in SCHEDULES:
        raise ConfigError(f"schedule={shown(kind)} is unknown; allowed: {', '.join(SCHEDULES)}",
                          allowed=", ".join(SCHEDULES))
    check_range("lr", lr, 0.0, low_open=True)
    check_options(f"schedule {kind!r}", params, SCHEDULES[kind].params)
    missing = [name for name in SCHEDULES[kind].params if name not in params and name != "lr_min"]
    if missing:
        raise ConfigError(f"schedule {kind!r} needs {missing[0]!r}")
    if kind == "step":
        check_range("step_size", params["step_size"], 1, integer=True)
    if kind in ("step", "exponential"):
        check_range("gamma", params["gamma"], 0.0, 1.0, low_open=True)
    if kind == "inverse_time":
        check_range("rate", params["rate"], 0.0)
    if kind == "cosine":
        check_range("total_steps", params["total_steps"], 1, integer=True)
        params.setdefault("lr_min", 0.0)
        check_range("lr_min", params["lr_min"], 0.0, lr)
    check_range("warmup_steps", warmup_steps, 0, integer=True)
    check_range("warmup_start_factor", warmup_start_factor, 0.0, 1.0, low_open=True)
    return Schedule(kind, float(lr), tuple(sorted(params.items())), warmup_steps, warmup_start_factor)
