"""Transforms composed around an update rule, as optax chains them; torch applies them in this order.

    clip        clip_grad_norm_ / clip_grad_value_ on the gradient, before optimizer.step()
    decay       weight decay: coupled L2 (g = g + wd * p; torch's weight_decay on SGD, Adam, ...)
                or decoupled (p = p * (1 - lr * wd) before the rule; AdamW's)
    rule        the optimizer's own update (Adam, NAdam, ...), which knows nothing of the others
    average     AveragedModel.update_parameters after each step: Polyak (uniform from a start step)
                or EMA (get_ema_multi_avg_fn); evaluation then reads the average

``Optimizer`` is the composition ``make_optimizer`` returns: ``init(params)``,
``update(params, grad, lr, state)`` (in place, allocation-free, the caller's gradient untouched),
and ``eval_params(params, state)``, the point training is evaluated at (the average, the rule's own
evaluation point as schedule-free's ``x``, or the parameters).

The same methods train a population (``tuner.optim.population.stack``): (K, P) parameters, a
float or (K, 1) ``lr``, and any float of the transforms a (K, 1) array; clipping by norm takes
each member's own norm. ``update`` then allocates O(K) temporaries, nothing of the parameters' size.
"""

from dataclasses import dataclass
from typing import Any

import numpy as np

from tuner.errors import ConfigError, check_range
from tuner.optim.base import Rule, lerp_, like, nonzero

CLIP_EPS = 1e-6
"""torch's clip_grad_norm_: coefficient max_norm / (total_norm + 1e-6), clamped to 1."""


@dataclass(frozen=True, slots=True)
class WeightDecay:
    """``coupled``: g = g + rate * p (L2 in the gradient); otherwise p = p * (1 - lr * rate) first."""

    rate: float
    coupled: bool

    def __post_init__(self) -> None:
        check_range("weight_decay", self.rate, 0.0)


@dataclass(frozen=True, slots=True)
class Clip:
    """``by="norm"``: g = g * min(1, threshold / (||g|| + 1e-6)) (clip_grad_norm_, 2-norm over all
    parameters); ``by="value"``: g = clamp(g, -threshold, threshold) (clip_grad_value_)."""

    by: str
    threshold: float

    def __post_init__(self) -> None:
        field = f"clip_grad_{self.by}"
        check_range(field, self.threshold, 0.0, low_open=True)


@dataclass(frozen=True, slots=True)
class Average:
    """``ema`` with ``decay``: a = p after the first step, then a = a + (1 - decay) * (p - a)
    (get_ema_multi_avg_fn); ``polyak`` from step ``start``: a = p after step ``start`` + 1, then
    a = a + (p - a) / (n + 1) over the n steps averaged so far (AveragedModel's default)."""

    kind: str
    decay: float = 0.0
    start: int = 0

    def __post_init__(self) -> None:
        if self.kind == "ema":
            check_range("ema_decay", self.decay, 0.0, 1.0, high_open=True)
        else:
            check_range("polyak_start", self.start, 0, integer=True)


@dataclass(slots=True)
class OptimizerState:
    """The rule's state plus the transforms' buffers: the clipped gradient, the gradient with
    coupled decay, the average, its scratch and how many steps it holds, and the step count."""

    rule: Any
    clipped: np.ndarray | None
    decayed: np.ndarray | None
    average: np.ndarray | None
    scratch: np.ndarray | None
    averaged: int = 0
    t: int = 0


@dataclass(frozen=True, slots=True)
class Optimizer:
    """An update rule with its transforms (see the module docstring for the order)."""

    rule: Rule
    decay: WeightDecay | None = None
    clip: Clip | None = None
    average: Average | None = None

    def __post_init__(self) -> None:
        if self.average is not None and hasattr(self.rule, "eval_params"):
            raise ConfigError(f"{type(self.rule).__name__} evaluates at its own average already; "
                              "allowed: no ema_decay or polyak_start with it")

    def bind(self, task: Any) -> "Optimizer":
        """This optimizer for ``task``: a rule that needs the task's layout (``bind``) gets it."""
        if not hasattr(self.rule, "bind"):
            return self
        return Optimizer(self.rule.bind(task), self.decay, self.clip, self.average)

    def init(self, params: np.ndarray) -> OptimizerState:
        coupled = self.decay is not None and self.decay.coupled and nonzero(self.decay.rate)
        return OptimizerState(
            rule=self.rule.init(params),
            clipped=np.empty_like(params) if self.clip is not None else None,
            decayed=np.empty_like(params) if coupled else None,
            average=np.empty_like(params) if self.average is not None else None,
            scratch=np.empty_like(params) if self.average is not None else None,
        )

    def update(self, params: np.ndarray, grad: np.ndarray, lr: "float | np.ndarray", state: OptimizerState) -> None:
        g = grad
        if self.clip is not None:
            g = self._clip(g, state.clipped)
        decay = self.decay
        if decay is not None and nonzero(decay.rate):
            if decay.coupled:
                np.multiply(params, like(decay.rate, params), out=state.decayed)
                state.decayed += g
                g = state.decayed
            else:
                params *= like(1.0 - lr * decay.rate, params)
        self.rule.update(params, g, lr, state.rule)
        state.t += 1
        if self.average is not None:
            self._average(params, state)

    def _clip(self, grad: np.ndarray, out: np.ndarray) -> np.ndarray:
        threshold = self.clip.threshold
        if self.clip.by == "value":
            return np.clip(grad, like(-threshold, grad), like(threshold, grad), out=out)
        # the norm of the whole vector, or of each member's row: vecdot computes each as np.dot does,
        # and the root in the gradient's dtype; the coefficient is a float (float64 per member)
        norm = np.sqrt(np.vecdot(grad, grad))
        if grad.ndim == 1:  # a Python float, so that a float32 run stays in float32
            return np.multiply(grad, min(threshold / (float(norm) + CLIP_EPS), 1.0), out=out)
        norm = norm.astype(np.float64, copy=False)[:, None]
        return np.multiply(grad, like(np.minimum(threshold / (norm + CLIP_EPS), 1.0), grad), out=out)

    def _average(self, params: np.ndarray, state: OptimizerState) -> None:
        average = self.average
        if average.kind == "polyak" and state.t <= average.start:
            return
        if state.averaged == 0:
            np.copyto(state.average, params)
        else:
            weight = 1.0 - average.decay if average.kind == "ema" else 1.0 / (state.averaged + 1)
            lerp_(state.average, params, weight, state.scratch)
        state.averaged += 1

    def eval_params(self, params: np.ndarray, state: OptimizerState) -> np.ndarray:
        """The parameters to evaluate: the average once it holds a step, the rule's own evaluation
        point, or ``params``. The result may be a state buffer: read it, do not keep it."""
        if self.average is not None:
            return state.average if state.averaged else params
        if hasattr(self.rule, "eval_params"):
            return self.rule.eval_params(params, state.rule)
        return params
