"""Adadelta (torch.optim.Adadelta, whose learning rate defaults to 1.0)."""

from dataclasses import dataclass

import numpy as np

from tuner.errors import check_range


@dataclass(slots=True)
class AdadeltaState:
    """Square averages of gradients ``v`` and of updates ``a``, two scratch buffers, step count."""

    square_avg: np.ndarray
    acc_delta: np.ndarray
    scratch: np.ndarray
    delta: np.ndarray
    t: int = 0


@dataclass(frozen=True, slots=True)
class Adadelta:
    """Adadelta as torch.optim.Adadelta computes it (weight decay: ``transforms.WeightDecay``,
    coupled). torch's default learning rate is 1.0; the update is scaled by it.

    v = rho * v + (1 - rho) * g * g
    delta = sqrt(a + eps) / sqrt(v + eps) * g
    a = rho * a + (1 - rho) * delta * delta
    p = p - lr * delta
    """

    rho: float = 0.9
    eps: float = 1e-6

    def __post_init__(self) -> None:
        check_range("rho", self.rho, 0.0, 1.0)
        check_range("eps", self.eps, 0.0)

    def init(self, params: np.ndarray) -> AdadeltaState:
        return AdadeltaState(
            square_avg=np.zeros_like(params),
            acc_delta=np.zeros_like(params),
            scratch=np.empty_like(params),
            delta=np.empty_like(params),
        )

    def update(self, params: np.ndarray, grad: np.ndarray, lr: float, state: AdadeltaState) -> None:
        rho = self.rho
        g = grad
        state.t += 1
        tmp, delta, v, a = state.scratch, state.delta, state.square_avg, state.acc_delta
        v *= rho
        np.multiply(g, g, out=tmp)
        tmp *= 1.0 - rho
        v += tmp
        np.add(v, self.eps, out=tmp)
        np.sqrt(tmp, out=tmp)
        np.add(a, self.eps, out=delta)
        np.sqrt(delta, out=delta)
        delta /= tmp
        delta *= g
        a *= rho
        np.multiply(delta, delta, out=tmp)
        tmp *= 1.0 - rho
        a += tmp
        delta *= lr
        params -= delta
