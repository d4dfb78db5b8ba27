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
from tuner.optim.adam import Adam
from tuner.optim.base import Rule, check_bool
from tuner.optim.lbfgs import LBFGS
from tuner.optim.rmsprop import RMSprop
from tuner.optim.sgd import SGD
from tuner.optim.transforms import Average, Clip, Optimizer, WeightDecay
from tuner.params import Param, lr, one_minus, weight_decay

TECHNIQUES = ("clip_grad_norm", "clip_grad_value", "ema_decay", "polyak_start")
"""Options every first-order optimizer takes besides its rule's (``tuner.optim.transforms``):
gradient clipping by global norm or by value, and EMA or Polyak averaging (from a step)."""


@dataclass(frozen=True)
class OptimizerEntry:
    """A registered optimizer: its update rule, how its ``weight_decay`` applies, options fixed by
    the name, changed defaults, the reference class with the same semantics (``package.reference``,
    torch.optim unless a package defines the optimizer) and its default search space (its own
    parameters; ``tuner.space`` adds the batch size and schedule of first-order ones).

    ``decay`` is "coupled" (L2 in the gradient), "decoupled" (AdamW's) or None (no weight decay
    option); ``decay_switch`` names a bool option that selects decoupled decay (torch's
    ``decoupled_weight_decay`` of NAdam and RAdam)."""

    cls: type
    torch: str
    space: tuple[Param, ...]
    fixed: dict[str, Any] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)
    decay: str | None = "coupled"
    decay_switch: str | None = None
    package: str = "torch.optim"

    @property
    def full_batch(self) -> bool:
        return self.cls is LBFGS

    @property
    def _own_defaults(self) -> dict[str, Any]:
        """Every option with the reference's default (the rule's fields mirror the reference's)."""
        default = {f.name: f.default for f in fields(self.cls) if f.default is not MISSING}
        if self.decay_switch:
            default[self.decay_switch] = False
        return default

    @property
    def options(self) -> tuple[str, ...]:
        """The options a user may set: the rule's, weight decay, and the TECHNIQUES."""
        names = [f.name for f in fields(self.cls)]
        if self.decay:
            names.append("weight_decay")
        if self.decay_switch:
            names.append(self.decay_switch)
        if not self.full_batch:
            names += TECHNIQUES
        return tuple(name for name in names if name not in self.fixed)

    @property
    def variant(self) -> dict[str, Any]:
        """Fixed options that differ from the reference's defaults: what its code must pass to get
        this optimizer, e.g. ``nesterov=True``."""
        default = self._own_defaults
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
    "adamw": OptimizerEntry(Adam, "AdamW", (
        lr(1e-5, 1e-1), one_minus("beta1", 0.5, 0.999), one_minus("beta2", 0.9, 0.9999),
        Param("eps", 1e-10, 1e-2), weight_decay(1e-5, 1.0, fixed=None),
        Param("amsgrad", choices=(False, True), fixed=False),
    ), decay="decoupled", defaults={"weight_decay": 1e-2}),
    "lbfgs": OptimizerEntry(LBFGS, "LBFGS", (Param("history_size", 3, 30, integer=True),), decay=None),
}
"""Default spaces in the style of AlgoPerf: lr, eps and weight decay on log scales, momentum and
betas as ``1 - beta`` on log scales; weight decay, amsgrad, centered and RMSprop's momentum are
fixed to torch's defaults unless a study file opens them."""


def make_optimizer(name: str, **options: Any) -> Any:
    """Build the optimizer registered as ``name``: its rule composed with weight decay, clipping
    and averaging (``transforms.Optimizer``), or L-BFGS. ConfigError on an unknown name or option,
    or a value the rule or a transform does not allow."""
    if name not in OPTIMIZERS:
        raise ConfigError(f"optimizer={shown(name)} is unknown; allowed: {', '.join(OPTIMIZERS)}",
                          allowed=", ".join(OPTIMIZERS))
    entry = OPTIMIZERS[name]
    check_options(f"optimizer {name!r}", options, entry.options)
    options = {**entry.defaults, **options, **entry.fixed}
    if isinstance(options.get("betas"), list):
        options["betas"] = tuple(options["betas"])
    if entry.full_batch:
        return entry.cls(**options)
    decay = None
    if entry.decay:
        coupled = entry.decay == "coupled"
        if entry.decay_switch:
            coupled = not check_bool(entry.decay_switch, options.pop(entry.decay_switch, False))
        decay = WeightDecay(options.pop("weight_decay", 0.0), coupled)
    return Optimizer(entry.cls(**{k: v for k, v in options.items() if k not in TECHNIQUES}), decay,
                     _clip(options), _average(options))


def _clip(options: dict[str, Any]) -> Clip | None:
    norm, value = options.get("clip_grad_norm"), options.get("clip_grad_value")
    if norm is not None and value is not None:
        raise ConfigError("clip_grad_norm and clip_grad_value are both set; allowed: one of them")
    if norm is not None:
        return Clip("norm", norm)
    return Clip("value", value) if value is not None else None


def _average(options: dict[str, Any]) -> Average | None:
    ema, start = options.get("ema_decay"), options.get("polyak_start")
    if ema is not None and start is not None:
        raise ConfigError("ema_decay and polyak_start are both set; allowed: one kind of averaging")
    if ema is not None:
        return Average("ema", decay=ema)
    return Average("polyak", start=start) if start is not None else None


__all__ = [
    "OPTIMIZERS",
    "LBFGS",
    "SGD",
    "Adagrad",
    "Adam",
    "Optimizer",
    "OptimizerEntry",
    "TECHNIQUES",
    "RMSprop",
    "Rule",
    "make_optimizer",
]
