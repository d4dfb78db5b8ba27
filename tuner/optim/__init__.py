"""Optimizers in numpy with torch.optim's semantics, and a registry by name.

``make_optimizer("adam", betas=(0.9, 0.99))`` validates the options and returns an
optimizer; every first-order one has ``init(params)`` and ``update(params, grad, lr, state)``.
``lbfgs`` is full-batch and has ``minimize`` instead.

``OPTIMIZERS`` is the one list of optimizer names: the study file's allowed names, the
default search spaces, the torch code of ``tuner.snippets`` and the dashboard's colours
all derive from it.
"""

from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from tuner.errors import ConfigError, check_options, shown
from tuner.optim.adagrad import Adagrad
from tuner.optim.adam import Adam, AdamW
from tuner.optim.base import FirstOrderOptimizer
from tuner.optim.lbfgs import LBFGS
from tuner.optim.rmsprop import RMSprop
from tuner.optim.sgd import SGD
from tuner.params import Param, lr, one_minus, weight_decay


@dataclass(frozen=True)
class OptimizerEntry:
    """A registered optimizer: its class, options fixed by the name, changed defaults, the
    ``torch.optim`` class with the same semantics, and its default search space (the
    parameters of its own; ``tuner.space`` adds the batch size and schedule of first-order ones)."""

    cls: type
    torch: str
    space: tuple[Param, ...]
    fixed: dict[str, Any] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)

    @property
    def options(self) -> tuple[str, ...]:
        """The constructor arguments a user may set."""
        return tuple(f.name for f in fields(self.cls) if f.name not in self.fixed)

    @property
    def full_batch(self) -> bool:
        return self.cls is LBFGS

    @property
    def variant(self) -> dict[str, Any]:
        """Fixed options that differ from the class's defaults (which are torch's): what torch code
        must pass to get this optimizer, e.g. ``nesterov=True``."""
        default = {f.name: f.default for f in fields(self.cls) if f.default is not MISSING}
        return {k: v for k, v in self.fixed.items() if default.get(k, MISSING) != v}


OPTIMIZERS: dict[str, OptimizerEntry] = {
    "sgd": OptimizerEntry(SGD, "SGD", (lr(1e-4, 1.0), weight_decay(1e-6, 1e-2)),
                          fixed={"momentum": 0.0, "dampening": 0.0, "nesterov": False}),
    "momentum": OptimizerEntry(SGD, "SGD", (lr(1e-4, 1.0), one_minus("momentum", 0.5, 0.999),
                                            weight_decay(1e-6, 1e-2)),
                               fixed={"nesterov": False}, defaults={"momentum": 0.9}),
    "nesterov": OptimizerEntry(SGD, "SGD", (lr(1e-4, 1.0), one_minus("momentum", 0.5, 0.999),
                                            weight_decay(1e-6, 1e-2)),
                               fixed={"nesterov": True, "dampening": 0.0}, defaults={"momentum": 0.9}),
    "adagrad": OptimizerEntry(Adagrad, "Adagrad", (lr(1e-3, 1.0), Param("eps", 1e-10, 1e-2, fixed=1e-10),
                                                   weight_decay(1e-6, 1e-2))),
    "rmsprop": OptimizerEntry(RMSprop, "RMSprop", (
        lr(1e-5, 1e-1), one_minus("alpha", 0.5, 0.999), Param("eps", 1e-10, 1e-2),
        Param("momentum", 0.0, 0.99, log=False, fixed=0.0), Param("centered", choices=(False, True), fixed=False),
        weight_decay(1e-6, 1e-2),
    )),
    "adam": OptimizerEntry(Adam, "Adam", (
        lr(1e-5, 1e-1), one_minus("beta1", 0.5, 0.999), one_minus("beta2", 0.9, 0.9999),
        Param("eps", 1e-10, 1e-2), weight_decay(1e-6, 1e-2), Param("amsgrad", choices=(False, True), fixed=False),
    )),
    "adamw": OptimizerEntry(AdamW, "AdamW", (
        lr(1e-5, 1e-1), one_minus("beta1", 0.5, 0.999), one_minus("beta2", 0.9, 0.9999),
        Param("eps", 1e-10, 1e-2), weight_decay(1e-5, 1.0, fixed=None),
        Param("amsgrad", choices=(False, True), fixed=False),
    )),
    "lbfgs": OptimizerEntry(LBFGS, "LBFGS", (Param("history_size", 3, 30, integer=True),)),
}
"""Default spaces in the style of AlgoPerf: lr, eps and weight decay on log scales, momentum and
betas as ``1 - beta`` on log scales; weight decay, amsgrad, centered and RMSprop's momentum are
fixed to torch's defaults unless a study file opens them."""


def make_optimizer(name: str, **options: Any) -> Any:
    """Build the optimizer registered as ``name``; ConfigError on an unknown name or option."""
    if name not in OPTIMIZERS:
        raise ConfigError(f"optimizer={shown(name)} is unknown; allowed: {', '.join(OPTIMIZERS)}",
                          allowed=", ".join(OPTIMIZERS))
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
