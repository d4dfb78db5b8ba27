"""Schedule-free SGD and AdamW (Defazio et al. 2024; schedulefree.SGDScheduleFree and
schedulefree.AdamWScheduleFree, version 1.4).

Three sequences: ``z`` takes the base steps (SGD's or Adam's), ``x`` is a weighted average of the
``z`` sequence, and ``y``, an interpolation of the two, is where the gradient is taken. The package
keeps ``y`` in the parameter tensors in train mode and turns them into ``x`` in ``eval()``; here
``params`` always hold ``y`` and ``eval_params`` computes ``x`` into a state buffer, so training
goes on from ``y`` exactly (the package's ``train()`` turns ``x`` back into ``y`` up to rounding).

Step k (counted from 0), ``lr`` the learning rate passed in (tuner's schedule, as a torch scheduler
sets ``group["lr"]``), ``beta`` the momentum (SGD) or beta1 (AdamW):

    lr_k   = lr * min(1, (k + 1) / warmup_steps)      (the package's own warm-up; lr without one)
    lr_max = max(lr_max, lr_k)                        (starts at -1)
    w      = (k + 1)**r * lr_max**weight_lr_power
    W      = W + w;   c = w / W                       (c = 0 while W = 0)
    z      = y                                        (at k = 0)
    d      = g                                        (SGD; its weight decay is coupled, g + wd * y,
                                                       ``transforms.WeightDecay``)
    v      = b2 * v + (1 - b2) * g * g                (AdamW)
    d      = g / (sqrt(v / (1 - b2**(k + 1))) + eps) + weight_decay * y
    y      = lerp(y, z, c) + lr_k * (beta * (1 - c) - 1) * d
    z      = z - lr_k * d
    x      = lerp(y, z, 1 - 1 / beta)                 (evaluation: x = (y - (1 - beta) * z) / beta)

with torch's lerp(a, b, w) = a + w * (b - a) if |w| < 0.5 else b - (1 - w) * (b - a).

The averaging weights use the largest lr so far, not the current one: after an external warm-up
reaches its peak, a decaying schedule leaves the weights at peak**weight_lr_power (uniform for
r = 0); the package's warm-up multiplies the external schedule.

A population (params (K, P), ``tuner.optim.population``) takes per-member (K, 1) values of the
float hyperparameters and of ``lr``; ``lr_max`` and ``W`` are then per member too, (K, 1), and
every member computes what its lone run computes (its powers with Python's pow: ``base.power``).
"""

from dataclasses import dataclass

import numpy as np

from tuner.errors import check_range
from tuner.optim.adam import check_betas
from tuner.optim.base import larger, lerp_, lerp_into, like, nonzero, power


@dataclass(slots=True)
class ScheduleFreeState:
    """``z``; ``x``, the evaluation point ``eval_params`` writes (``update`` uses it as scratch);
    AdamW's second moment ``v`` and scratch; the step count ``k``, ``lr_max`` and the weight sum
    (floats, or (K, 1) arrays for a population: they follow each member's learning rates)."""

    z: np.ndarray
    x: np.ndarray
    lr_max: float | np.ndarray
    weight_sum: float | np.ndarray
    exp_avg_sq: np.ndarray | None = None
    scratch: np.ndarray | None = None
    k: int = 0


def _state(params: np.ndarray, adam: bool) -> ScheduleFreeState:
    """A fresh state for ``params``: a lone run's (P,) or a population's (K, P)."""
    members = params.shape[:-1] + (1,) if params.ndim == 2 else None
    return ScheduleFreeState(
        z=np.empty_like(params), x=np.empty_like(params),
        lr_max=-1.0 if members is None else np.full(members, -1.0),
        weight_sum=0.0 if members is None else np.zeros(members),
        exp_avg_sq=np.zeros_like(params) if adam else None, scratch=np.empty_like(params) if adam else None,
    )


def _check_averaging(warmup_steps: int, r: float, weight_lr_power: float) -> None:
    check_range("warmup_steps", warmup_steps, 0, integer=True)
    check_range("r", r, 0.0)
    check_range("weight_lr_power", weight_lr_power, 0.0)


def _averaging(rule: "ScheduleFreeSGD | ScheduleFreeAdamW", lr: "float | np.ndarray",
               state: ScheduleFreeState) -> "tuple[float, float] | tuple[np.ndarray, np.ndarray]":
    """Step ``state.k``'s learning rate with the package's warm-up, and the weight ``c`` of z in y
    (per member for a population)."""
    k = state.k
    if k < rule.warmup_steps:
        lr = lr * ((k + 1) / rule.warmup_steps)
    state.lr_max = larger(lr, state.lr_max)
    weight = power(k + 1, rule.r) * power(state.lr_max, rule.weight_lr_power)
    state.weight_sum = state.weight_sum + weight
    if isinstance(weight, np.ndarray):
        return lr, np.divide(weight, state.weight_sum, out=np.zeros_like(weight), where=state.weight_sum != 0)
    return lr, weight / state.weight_sum if state.weight_sum != 0 else 0.0


