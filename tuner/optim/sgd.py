"""Stochastic gradient descent with optional heavy-ball or Nesterov momentum (torch.optim.SGD)."""

from dataclasses import dataclass

import numpy as np

from tuner.errors import ConfigError, check_range
from tuner.optim.base import check_bool, like, nonzero


@dataclass(slots=True)
class SGDState:
    """Momentum buffer ``b`` (None without momentum), scratch space and the step count."""

    buf: np.ndarray | None
    scratch: np.ndarray
    t: int = 0


@dataclass(frozen=True, slots=True)
class SGD:
    """SGD as torch.optim.SGD computes it (weight decay: ``transforms.WeightDecay``, coupled).

    if momentum != 0:
        b = g                                    at t = 1
        b = momentum * b + (1 - dampening) * g   after
        g = g + momentum * b   if nesterov   else   g = b
    p = p - lr * g
    """

    momentum: float = 0.0
    dampening: float = 0.0
    nesterov: bool = False

    def __post_init__(self) -> None:
        check_range("momentum", self.momentum, 0.0, 1.0, high_open=True)
        check_range("dampening", self.dampening, 0.0, 1.0)
        check_bool("nesterov", self.nesterov)
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ConfigError(
                f"nesterov=True requires momentum > 0 and dampening = 0; "
                f"got momentum={self.momentum!r}, dampening={self.dampening!r}"
            )

    def init(self, params: np.ndarray) -> SGDState:
        buf = np.zeros_like(params) if nonzero(self.momentum) else None
        return SGDState(buf=buf, scratch=np.empty_like(params))

    def update(self, params: np.ndarray, grad: np.ndarray, lr: "float | np.ndarray", state: SGDState) -> None:
        g = grad
        tmp = state.scratch
        if nonzero(self.momentum):
            b = state.buf
            if state.t == 0:
                np.copyto(b, g)
            else:
                b *= like(self.momentum, b)
                if nonzero(self.dampening):
                    np.multiply(g, like(1.0 - self.dampening, g), out=tmp)
                    b += tmp
                else:
                    b += g
            if self.nesterov:
                np.multiply(b, like(self.momentum, b), out=tmp)
                tmp += g
                g = tmp
            else:
                g = b
        state.t += 1
        np.multiply(g, like(lr, g), out=tmp)
        params -= tmp
