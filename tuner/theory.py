"""Linear convergence rates: measured on a loss curve, and predicted on the quadratic.

    convergence_rate    the empirical rate of a noise-free loss curve (the ``rate`` objective)
    iteration_radius    the exact per-step rate of gradient descent, heavy ball or Nesterov on
                        one eigenvalue of a quadratic's Hessian
    asymptotic_rate     the same over the whole spectrum: what a configuration achieves in the limit
    theory_gap          tuned configurations against the quadratic's optimum (``Quadratic.theory``)

Rates are per step and of the error ``||x - x*||``; on a quadratic the loss is quadratic in the
error and contracts at the rate squared.
"""

import math
from typing import Any

import numpy as np

from tuner.tasks import make_task

TAIL_FRACTION = 0.5
"""``convergence_rate`` fits the last half of the curve before the float floor: momentum methods
have a transient (non-normal growth, a Jordan block at the optimum) that the first half carries."""

THEORY_PREFIX = {"sgd": "gd", "momentum": "heavy_ball", "nesterov": "nesterov"}
"""The optimizers the quadratic's theory covers, and their keys' prefix in ``Quadratic.theory()``."""


def convergence_rate(loss: np.ndarray, eps: float) -> float:
    """The empirical linear rate of the error per step, from a noise-free loss curve.

    ``loss[k]`` is the loss before step k and ``eps`` the machine epsilon of the computation.
    The rule:

    1. The float floor is ``loss[0] * eps``. In floating point the error bottoms out near eps
       relative, so the loss, quadratic in it, plateaus near ``eps**2`` relative: the threshold
       stops the fit a factor 1/eps above that plateau. The curve is used up to (not including)
       its first point at or under the floor (or a NaN), so a run that reaches the floor early
       is measured on the part before it.
    2. Of those ``m`` points, the last TAIL_FRACTION (at least two) are fitted by least squares:
       ``log(loss[k]) = a + b k``. The loss contracts by ``exp(b)`` per step; the returned rate is
       ``exp(b / 2)``, the error's (comparable to ``Quadratic.theory()``'s rates). A flat curve
       gives 1, a growing one more than 1.
    3. Fewer than two points above the floor (the loss fell under it in one step): ``sqrt(eps)``,
       the largest error rate under which that can happen.
    """
    loss = np.asarray(loss, dtype=float)
    floor = loss[0] * eps
    under = np.flatnonzero(~(loss > floor))
    usable = int(under[0]) if len(under) else len(loss)
    if usable < 2:
        return math.sqrt(eps)
    start = min(int(usable * (1.0 - TAIL_FRACTION)), usable - 2)
    steps = np.arange(start, usable, dtype=float)
    slope = np.polyfit(steps, np.log(loss[start:usable]), 1)[0]
    return float(math.exp(slope / 2.0))


def iteration_radius(optimizer: str, lr: float | np.ndarray, momentum: float | np.ndarray,
                     eigenvalue: float | np.ndarray) -> np.ndarray:
    """The spectral radius of one step's 2x2 iteration matrix on a Hessian eigenvalue (the
    arguments broadcast against each other).

    torch's SGD on a Hessian eigenvalue h, with the error e and the momentum buffer b:
    heavy ball (``momentum``; ``sgd`` is momentum 0) ``b' = m b + h e; e' = e - lr b'``, whose
    characteristic polynomial is ``z^2 - (1 + m - lr h) z + m``; Nesterov ``b' = m b + h e;
    e' = e - lr (h e + m b')``, whose polynomial is ``z^2 - (1 + m)(1 - lr h) z + m (1 - lr h)``.
    The radius is the larger modulus of the two roots.
    """
    a = np.asarray(lr, dtype=float) * np.asarray(eigenvalue, dtype=float)
    if optimizer == "nesterov":
        b, c = (1.0 + momentum) * (1.0 - a), momentum * (1.0 - a)
    elif optimizer in ("sgd", "momentum"):
        b, c = 1.0 + momentum - a, momentum + np.zeros_like(a)
    else:
        raise ValueError(f"no iteration matrix for optimizer {optimizer!r}; allowed: {', '.join(THEORY_PREFIX)}")
    discriminant = b * b - 4.0 * c
    real = (np.abs(b) + np.sqrt(np.maximum(discriminant, 0.0))) / 2.0
    return np.where(discriminant >= 0.0, real, np.sqrt(np.abs(c)))


def asymptotic_rate(optimizer: str, lr: float, momentum: float, eigenvalues: np.ndarray) -> float:
    """The error's rate per step in the limit: the largest ``iteration_radius`` over the spectrum."""
    return float(iteration_radius(optimizer, lr, momentum, eigenvalues).max())


def theory_gap(task: str, options: dict[str, Any], rows: list[dict[str, Any]], objective: str) -> list[dict[str, Any]]:
    """Tuned configurations against the optimum, for the quadratic (other tasks: ``[]``).

    ``rows`` are best configurations as ``queries.best_configs`` returns them (``optimizer``,
    ``params`` with ``lr`` and ``momentum``, ``reeval_mean``, ``trial_objective``, optionally
    ``sampler``); one row comes back per row of sgd (gradient descent), momentum (heavy ball) or
    nesterov, in the given order, with:

        optimizer, sampler          as given (sampler None when absent)
        lr, optimal_lr, lr_ratio    the tuned learning rate, the optimum, tuned / optimum
        momentum, optimal_momentum, momentum_ratio      the same (None for sgd)
        measured_rate               the run's objective when it is ``rate`` (the mean over the
                                    re-evaluation seeds, else the trial's), else None
        asymptotic_rate             the tuned configuration's limit rate on this quadratic
                                    (``asymptotic_rate``; weight decay shifts the spectrum);
                                    None under a schedule that is not constant
        optimal_rate                the optimum's rate
    """
    if task != "quadratic":
        return []
    quadratic = make_task(task, options)
    theory = quadratic.theory()
    gap = []
    for row in rows:
        optimizer, params = row["optimizer"], row["params"]
        prefix = THEORY_PREFIX.get(optimizer)
        if prefix is None:
            continue
        lr = params["lr"]
        momentum = params.get("momentum") if optimizer != "sgd" else None
        optimal_momentum = theory.get(f"{prefix}_momentum")
        schedule = params.get("schedule", {})
        constant = schedule.get("kind", "constant") == "constant" and not schedule.get("warmup_steps")
        spectrum = quadratic.eigenvalues + params.get("weight_decay", 0.0)
        measured = row["reeval_mean"] if row.get("reeval_mean") is not None else row.get("trial_objective")
        gap.append({
            "optimizer": optimizer,
            "sampler": row.get("sampler"),
            "lr": lr,
            "optimal_lr": theory[f"{prefix}_lr"],
            "lr_ratio": lr / theory[f"{prefix}_lr"],
            "momentum": momentum,
            "optimal_momentum": optimal_momentum,
            "momentum_ratio": None if momentum is None else momentum / optimal_momentum,
            "measured_rate": measured if objective == "rate" else None,
            "asymptotic_rate": asymptotic_rate(optimizer, lr, momentum or 0.0, spectrum) if constant else None,
            "optimal_rate": theory[f"{prefix}_rate"],
        })
    return gap
