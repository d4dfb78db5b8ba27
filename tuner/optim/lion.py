"""Lion, the sign update of Chen et al. 2023 (lion_pytorch.Lion)."""

from dataclasses import dataclass

import numpy as np

from tuner.optim.adam import check_betas
from tuner.optim.base import like


@dataclass(slots=True)
class LionState:
    """The momentum ``m`` (lion_pytorch's exp_avg) and two scratch buffers."""

    exp_avg: np.ndarray
    scratch: np.ndarray
    scratch2: np.ndarray


@dataclass(frozen=True, slots=True)
class Lion:
    """Lion as lion_pytorch.Lion computes it. Its weight decay is decoupled and scaled by the
    learning rate, p = p * (1 - lr * weight_decay) before the step: ``transforms.WeightDecay``,
    decoupled, exactly (lion_pytorch's ``decoupled_weight_decay=True``, which divides the decay by
    the constructor's lr, is not offered: a rule never sees the unscheduled lr).

    p = p - lr * sign(b1 * m + (1 - b1) * g)    (sign(0) = 0)
    m = b2 * m + (1 - b2) * g                   (m starts at 0)

    A population (``tuner.optim.population``): the betas and lr may be (K, 1) arrays; the same
    elementwise operations then compute each member's row as its lone run, each per-member
    value cast to the parameters' dtype where it meets them (``base.like``).
    """

    betas: tuple[float, float] = (0.9, 0.99)

    def __post_init__(self) -> None:
        object.__setattr__(self, "betas", check_betas(self.betas, allow_one=True))  # lion_pytorch asserts [0, 1]

    def init(self, params: np.ndarray) -> LionState:
        return LionState(exp_avg=np.zeros_like(params), scratch=np.empty_like(params),
                         scratch2=np.empty_like(params))

    def update(self, params: np.ndarray, grad: np.ndarray, lr: float, state: LionState) -> None:
        b1, b2 = self.betas
        m, step, tmp = state.exp_avg, state.scratch, state.scratch2
        np.multiply(m, like(b1, m), out=step)
        np.multiply(grad, like(1.0 - b1, grad), out=tmp)
        step += tmp
        np.sign(step, out=step)
        step *= like(lr, step)
        params -= step
        m *= like(b2, m)
        np.multiply(grad, like(1.0 - b2, grad), out=tmp)
        m += tmp
