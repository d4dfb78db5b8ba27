"""Learning-rate schedules: closed-form functions of the step number k (counted from 0).

Closed forms follow torch.optim.lr_scheduler where torch has the schedule (one scheduler step
per optimizer step; T is the schedule's ``total_steps``):

    constant         lr
    step             lr * gamma ** floor(k / step_size)                      (StepLR)
    exponential      lr * gamma ** k                                          (ExponentialLR)
    inverse_time     lr / (1 + rate * k)
    cosine           lr_min + (lr - lr_min) * (1 + cos(pi * min(k, T) / T)) / 2
                     (CosineAnnealingLR for k <= T; held at lr_min after T, no restarts)
    inverse_sqrt     lr * sqrt(k0 / max(k, k0)), k0 = flat_steps: flat until k0, then the
                     1/sqrt(k) decay                          (LambdaLR with that lambda)
    polynomial       lr * (1 - min(k, T) / T) ** power        (PolynomialLR(total_iters=T, power);
                     0 from T on)
    one_cycle        p = pct_start * T - 1 (where the rise ends; torch's float, may be fractional),
                     a = lr / div_factor, b = a / final_div_factor:
                     anneal(a, lr, k / p)                             for k <= p,
                     anneal(lr, b, min((k - p) / (T - 1 - p), 1))     after,
                     anneal(x, y, t) = y + (x - y) * (1 + cos(pi * t)) / 2  ("cos")
                                     or x + (y - x) * t                     ("linear")
                     (OneCycleLR(max_lr=lr, total_steps=T, pct_start, anneal_strategy,
                     div_factor, final_div_factor, three_phase=False, cycle_momentum=False);
                     held at b from T on, where torch raises; tuner schedules only the lr, so
                     the momentum and betas are never cycled)
    cosine_restarts  lr_min + (lr - lr_min) * (1 + cos(pi * t / P_i)) / 2, where cycle i lasts
                     P_i = period * period_mult ** i steps and t counts the steps since it began
                     (CosineAnnealingWarmRestarts(T_0=period, T_mult=period_mult, eta_min=lr_min))
    wsd              lr * (1 - c(clip((k - (T - D)) / D, 0, 1))), D = cooldown_steps: stable until
                     T - D, then a cool-down to 0 at T with c(x) = x ("linear") or sqrt(x) ("1-sqrt")
                     (warm-up-stable-decay, Hägele et al. 2024; LambdaLR with that lambda)
    warm-up          lr * (s + (1 - s) * k / W) for k < W, then the schedule at k - W
                     (LinearLR(start_factor=s, total_iters=W) followed by it, as SequentialLR)

The linear warm-up composes with every kind but ``one_cycle``, which warms up itself (from
lr / div_factor to lr over its pct_start) and rejects ``warmup_steps``; the "W" of ``wsd`` is
this warm-up, so ``wsd``'s own parameters are its stable and cool-down parts.

``SCHEDULES`` is the one list of schedule kinds: the search space's ``schedule`` choices and
the torch code of ``tuner.snippets`` derive from it.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tuner.errors import ConfigError, check_choice, check_options, check_range, shown


@dataclass(frozen=True, slots=True)
class Schedule:
    """A decay rule after an optional linear warm-up. Use ``make_schedule`` to build one."""

    kind: str
    lr: float
    params: tuple[tuple[str, Any], ...] = ()
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


def _inverse_sqrt(lr: float, k: np.ndarray, flat_steps: int) -> np.ndarray:
    return lr * (flat_steps / np.maximum(k, flat_steps)) ** 0.5


def _polynomial(lr: float, k: np.ndarray, total_steps: int, power: float) -> np.ndarray:
    # 1 - k / T as torch computes it (its recursion telescopes to this ratio to a few ulps a step)
    return lr * (1.0 - np.minimum(k, total_steps) / total_steps) ** power


def _anneal(start: float, end: float, t: np.ndarray, strategy: str) -> np.ndarray:
    """From ``start`` (t = 0) to ``end`` (t = 1), in OneCycleLR's order of operations."""
    if strategy == "cos":
        return end + (start - end) / 2.0 * (np.cos(math.pi * t) + 1)
    return (end - start) * t + start


