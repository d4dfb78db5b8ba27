"""Full-batch L-BFGS through scipy.optimize (L-BFGS-B without bounds). scipy.optimize is imported
when a run minimises, not with the registry: reading commands do not pay for it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from tuner.errors import check_range

if TYPE_CHECKING:
    from scipy.optimize import OptimizeResult

LossAndGrad = Callable[[np.ndarray], tuple[float, np.ndarray]]


@dataclass(frozen=True, slots=True)
class LBFGS:
    """Limited-memory BFGS with a Wolfe line search (scipy's L-BFGS-B); it takes no learning rate.

    history_size: correction pairs kept (scipy's ``maxcor``); gtol / ftol: scipy's stopping
    tolerances on the projected gradient and on the relative loss change.
    """

    history_size: int = 10
    gtol: float = 1e-10
    ftol: float = 1e-15

    def __post_init__(self) -> None:
        check_range("history_size", self.history_size, 1, 1000, integer=True)
        check_range("gtol", self.gtol, 0.0)
        check_range("ftol", self.ftol, 0.0)

    def minimize(
        self,
        fun: LossAndGrad,
        params: np.ndarray,
        max_iter: int,
        callback: Callable[[int, float, np.ndarray], bool | None] | None = None,
    ) -> OptimizeResult:
        """Minimise ``fun`` from ``params`` for at most ``max_iter`` iterations, in place.

        ``callback(iteration, loss, x)`` runs after each iteration; returning True stops early.
        The result's ``x`` is also copied into ``params``.
        """
        from scipy.optimize import minimize

        counter = [0]

        def on_iteration(intermediate_result: OptimizeResult) -> None:
            counter[0] += 1
            if callback is not None and callback(counter[0], float(intermediate_result.fun), intermediate_result.x):
                raise StopIteration

        result = minimize(
            lambda x: _as_float64(fun(x.astype(params.dtype, copy=False))),
            params.astype(np.float64),
            jac=True,
            method="L-BFGS-B",
            callback=on_iteration,
            options={"maxiter": max_iter, "maxcor": self.history_size, "gtol": self.gtol,
                     "ftol": self.ftol, "maxfun": 20 * max_iter + 20},
        )
        params[...] = result.x
        return result


def _as_float64(loss_grad: tuple[float, np.ndarray]) -> tuple[float, np.ndarray]:
    loss, grad = loss_grad
    return float(loss), np.array(grad, dtype=np.float64)  # scipy keeps it; the task reuses its buffer
