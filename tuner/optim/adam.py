"""Adam, optionally AMSGrad (torch.optim.Adam; AdamW is this rule with decoupled weight decay)."""

from dataclasses import dataclass

import numpy as np

from tuner.errors import ConfigError, check_range
from tuner.optim.base import check_bool, like, moment_, power, sqrt, square_moment_


@dataclass(slots=True)
class AdamState:
    """First and second moments ``m``, ``v``, their running max (AMSGrad), scratch, step count."""

    exp_avg: np.ndarray
    exp_avg_sq: np.ndarray
    max_exp_avg_sq: np.ndarray | None
    scratch: np.ndarray
    t: int = 0


def check_betas(betas: tuple[float, float], *, allow_one: bool = False) -> tuple[float, float]:
    """A pair (beta1, beta2), each in [0, 1) (or [0, 1] with ``allow_one``), as floats;
    ConfigError naming ``betas[i]`` otherwise."""
    if not (isinstance(betas, (tuple, list)) and len(betas) == 2):
        interval = "[0, 1]" if allow_one else "[0, 1)"
        raise ConfigError(f"betas={betas!r} is not allowed; allowed: a pair (beta1, beta2) in {interval}")
    check_range("betas[0]", betas[0], 0.0, 1.0, high_open=not allow_one)
    check_range("betas[1]", betas[1], 0.0, 1.0, high_open=not allow_one)
    return float(betas[0]), float(betas[1])


@dataclass(frozen=True, slots=True)
class Adam:
    """Adam as torch.optim.Adam computes it. Weight decay is ``transforms.WeightDecay``: coupled
    (L2) for torch.optim.Adam, decoupled (p = p * (1 - lr * weight_decay) first) for AdamW.

    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    vmax = max(vmax, v)                          (amsgrad)
    d = sqrt(v or vmax) / sqrt(1 - b2**t) + eps
    p = p - lr / (1 - b1**t) * m / d
    """

    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    amsgrad: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "betas", check_betas(self.betas))
        check_range("eps", self.eps, 0.0)
        check_bool("amsgrad", self.amsgrad)

    def init(self, params: np.ndarray) -> AdamState:
        return AdamState(
            exp_avg=np.zeros_like(params),
            exp_avg_sq=np.zeros_like(params),
            max_exp_avg_sq=np.zeros_like(params) if self.amsgrad else None,
            scratch=np.empty_like(params),
        )

    def update(self, params: np.ndarray, grad: np.ndarray, lr: "float | np.ndarray", state: AdamState) -> None:
        b1, b2 = self.betas
        g = grad
        state.t += 1
        tmp, m, v = state.scratch, state.exp_avg, state.exp_avg_sq
        moment_(m, g, b1, tmp)
        square_moment_(v, g, b2, tmp)
        if self.amsgrad:
            np.maximum(state.max_exp_avg_sq, v, out=state.max_exp_avg_sq)
            v = state.max_exp_avg_sq
        np.sqrt(v, out=tmp)
        tmp *= like(1.0 / sqrt(1.0 - power(b2, state.t)), tmp)
        tmp += like(self.eps, tmp)
        np.divide(m, tmp, out=tmp)
        tmp *= like(lr / (1.0 - power(b1, state.t)), tmp)
        params -= tmp
