"""Populations: K configurations of one optimizer trained at once over a leading axis.

``stack`` turns K optimizers into one whose float hyperparameters that differ between members
are (K, 1) float64 arrays; its ``init``, ``update`` and ``eval_params`` then work on (K, P)
parameters with a float or (K, 1) learning rate, and each member's row is computed as the same
configuration computes its 1-D parameters alone (``base.Rule`` states what a rule does for this;
tests/optim/test_population*.py check it, bit for bit where they say so).
Members stack when ``population_key`` agrees: the same rule and transforms, the same non-float
options, and the same zero-ness of every float, since a rule may skip work for a whole
population (``if nonzero(momentum)``).

``select`` keeps some members (those still training when others diverge or are pruned). It works
on any rule's state by the rule a population's state follows:

    every array with ndim >= 2 holds one row per member along its leading axis (K, ...);
    anything else (the step count ``t``, a float, an array of ndim < 2, None) is shared by all
    members, so a rule keeps a per-member scalar as a (K, 1) array (NAdam's ``mu_product``).

Arrays are copied (a state array that is a view of another is therefore copied apart from it:
views are for scratch space, whose content does not survive a step); an array referenced twice
(scratch shared by equal shapes) is copied once and stays shared.
"""

import functools
from collections.abc import Hashable, Sequence
from dataclasses import fields, is_dataclass
from typing import Any

import numpy as np

from tuner.optim.base import nonzero
from tuner.optim.transforms import Optimizer, OptimizerState


class NotStackable(ValueError):
    """Optimizers whose ``population_key`` differ cannot train as one population."""


def population_key(optimizer: Optimizer) -> Hashable:
    """What members of one population share: equal keys stack. The classes of the rule and of the
    transforms, every non-float value (bools, ints such as ``polyak_start``, strings, None), and
    whether each float is zero; float values themselves may differ."""
    return _key(optimizer)


@functools.cache
def _field_names(cls: type) -> tuple[str, ...] | None:
    """The field names of a dataclass, None for any other class (a population's key is taken per
    member: ``dataclasses.fields`` each time would cost more than the rest of the key)."""
    return tuple(f.name for f in fields(cls)) if is_dataclass(cls) else None


def _key(value: Any) -> Hashable:
    if (names := _field_names(type(value))) is not None:
        return type(value), tuple((name, _key(getattr(value, name))) for name in names)
    if isinstance(value, (tuple, list)):
        return type(value), tuple(_key(v) for v in value)
    if isinstance(value, (float, np.ndarray)):  # a lone float or a stacked population's (K, 1) array
        return float, nonzero(value)
    return type(value), value  # bool, int, str, None, a slice: equal values only (True is not 1)


def stack(optimizers: Sequence[Optimizer], *, key: Hashable | None = None) -> Optimizer:
    """One optimizer training ``optimizers`` as a population, member k in row k: each float that
    differs between members becomes a (K, 1) float64 array (a pair as betas, a pair of arrays),
    the rest is kept. The members are validated already (``make_optimizer``), so the stacked
    dataclasses are built field by field, without their checks. NotStackable when their keys differ;
    ``key``: their common key when the caller has grouped them by it already (not checked again)."""
    if not optimizers:
        raise ValueError("stack needs at least one optimizer")
    if key is not None:
        return _stack(list(optimizers))
    key = population_key(optimizers[0])
    for k, optimizer in enumerate(optimizers[1:], start=1):
        if population_key(optimizer) != key:
            raise NotStackable(f"member {k} differs from member 0 in more than float values: "
                               f"{optimizer!r} and {optimizers[0]!r}")
    return _stack(list(optimizers))


def _stack(values: list) -> Any:
    first = values[0]
    if is_dataclass(first) and not isinstance(first, type):
        return _build(first, {f.name: _stack([getattr(v, f.name) for v in values]) for f in fields(first)})
    if isinstance(first, (tuple, list)):
        return type(first)(_stack(list(items)) for items in zip(*values, strict=True))
    if isinstance(first, np.ndarray):
        raise NotStackable("stack takes lone optimizers; this one holds a population already")
    if isinstance(first, float) and any(v != first for v in values):
        return np.array(values, dtype=np.float64).reshape(-1, 1)
    return first


def select(optimizer: Optimizer, state: OptimizerState, rows: np.ndarray) -> tuple[Optimizer, OptimizerState]:
    """The population restricted to the members ``rows`` (increasing indices into the current
    members), with their optimizer state: per-member arrays (the module docstring's rule) keep
    those rows, copied; shared values are kept. Allocates the new state."""
    rows = np.asarray(rows)
    if rows.ndim != 1 or rows.dtype.kind not in "iu" or (rows.size and rows[0] < 0) or np.any(np.diff(rows) <= 0):
        raise ValueError(f"rows must be increasing member indices; got {rows!r}")
    memo: dict[int, np.ndarray] = {}
    return _take(optimizer, rows, memo), _take(state, rows, memo)


def _take(value: Any, rows: np.ndarray, memo: dict[int, np.ndarray]) -> Any:
    if isinstance(value, np.ndarray):
        if value.ndim < 2:
            return value
        if id(value) not in memo:
            memo[id(value)] = value[rows]
        return memo[id(value)]
    if is_dataclass(value) and not isinstance(value, type):
        return _build(value, {f.name: _take(getattr(value, f.name), rows, memo) for f in fields(value)})
    if isinstance(value, (tuple, list)):
        return type(value)(_take(v, rows, memo) for v in value)
    if isinstance(value, dict):
        return {k: _take(v, rows, memo) for k, v in value.items()}
    return value


def _build(like: Any, values: dict[str, Any]) -> Any:
    """An instance of ``like``'s dataclass with ``values`` as its fields, bypassing ``__init__``
    (and so ``__post_init__``'s validation, and ``frozen``)."""
    built = object.__new__(type(like))
    for name, value in values.items():
        object.__setattr__(built, name, value)
    return built
