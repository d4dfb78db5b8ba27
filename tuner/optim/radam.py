"""RAdam: Adam with the variance of its adaptive step rectified (torch.optim.RAdam; RAdamW is this
rule with decoupled weight decay, torch's ``decoupled_weight_decay=True``)."""

from dataclasses import dataclass

import numpy as np

from tuner.errors import check_range
from tuner.optim.adam import check_betas
from tuner.optim.base import like, members_where, moment_, power, sqrt, square_moment_


@dataclass(slots=True)
class RAdamState:
    """Moments ``m``, ``v``, scratch space and the step count."""

    exp_avg: np.ndarray
    exp_avg_sq: np.ndarray
    scratch: np.ndarray
    t: int = 0


def _rectification(rho_t: "float | np.ndarray", rho_inf: "float | np.ndarray") -> "float | np.ndarray":
    """r of the rectified step (the class docstring's formula)."""
    return sqrt((rho_t - 4.0) * (rho_t - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t))


@dataclass(frozen=True, slots=True)
class RAdam:
    """RAdam as torch.optim.RAdam computes it. Weight decay is ``transforms.WeightDecay``: coupled
    (L2) by default, decoupled (p = p * (1 - lr * weight_decay) first) with
    ``decoupled_weight_decay`` (the registry's switch) and for ``radamw``.

    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    c1 = 1 - b1**t;  c2 = 1 - b2**t
    rho_inf = 2 / (1 - b2) - 1;  rho_t = rho_inf - 2 * t * b2**t / c2
    rho_t > 5:  r = sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
                p = p - lr / c1 * m * r * sqrt(c2) / (sqrt(v) + eps)   (eps before the correction)
    otherwise:  p = p - lr / c1 * m                                    (momentum SGD, no v)
    """

    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8

    def __post_init__(self) -> None:
        object.__setattr__(self, "betas", check_betas(self.betas))
        check_range("eps", self.eps, 0.0)

    def init(self, params: np.ndarray) -> RAdamState:
        return RAdamState(
            exp_avg=np.zeros_like(params),
            exp_avg_sq=np.zeros_like(params),
            scratch=np.empty_like(params),
        )

    def update(self, params: np.ndarray, grad: np.ndarray, lr: "float | np.ndarray", state: RAdamState) -> None:
        b1, b2 = self.betas
        g = grad
        state.t += 1
        t = state.t
        tmp, m, v = state.scratch, state.exp_avg, state.exp_avg_sq
        moment_(m, g, b1, tmp)
        square_moment_(v, g, b2, tmp)
        b2_t = power(b2, t)
        c1, c2 = 1.0 - power(b1, t), 1.0 - b2_t
        rho_inf = 2.0 / (1.0 - b2) - 1.0
        rho_t = rho_inf - 2.0 * t * b2_t / c2
        rectified = members_where(rho_t > 5.0)  # a population's members each take their branch
        if rectified is not False:  # every member (True), or the rows of the mask
            if rectified is True:
                r = _rectification(rho_t, rho_inf)
            else:
                with np.errstate(divide="ignore", invalid="ignore"):  # the others' values are not used
                    r = _rectification(rho_t, rho_inf)
            np.sqrt(v, out=tmp, where=rectified)
            np.add(tmp, like(self.eps, tmp), out=tmp, where=rectified)
            np.divide(m, tmp, out=tmp, where=rectified)
            np.multiply(tmp, like(lr / c1 * r * sqrt(c2), tmp), out=tmp, where=rectified)
        if rectified is not True:
            np.multiply(m, like(lr / c1, m), out=tmp, where=True if rectified is False else ~rectified)
        params -= tmp
