"""AdaGrad (torch.optim.Adagrad)."""

from dataclasses import dataclass

import numpy as np

from tuner.errors import check_range
from tuner.optim.base import like


@dataclass(slots=True)
class AdagradState:
    """Sum of squared gradients ``s``, scratch space and the step count."""

    sum_sq: np.ndarray
    scratch: np.ndarray
    t: int = 0


@dataclass(frozen=True, slots=True)
class Adagrad:
    """AdaGrad as torch.optim.Adagrad computes it (eps outside the square root; weight decay:
    ``transforms.WeightDecay``, coupled).

    clr = lr / (1 + (t - 1) * lr_decay)
    s = s + g * g                    (s starts at initial_accumulator_value)
    p = p - clr * g / (sqrt(s) + eps)
    """

    lr_decay: float = 0.0
    initial_accumulator_value: float = 0.0
    eps: float = 1e-10

    def __post_init__(self) -> None:
        check_range("lr_decay", self.lr_decay, 0.0)
        check_range("initial_accumulator_value", self.initial_accumulator_value, 0.0)
        check_range("eps", self.eps, 0.0)

    def init(self, params: np.ndarray) -> AdagradState:
        return AdagradState(
            sum_sq=np.full_like(params, self.initial_accumulator_value),
            scratch=np.empty_like(params),
        )

    def update(self, params: np.ndarray, grad: np.ndarray, lr: "float | np.ndarray", state: AdagradState) -> None:
        g = grad
        state.t += 1
        clr = lr / (1.0 + (state.t - 1) * self.lr_decay)
        tmp = state.scratch
        np.multiply(g, g, out=tmp)
        state.sum_sq += tmp
        np.sqrt(state.sum_sq, out=tmp)
        tmp += like(self.eps, tmp)
        np.divide(g, tmp, out=tmp)
        tmp *= like(clr, tmp)
        params -= tmp