def _one_cycle(lr: float, k: np.ndarray, total_steps: int, pct_start: float, anneal_strategy: str,
               div_factor: float, final_div_factor: float) -> np.ndarray:
    start = lr / div_factor
    end = start / final_div_factor
    peak = float(pct_start * total_steps) - 1  # the step where the rise ends; < 0: no rise
    rise = _anneal(start, lr, k / peak if peak > 0 else np.zeros_like(k), anneal_strategy)
    fall = _anneal(lr, end, np.minimum((k - peak) / (total_steps - 1 - peak), 1.0), anneal_strategy)
    return np.where(k <= peak, rise, fall)


def _cosine_restarts(lr: float, k: np.ndarray, period: int, period_mult: int, lr_min: float) -> np.ndarray:
    if period_mult == 1:
        since, length = k % period, np.full_like(k, period)
    else:  # cycle by cycle, in exact integer arithmetic (float64 holds integers to 2**53)
        since, length = k.copy(), np.full_like(k, period)
        while (later := since >= length).any():
            since[later] -= length[later]
            length[later] *= period_mult
    return lr_min + (lr - lr_min) * (1 + np.cos(math.pi * since / length)) / 2


def _wsd(lr: float, k: np.ndarray, total_steps: int, cooldown_steps: int, cooldown: str) -> np.ndarray:
    x = np.clip((k - (total_steps - cooldown_steps)) / cooldown_steps, 0.0, 1.0)
    return lr * (1.0 - (x if cooldown == "linear" else x**0.5))


ANNEAL_STRATEGIES = ("cos", "linear")
COOLDOWNS = ("linear", "1-sqrt")


@dataclass(frozen=True)
class ScheduleKind:
    """A registered decay rule: ``decay(lr, k, **params)``, the names of its parameters, and the
    ``torch.optim.lr_scheduler`` call with the same learning rates (a format string over ``lr``,
    the parameters and ``fields(**params)``, each written as a Python literal).

    ``defaults`` fill parameters a caller leaves out; ``warmup`` says whether the linear warm-up
    may precede the rule; ``searched`` whether the default search space chooses among it (a
    study file opens the others with ``schedule: {choices: [...]}``); ``note`` is a comment the
    torch code carries."""

    decay: Callable[..., np.ndarray]
    params: tuple[str, ...]
    torch: str
    defaults: dict[str, Any] = field(default_factory=dict)
    fields: Callable[..., dict[str, Any]] | None = None
    warmup: bool = True
    searched: bool = True
    note: str = ""

    def torch_fields(self, lr: float, params: dict[str, Any]) -> dict[str, Any]:
        """The values ``torch`` is formatted with, for a schedule with ``params`` (extra keys ignored)."""
        given = {**self.defaults, **{name: params[name] for name in self.params if name in params}}
        return {"lr": lr, **given, **(self.fields(**given) if self.fields else {})}


def _wsd_fields(total_steps: int, cooldown_steps: int, cooldown: str) -> dict[str, Any]:
    return {"stable_steps": total_steps - cooldown_steps, "cooldown_power": 1.0 if cooldown == "linear" else 0.5}


