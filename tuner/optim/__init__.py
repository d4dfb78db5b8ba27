"""Optimizers in numpy with torch.optim's semantics, and a registry by name.

``make_optimizer("adam", betas=(0.9, 0.99))`` validates the options and returns an
optimizer; every first-order one has ``init(params)`` and ``update(params, grad, lr, state)``.
``lbfgs`` is full-batch and has ``minimize`` instead.
"""

from dataclasses import dataclass, field, fields
from typing import Any

from tuner.errors import ConfigError, check_options
from tuner.optim.adagrad import Adagrad
from tuner.optim.adam import Adam, AdamW
from tuner.optim.base import FirstOrderOptimizer
from tuner.optim.lbfgs import LBFGS
from tuner.optim.rmsprop import RMSprop
from tuner.optim.sgd import SGD


@dataclass(frozen=True)
class OptimizerEntry:
    """A registered optimizer: its class, options fixed by the name, and changed defaults."""

    cls: type
    fixed: dict[str, Any] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)

    @property
    def options(self) -> tuple[str, ...]:
        """The constructor arguments a user may set."""
        return tuple(f.name for f in fields(self.cls) if f.name not in self.fixed)

    @property
    def full_batch(self) -> bool:
        return self.cls is LBFGS


OPTIMIZERS: dict[str, OptimizerEntry] = {
    "sgd": OptimizerEntry(SGD, fixed={"momentum": 0.0, "dampening": 0.0, "nesterov": False}),
    "momentum": OptimizerEntry(SGD, fixed={"nesterov": False}, defaults={"momentum": 0.9}),
    "nesterov": OptimizerEntry(
        SGD, fixed={"nesterov": True, "dampening": 0.0}, defaults={"momentum": 0.9}
    ),
    "adagrad": OptimizerEntry(Adagrad),
    "rmsprop": OptimizerEntry(RMSprop),
    "adam": OptimizerEntry(Adam),
    "adamw": OptimizerEntry(AdamW),
    "lbfgs": OptimizerEntry(LBFGS),
}


def make_optimizer(name: str, **options: Any) -> Any:
    """Build the optimizer registered as ``name``; ConfigError on an unknown name or option."""
    if name not in OPTIMIZERS:
        raise ConfigError(f"optimizer={name!r} is unknown; allowed: {', '.join(OPTIMIZERS)}")
    entry = OPTIMIZERS[name]
    check_options(f"optimizer {name!r}", options, entry.options)
    if "betas" in options and isinstance(options["betas"], list):
        options["betas"] = tuple(options["betas"])
    return entry.cls(**{**entry.defaults, **options, **entry.fixed})


__all__ = [
    "OPTIMIZERS",
    "LBFGS",
    "SGD",
    "Adagrad",
    "Adam",
    "AdamW",
    "FirstOrderOptimizer",
    "OptimizerEntry",
    "RMSprop",
    "make_optimizer",
]
