"""The protocol every first-order update rule follows, and shared validation."""

import math
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

    Populations (``tuner.optim.population``): a rule whose float hyperparameters are (K, 1)
    float64 arrays, one row per member, trains K members at once on (K, P) parameters, with
    ``lr`` a float or a (K, 1) array. Each member's row is then computed exactly as its lone
    run computes its 1-D parameters: the same operations in the same order, a formula chosen
    per member where the lone code branches on a value (``members_where``), and powers as
    Python rounds them (``power``). The arithmetic among per-member values stays float64, as the
    lone run's among Python floats; where such a value meets an array of the parameters' size it
    is cast to that array's dtype first (``like``), as NumPy casts the lone run's Python float
    there (a weak scalar, NEP 50): in float32 too, each row is its lone run's, bit for bit, and
    is computed in float32. Per-member values taken from arrays (norms, means) are float64, as
    the lone run's ``float(...)`` of them. ``update`` may allocate O(K) temporaries (per-member
    factors), never an array of the parameters' size. Members share the zero-ness of every
    hyperparameter (``population_key``), so ``if nonzero(momentum)`` holds for all or none.
    """

    def init(self, params: np.ndarray) -> Any: ...

    def update(self, params: np.ndarray, grad: np.ndarray, lr: float, state: Any) -> None: ...


def check_bool(field: str, value: object) -> bool:
    """Return ``value`` if it is a bool, else raise ConfigError naming ``field``."""
    if not isinstance(value, bool):
        raise ConfigError(f"{field}={shown(value)} is not allowed; allowed: true or false", allowed="true or false")
    return value


def like(value: "float | np.ndarray", array: np.ndarray) -> "float | np.ndarray":
    """``value`` as it meets ``array`` in a lone run: a float (a lone run's, a weak scalar NumPy
    casts to ``array``'s dtype) unchanged, a population's per-member array cast to ``array``'s
    dtype (an O(K) copy; unchanged when the dtype is ``array``'s already). So a float32 member
    multiplies by float32(c), as its lone run does, rather than promoting the operation to float64."""
    if isinstance(value, np.ndarray) and value.dtype != array.dtype:
        return value.astype(array.dtype)
    return value


def nonzero(value: "float | np.ndarray") -> bool:
    """Whether a hyperparameter is nonzero: a float, or a population's (K, 1) array, whose members
    are all zero or all nonzero (``population.population_key`` groups them so)."""
    return bool(value.any()) if isinstance(value, np.ndarray) else bool(value)


def members_where(condition: "bool | np.ndarray") -> "bool | np.ndarray":
    """A condition on hyperparameters as a ufunc's ``where=`` takes it: a bool when it is a bool
    (a lone run's) or holds for all members or for none, else the (K, 1) mask of the members it
    holds for. A rule branches on True and False and runs both formulas, each on its rows, on a mask."""
    if not isinstance(condition, np.ndarray):
        return bool(condition)
    every = bool(condition.all())
    return every if every or not condition.any() else condition


def lerp_(start: np.ndarray, end: np.ndarray, weight: "float | np.ndarray", scratch: np.ndarray) -> None:
    """torch's ``start.lerp_(end, weight)`` in place: start + weight * (end - start) when
    |weight| < 0.5, else end - (end - start) * (1 - weight), rounded as torch rounds it.
    ``scratch`` may be ``end``, which is then lost. A (K, 1) ``weight`` (a population's (K, n)
    arrays) picks the formula per member, so each row is rounded as that member's lone run."""
    small = members_where(abs(weight) < 0.5)  # torch's formula for small weights (not NaN)
    if small is True:
        np.subtract(end, start, out=scratch)
        scratch *= like(weight, scratch)
        start += scratch
    elif small is False:
        np.subtract(end, start, out=start)
        start *= like(1.0 - weight, start)
        np.subtract(end, start, out=start)
    else:  # the small rows first: they write ``scratch`` (perhaps ``end``) only on their own rows
        large = ~small
        np.subtract(end, start, out=scratch, where=small)
        np.multiply(scratch, like(weight, scratch), out=scratch, where=small)
        np.add(start, scratch, out=start, where=small)
        np.subtract(end, start, out=start, where=large)
        np.multiply(start, like(1.0 - weight, start), out=start, where=large)
        np.subtract(end, start, out=start, where=large)


def lerp_into(out: np.ndarray, start: np.ndarray, end: np.ndarray, weight: "float | np.ndarray") -> None:
    """torch's ``start.lerp(end, weight)`` written into ``out`` (neither ``start`` nor ``end``);
    a (K, 1) ``weight`` as in ``lerp_``."""
    np.subtract(end, start, out=out)
    small = members_where(abs(weight) < 0.5)  # torch's formula for small weights (not NaN)
    if small is True:
        out *= like(weight, out)
        out += start
    elif small is False:
        out *= like(1.0 - weight, out)
        np.subtract(end, out, out=out)
    else:
        large = ~small
        np.multiply(out, like(weight, out), out=out, where=small)
        np.add(out, start, out=out, where=small)
        np.multiply(out, like(1.0 - weight, out), out=out, where=large)
        np.subtract(end, out, out=out, where=large)


def power(base: "float | np.ndarray", exponent: "float | np.ndarray") -> "float | np.ndarray":
    """``base ** exponent`` as Python computes it (the C library's pow), per member when either is
    a population's (K, 1) array: numpy's vectorised power can differ in the last bit, which would
    set a member apart from its lone run."""
    if isinstance(base, np.ndarray) or isinstance(exponent, np.ndarray):
        return np.power(np.asarray(base, dtype=object), np.asarray(exponent, dtype=object)).astype(np.float64)
    return base**exponent


def sqrt(x: "float | np.ndarray") -> "float | np.ndarray":
    """The square root of a hyperparameter-derived value: a Python float for a float (so a float32
    run stays in float32: a numpy float64 scalar would promote it), per member for an array."""
    return np.sqrt(x) if isinstance(x, np.ndarray) else math.sqrt(x)


def larger(a: "float | np.ndarray", b: "float | np.ndarray") -> "float | np.ndarray":
    """Python's ``max(a, b)``: ``b`` if ``b > a``, else ``a`` (NaN included), per member for arrays."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.where(b > a, b, a)
    return max(a, b)


def smaller(a: "float | np.ndarray", b: "float | np.ndarray") -> "float | np.ndarray":
    """Python's ``min(a, b)``: ``b`` if ``b < a``, else ``a`` (NaN included), per member for arrays."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.where(b < a, b, a)
    return min(a, b)


def moment_(average: np.ndarray, value: np.ndarray, decay: float, scratch: np.ndarray) -> None:
    """average = decay * average + (1 - decay) * value in place (torch's
    ``mul_(decay).add_(value, alpha=1 - decay)``, rounded the same way)."""
    average *= like(decay, average)
    np.multiply(value, like(1.0 - decay, value), out=scratch)
    average += scratch


def square_moment_(average: np.ndarray, grad: np.ndarray, decay: float, scratch: np.ndarray) -> None:
    """average = decay * average + (1 - decay) * grad * grad in place (torch's
    ``mul_(decay).addcmul_(grad, grad, value=1 - decay)``)."""
    average *= like(decay, average)
    np.multiply(grad, grad, out=scratch)
    scratch *= like(1.0 - decay, scratch)
    average += scratch
