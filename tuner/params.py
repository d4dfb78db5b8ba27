"""One dimension of a search space, and how Optuna samples it.

A leaf module: the optimizer registry (``tuner.optim``) declares each optimizer's default
space with it, and ``tuner.space`` resolves, samples and converts spaces built from it.
"""

import math
from dataclasses import dataclass
from typing import Any

import numpy as np


class _Absent:
    def __repr__(self) -> str:
        return "ABSENT"


ABSENT = _Absent()
"""A parameter's ``fixed`` value when it is left out of the configuration: the optimizer's default
applies, or the technique it turns on (clipping, averaging) is off. A study file sets it with null."""


@dataclass(frozen=True)
class Param:
    """One dimension of a search space; ``fixed`` set means it is not searched."""

    name: str
    low: float | None = None
    high: float | None = None
    log: bool = True
    one_minus: bool = False
    integer: bool = False
    power_of_two: bool = False
    choices: tuple | None = None
    fixed: Any = None
    schedule: str | None = None  # only sampled when this schedule is chosen

    @property
    def searched(self) -> bool:
        return self.fixed is None

    @property
    def absent(self) -> bool:
        return self.fixed is ABSENT

    @property
    def optuna_name(self) -> str:
        """The name Optuna samples under: ``one_minus_beta2`` for ``1 - beta2``, ``log2_batch_size``
        for a power of two; the user's name for a categorical choice (any kind of parameter)."""
        if self.choices is not None:
            return self.name
        if self.one_minus:
            return f"one_minus_{self.name}"
        if self.power_of_two:
            return f"log2_{self.name}"
        return self.name

    def suggest(self, trial: Any) -> Any:
        """Ask ``trial`` for this parameter; return its value in user terms."""
        if not self.searched:
            return self.fixed
        if self.choices is not None:
            return trial.suggest_categorical(self.optuna_name, list(self.choices))
        if self.one_minus:
            return 1.0 - trial.suggest_float(self.optuna_name, 1.0 - self.high, 1.0 - self.low, log=self.log)
        if self.power_of_two:
            return 2 ** trial.suggest_int(self.optuna_name, round(math.log2(self.low)), round(math.log2(self.high)))
        if self.integer:
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, log=self.log)

    def grid(self, points: int) -> list:
        """Values of the Optuna parameter for a grid search."""
        if self.choices is not None:
            return list(self.choices)
        if self.one_minus:
            return (np.geomspace if self.log else np.linspace)(1.0 - self.high, 1.0 - self.low, points).tolist()
        if self.power_of_two:
            lo, hi = round(math.log2(self.low)), round(math.log2(self.high))
            return sorted({int(v) for v in np.linspace(lo, hi, min(points, hi - lo + 1)).round()})
        space = np.geomspace if self.log else np.linspace
        values = space(self.low, self.high, points).tolist()
        return sorted({int(round(v)) for v in values}) if self.integer else values


def lr(low: float, high: float) -> Param:
    """The learning rate, on a log scale."""
    return Param("lr", low, high)


def one_minus(name: str, low: float, high: float) -> Param:
    """A decay rate (momentum, a beta, alpha) in ``[low, high]``, sampled as ``1 - value`` on a log scale."""
    return Param(name, low, high, one_minus=True)


def weight_decay(low: float, high: float, fixed: float | None = 0.0) -> Param:
    """Weight decay on a log scale; off (``fixed=0.0``) unless a study file opens the range."""
    return Param("weight_decay", low, high, fixed=fixed)
