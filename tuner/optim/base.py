"""The protocol every first-order optimizer follows, and shared validation."""

from typing import Any, Protocol

import numpy as np

from tuner.errors import ConfigError, shown


class FirstOrderOptimizer(Protocol):
    """An update rule. Hyperparameters are fixed and validated at construction.

    ``init`` allocates the state (moment buffers and scratch space) once; ``update`` then
    changes ``params`` and ``state`` in place and allocates nothing. The learning rate is
    passed to every ``update`` because schedules change it; an optimizer never stores it.
    """

    def init(self, params: np.ndarray) -> Any: ...

    def update(self, params: np.ndarray, grad: np.ndarray, lr: float, state: Any) -> None: ...


def check_bool(field: str, value: object) -> bool:
    """Return ``value`` if it is a bool, else raise ConfigError naming ``field``."""
    if not isinstance(value, bool):
        raise ConfigError(f"{field}={shown(value)} is not allowed; allowed: true or false", allowed="true or false")
    return value
