"""NAdam: Adam with Nesterov momentum and a momentum schedule (torch.optim.NAdam; NAdamW is this
rule with decoupled weight decay, torch's ``decoupled_weight_decay=True``)."""

from dataclasses import dataclass

import numpy as np

from tuner.errors import check_range
from tuner.optim.adam import check_betas
from tuner.optim.base import like, moment_, power, square_moment_


@dataclass(slots=True)
class NAdamState:
    """Moments ``m``, ``v``, two scratch buffers, the product of the momentum schedule so far
    (a float64 scalar, as torch keeps it; a (K, 1) array in a population whose members' schedules differ)
    and the step count."""

    exp_avg: np.ndarray
    exp_avg_sq: np.ndarray
    scratch: np.ndarray
    scaled: np.ndarray
    mu_product: "float | np.ndarray" = 1.0
    t: int = 0


@dataclass(frozen=True, slots=True)
class NAdam:
    """NAdam as torch.optim.NAdam computes it. Weight decay is ``transforms.WeightDecay``: coupled
    (L2) by default, decoupled (p = p * (1 - lr * weight_decay) first) with
    ``decoupled_weight_decay`` (the registry's switch) and for ``nadamw``.

    mu_t = b1 * (1 - 0.5 * 0.96 ** (t * momentum_decay))       (mu_{t+1} likewise)
    P_t = mu_1 * ... * mu_t                                     (P_0 = 1)
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    d = sqrt(v / (1 - b2**t)) + eps
    p = p - lr * (1 - mu_t) / (1 - P_t) * g / d
          - lr * mu_{t+1} / (1 - P_t * mu_{t+1}) * m / d
    """

    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    momentum_decay: float = 4e-3

    def __post_init__(self) -> None:
        object.__setattr__(self, "betas", check_betas(self.betas))
        check_range("eps", self.eps, 0.0)
        check_range("momentum_decay", self.momentum_decay, 0.0)

    def init(self, params: np.ndarray) -> NAdamState:
        return NAdamState(
            exp_avg=np.zeros_like(params),
            exp_avg_sq=np.zeros_like(params),
            scratch=np.empty_like(params),
            scaled=np.empty_like(params),
        )

    def _mu(self, t: int) -> "float | np.ndarray":
        return self.betas[0] * (1.0 - 0.5 * power(0.96, t * self.momentum_decay))

    def update(self, params: np.ndarray, grad: np.ndarray, lr: "float | np.ndarray", state: NAdamState) -> None:
        b1, b2 = self.betas
        g = grad
        state.t += 1
        t = state.t
        mu, mu_next = self._mu(t), self._mu(t + 1)
        state.mu_product *= mu
        product = state.mu_product
        d, tmp, m, v = state.scratch, state.scaled, state.exp_avg, state.exp_avg_sq
        moment_(m, g, b1, tmp)
        square_moment_(v, g, b2, tmp)
        np.divide(v, like(1.0 - power(b2, t), v), out=d)
        np.sqrt(d, out=d)
        d += like(self.eps, d)
        np.multiply(g, like(lr * (1.0 - mu) / (1.0 - product), g), out=tmp)
        tmp /= d
        params -= tmp
        np.multiply(m, like(lr * mu_next / (1.0 - product * mu_next), m), out=tmp)
        tmp /= d
        params -= tmp