def _step(params: np.ndarray, d: np.ndarray, lr: "float | np.ndarray", ckp1: "float | np.ndarray",
          beta: "float | np.ndarray", state: ScheduleFreeState) -> None:
    """y = lerp(y, z, c) + lr * (beta * (1 - c) - 1) * d;  z = z - lr * d."""
    if state.k == 0:
        np.copyto(state.z, params)
    z, tmp = state.z, state.x
    lerp_(params, z, ckp1, tmp)
    np.multiply(d, like(lr * (beta * (1 - ckp1) - 1), d), out=tmp)
    params += tmp
    np.multiply(d, like(lr, d), out=tmp)
    z -= tmp
    state.k += 1


def _eval_point(params: np.ndarray, beta: "float | np.ndarray", state: ScheduleFreeState) -> np.ndarray:
    """x = lerp(y, z, 1 - 1/beta) in ``state.x`` (y itself before the first step, as the package's eval())."""
    if state.k == 0:
        np.copyto(state.x, params)
    else:
        lerp_into(state.x, params, state.z, 1 - 1 / beta)
    return state.x


@dataclass(frozen=True, slots=True)
class ScheduleFreeSGD:
    """Schedule-free SGD as schedulefree.SGDScheduleFree computes it (module docstring). Its weight
    decay, g + weight_decay * y before the step, is ``transforms.WeightDecay`` coupled, exactly."""

    momentum: float = 0.9
    warmup_steps: int = 0
    r: float = 0.0
    weight_lr_power: float = 2.0

    def __post_init__(self) -> None:
        check_range("momentum", self.momentum, 0.0, 1.0, low_open=True, high_open=True)
        _check_averaging(self.warmup_steps, self.r, self.weight_lr_power)

    def init(self, params: np.ndarray) -> ScheduleFreeState:
        return _state(params, adam=False)

    def update(self, params: np.ndarray, grad: np.ndarray, lr: float, state: ScheduleFreeState) -> None:
        lr, ckp1 = _averaging(self, lr, state)
        _step(params, grad, lr, ckp1, self.momentum, state)

    def eval_params(self, params: np.ndarray, state: ScheduleFreeState) -> np.ndarray:
        """The averaged point x the package's ``optimizer.eval()`` puts in the parameters (a state buffer)."""
        return _eval_point(params, self.momentum, state)


@dataclass(frozen=True, slots=True)
class ScheduleFreeAdamW:
    """Schedule-free AdamW as schedulefree.AdamWScheduleFree computes it (module docstring). Its
    weight decay is its own: weight_decay * y added to the Adam-normalised gradient, so it enters
    both y and z with the warmed-up lr; neither coupled nor AdamW's decoupled decay."""

    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    warmup_steps: int = 0
    r: float = 0.0
    weight_lr_power: float = 2.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "betas", check_betas(self.betas))
        check_range("betas[0]", self.betas[0], 0.0, 1.0, low_open=True, high_open=True)  # x divides by beta1
        check_range("eps", self.eps, 0.0)
        check_range("weight_decay", self.weight_decay, 0.0)
        _check_averaging(self.warmup_steps, self.r, self.weight_lr_power)

    def init(self, params: np.ndarray) -> ScheduleFreeState:
        return _state(params, adam=True)

    def update(self, params: np.ndarray, grad: np.ndarray, lr: float, state: ScheduleFreeState) -> None:
        b1, b2 = self.betas
        bias_correction2 = 1 - power(b2, state.k + 1)
        lr, ckp1 = _averaging(self, lr, state)
        v, d = state.exp_avg_sq, state.scratch
        v *= like(b2, v)
        np.multiply(grad, like(1 - b2, grad), out=d)
        d *= grad
        v += d
        np.divide(v, like(bias_correction2, v), out=d)
        np.sqrt(d, out=d)
        d += like(self.eps, d)
        np.divide(grad, d, out=d)
        if nonzero(self.weight_decay):
            np.multiply(params, like(self.weight_decay, params), out=state.x)
            d += state.x
        _step(params, d, lr, ckp1, b1, state)

    def eval_params(self, params: np.ndarray, state: ScheduleFreeState) -> np.ndarray:
        """The averaged point x the package's ``optimizer.eval()`` puts in the parameters (a state buffer)."""
        return _eval_point(params, self.betas[0], state)
