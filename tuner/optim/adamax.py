"""Adamax: Adam with the infinity norm (torch.optim.Adamax)."""

from dataclasses import dataclass

import numpy as np

from tuner.errors import check_range
from tuner.optim.adam import check_betas
from tuner.optim.base import like, moment_, power


@dataclass(slots=True)
class AdamaxState:
    """First moment ``m``, exponentially weighted infinity norm ``u``, scratch, step count."""

    exp_avg: np.ndarray
    exp_inf: np.ndarray
    scratch: np.ndarray
    t: int = 0


@dataclass(frozen=True, slots=True)
class Adamax:
    """Adamax as torch.optim.Adamax computes it (weight decay: ``transforms.WeightDecay``, coupled).

    m = b1 * m + (1 - b1) * g
    u = max(b2 * u, |g| + eps)            (eps inside the max, no bias correction of u)
    p = p - lr / (1 - b1**t) * m / u
    """

    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8

    def __post_init__(self) -> None:
        object.__setattr__(self, "betas", check_betas(self.betas))
        check_range("eps", self.eps, 0.0)

    def init(self, params: np.ndarray) -> AdamaxState:
        return AdamaxState(
            exp_avg=np.zeros_like(params),
            exp_inf=np.zeros_like(params),
            scratch=np.empty_like(params),
        )

    def update(self, params: np.ndarray, grad: np.ndarray, lr: "float | np.ndarray", state: AdamaxState) -> None:
        b1, b2 = self.betas
        g = grad
        state.t += 1
        tmp, m, u = state.scratch, state.exp_avg, state.exp_inf
        moment_(m, g, b1, tmp)
        u *= like(b2, u)
        np.abs(g, out=tmp)
        tmp += like(self.eps, tmp)
        np.maximum(u, tmp, out=u)
        np.multiply(m, like(lr / (1.0 - power(b1, state.t)), m), out=tmp)
        tmp /= u
        params -= tmp
