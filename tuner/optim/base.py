"""The protocol every first-order update rule follows, and shared validation."""

from typing import Any, Protocol

import numpy as np

from tuner.errors import ConfigError, shown


class Rule(Protocol):
    """An update rule, without weight decay, clipping or averaging (``tuner.optim.transforms``
    composes those around it). Hyperparameters are fixed and validated at construction.

    ``init`` allocates the state (moment buffers and scratch space) once; ``update`` then
    changes ``params`` and ``state`` in place, allocates nothing and leaves ``grad`` unchanged.
    The learning rate is passed to every ``update`` because schedules change it; a rule never
    stores it.

    Optional: ``eval_params(params, state) -> ndarray`` when the rule is evaluated elsewhere than
    at the parameters it trains (schedule-free's averaged ``x``; the result may be a state
    buffer), and ``bind(task) -> Rule`` when it needs the task's layout (Muon's weight matrices).
    """

    def init(self, params: np.ndarray) -> Any: ...

    def update(self, params: np.ndarray, grad: np.ndarray, lr: float, state: Any) -> None: ...


def check_bool(field: str, value: object) -> bool:
    """Return ``value`` if it is a bool, else raise ConfigError naming ``field``."""
    if not isinstance(value, bool):
        raise ConfigError(f"{field}={shown(value)} is not allowed; allowed: true or false", allowed="true or false")
    return value


def lerp_(start: np.ndarray, end: np.ndarray, weight: float, scratch: np.ndarray) -> None:
    """torch's ``start.lerp_(end, weight)`` in place: start + weight * (end - start) when
    |weight| < 0.5, else end - (end - start) * (1 - weight), rounded as torch rounds it.
    ``scratch`` may be ``end``, which is then lost."""
    if abs(weight) < 0.5:
        np.subtract(end, start, out=scratch)
        scratch *= weight
        start += scratch
    else:
        np.subtract(end, start, out=start)
        start *= 1.0 - weight
        np.subtract(end, start, out=start)


def lerp_into(out: np.ndarray, start: np.ndarray, end: np.ndarray, weight: float) -> None:
    """torch's ``start.lerp(end, weight)`` written into ``out`` (neither ``start`` nor ``end``)."""
    np.subtract(end, start, out=out)
    if abs(weight) < 0.5:
        out *= weight
        out += start
    else:
        out *= 1.0 - weight
        np.subtract(end, out, out=out)


def moment_(average: np.ndarray, value: np.ndarray, decay: float, scratch: np.ndarray) -> None:
    """average = decay * average + (1 - decay) * value in place (torch's
    ``mul_(decay).add_(value, alpha=1 - decay)``, rounded the same way)."""
    average *= decay
    np.multiply(value, 1.0 - decay, out=scratch)
    average += scratch


def square_moment_(average: np.ndarray, grad: np.ndarray, decay: float, scratch: np.ndarray) -> None:
    """average = decay * average + (1 - decay) * grad * grad in place (torch's
    ``mul_(decay).addcmul_(grad, grad, value=1 - decay)``)."""
    average *= decay
    np.multiply(grad, grad, out=scratch)
    scratch *= 1.0 - decay
    average += scratch