SCHEDULES: dict[str, ScheduleKind] = {
    "constant": ScheduleKind(_constant, (), "ConstantLR(optimizer, factor=1.0, total_iters=0)"),
    "step": ScheduleKind(_step, ("step_size", "gamma"), "StepLR(optimizer, step_size={step_size}, gamma={gamma})"),
    "exponential": ScheduleKind(_exponential, ("gamma",), "ExponentialLR(optimizer, gamma={gamma})"),
    "inverse_time": ScheduleKind(_inverse_time, ("rate",),
                                 "LambdaLR(optimizer, lambda k: 1.0 / (1.0 + {rate} * k))"),
    "cosine": ScheduleKind(_cosine, ("total_steps", "lr_min"),
                           "CosineAnnealingLR(optimizer, T_max={total_steps}, eta_min={lr_min})",
                           defaults={"lr_min": 0.0}),
    "inverse_sqrt": ScheduleKind(_inverse_sqrt, ("flat_steps",),
                                 "LambdaLR(optimizer, lambda k: ({flat_steps} / max(k, {flat_steps})) ** 0.5)",
                                 searched=False),
    "polynomial": ScheduleKind(_polynomial, ("total_steps", "power"),
                               "PolynomialLR(optimizer, total_iters={total_steps}, power={power})",
                               defaults={"power": 1.0}, searched=False),
    "one_cycle": ScheduleKind(
        _one_cycle, ("total_steps", "pct_start", "anneal_strategy", "div_factor", "final_div_factor"),
        "OneCycleLR(\n    optimizer, max_lr={lr}, total_steps={total_steps}, pct_start={pct_start}, "
        "anneal_strategy={anneal_strategy},\n    div_factor={div_factor}, final_div_factor={final_div_factor}, "
        "cycle_momentum=False,\n)",
        defaults={"pct_start": 0.3, "anneal_strategy": "cos", "div_factor": 25.0, "final_div_factor": 1e4},
        warmup=False, searched=False,
        note="OneCycleLR sets the lr itself, from max_lr / div_factor; tuner schedules only the lr: "
             "cycle_momentum=False"),
    "cosine_restarts": ScheduleKind(
        _cosine_restarts, ("period", "period_mult", "lr_min"),
        "CosineAnnealingWarmRestarts(optimizer, T_0={period}, T_mult={period_mult}, eta_min={lr_min})",
        defaults={"period_mult": 1, "lr_min": 0.0}, searched=False),
    "wsd": ScheduleKind(
        _wsd, ("total_steps", "cooldown_steps", "cooldown"),
        "LambdaLR(optimizer, lambda k: 1.0 - min(max(k - {stable_steps}, 0) / {cooldown_steps}, 1.0) "
        "** {cooldown_power})",
        defaults={"cooldown": "linear"}, fields=_wsd_fields, searched=False,
        note="warm-up-stable-decay: constant, then a cool-down to 0 "
             "(power 1.0: linear, 0.5: 1-sqrt) over the last cooldown_steps"),
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
    entry = SCHEDULES[kind]
    check_options(f"schedule {kind!r}", params, entry.params)
    missing = [name for name in entry.params if name not in params and name not in entry.defaults]
    if missing:
        raise ConfigError(f"schedule {kind!r} needs {missing[0]!r}")
    params = {**entry.defaults, **params}
    if "total_steps" in params:
        check_range("total_steps", params["total_steps"], 1, integer=True)
    if "lr_min" in params:
        check_range("lr_min", params["lr_min"], 0.0, lr)
    if kind == "step":
        check_range("step_size", params["step_size"], 1, integer=True)
    if kind in ("step", "exponential"):
        check_range("gamma", params["gamma"], 0.0, 1.0, low_open=True)
    if kind == "inverse_time":
        check_range("rate", params["rate"], 0.0)
    if kind == "inverse_sqrt":
        check_range("flat_steps", params["flat_steps"], 1, integer=True)
    if kind == "polynomial":
        check_range("power", params["power"], 0.0, low_open=True)
    if kind == "one_cycle":
        pct = check_range("pct_start", params["pct_start"], 0.0, 1.0, low_open=True, high_open=True)
        if float(pct * params["total_steps"]) - 1 == 0:  # OneCycleLR would divide 0 by 0 at step 0
            allowed = f"a finite number in (0, 1) other than 1/total_steps = 1/{params['total_steps']}"
            raise ConfigError(f"pct_start={shown(pct)} is not allowed; allowed: {allowed}", allowed=allowed)
        params["pct_start"] = float(pct)
        check_choice("anneal_strategy", params["anneal_strategy"], ANNEAL_STRATEGIES)
        check_range("div_factor", params["div_factor"], 1.0)
        check_range("final_div_factor", params["final_div_factor"], 1.0)
    if kind == "cosine_restarts":
        check_range("period", params["period"], 1, integer=True)
        check_range("period_mult", params["period_mult"], 1, integer=True)
    if kind == "wsd":
        check_range("cooldown_steps", params["cooldown_steps"], 1, params["total_steps"], integer=True)
        check_choice("cooldown", params["cooldown"], COOLDOWNS)
    check_range("warmup_steps", warmup_steps, 0, integer=True)
    if warmup_steps and not entry.warmup:
        allowed = f"0 (schedule {kind!r} warms up itself)"
        raise ConfigError(f"warmup_steps={shown(warmup_steps)} is not allowed; allowed: {allowed}", allowed=allowed)
    check_range("warmup_start_factor", warmup_start_factor, 0.0, 1.0, low_open=True)
    return Schedule(kind, float(lr), tuple(sorted(params.items())), warmup_steps, warmup_start_factor)
