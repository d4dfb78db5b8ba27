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
from tuner.optim.adadelta import Adadelta
from tuner.optim.adafactor import Adafactor
from tuner.optim.adagrad import Adagrad
from tuner.optim.adam import Adam
from tuner.optim.adamax import Adamax
from tuner.optim.base import Rule, check_bool
from tuner.optim.lbfgs import LBFGS
from tuner.optim.lion import Lion
from tuner.optim.muon import Muon
from tuner.optim.nadam import NAdam
from tuner.optim.radam import RAdam
from tuner.optim.rmsprop import RMSprop
from tuner.optim.schedule_free import ScheduleFreeAdamW, ScheduleFreeSGD
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

    ``decay`` is "coupled" (L2 in the gradient), "decoupled" (AdamW's) or None: no shared weight
    decay (L-BFGS has none; a rule whose reference decays in its own way, such as Adafactor and
    schedule-free AdamW, has a ``weight_decay`` field of its own); ``decay_switch`` names a bool
    option that selects decoupled decay (torch's ``decoupled_weight_decay`` of NAdam and RAdam)."""

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
    def reference_defaults(self) -> dict[str, Any]:
        """Every option with the reference's default (the rule's fields mirror the reference's)."""
        default = {f.name: f.default for f in fields(self.cls) if f.default is not MISSING}
        if self.decay:  # every entry keeps its reference's weight-decay default (0 unless ``defaults`` says)
            default["weight_decay"] = self.defaults.get("weight_decay", 0.0)
        if self.decay_switch:
            default[self.decay_switch] = False
        return default

    def option_default(self, name: str) -> Any:
        """The value tuner uses for option ``name`` when a configuration leaves it out."""
        return self.defaults.get(name, self.reference_defaults.get(name))

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
        """Options whose value here differs from the reference's default: what its code must pass
        to get this optimizer, e.g. ``nesterov=True`` (fixed by the name) or ``momentum=0.9``
        (tuner's default for ``momentum``, which torch's SGD defaults to 0)."""
        default = self.reference_defaults
        return {k: v for k, v in {**self.defaults, **self.fixed}.items() if default.get(k, MISSING) != v}


NO_SCHEDULE = Param("schedule", choices=("constant",), fixed="constant")
"""The schedule of schedule-free optimizers unless a study file opens others: the method replaces it."""

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
    # NAdam, RAdam, Adamax, Adadelta: torch's classes; the "w" names fix torch's decoupled_weight_decay=True
    "nadam": OptimizerEntry(NAdam, "NAdam", (
        lr(1e-5, 1e-1), one_minus("beta1", 0.5, 0.999), one_minus("beta2", 0.9, 0.9999), Param("eps", 1e-10, 1e-2),
        Param("momentum_decay", 1e-4, 1e-1, fixed=4e-3), weight_decay(1e-6, 1e-2),
        Param("decoupled_weight_decay", choices=(False, True), fixed=False),
    ), decay_switch="decoupled_weight_decay"),
    "nadamw": OptimizerEntry(NAdam, "NAdam", (
        lr(1e-5, 1e-1), one_minus("beta1", 0.5, 0.999), one_minus("beta2", 0.9, 0.9999), Param("eps", 1e-10, 1e-2),
        Param("momentum_decay", 1e-4, 1e-1, fixed=4e-3), weight_decay(1e-5, 1.0, fixed=None),
    ), decay_switch="decoupled_weight_decay", fixed={"decoupled_weight_decay": True}),
    "radam": OptimizerEntry(RAdam, "RAdam", (
        lr(1e-5, 1e-1), one_minus("beta1", 0.5, 0.999), one_minus("beta2", 0.9, 0.9999), Param("eps", 1e-10, 1e-2),
        weight_decay(1e-6, 1e-2), Param("decoupled_weight_decay", choices=(False, True), fixed=False),
    ), decay_switch="decoupled_weight_decay"),
    "radamw": OptimizerEntry(RAdam, "RAdam", (
        lr(1e-5, 1e-1), one_minus("beta1", 0.5, 0.999), one_minus("beta2", 0.9, 0.9999), Param("eps", 1e-10, 1e-2),
        weight_decay(1e-5, 1.0, fixed=None),
    ), decay_switch="decoupled_weight_decay", fixed={"decoupled_weight_decay": True}),
    "adamax": OptimizerEntry(Adamax, "Adamax", (
        lr(1e-5, 1e-1), one_minus("beta1", 0.5, 0.999), one_minus("beta2", 0.9, 0.9999), Param("eps", 1e-10, 1e-2),
        weight_decay(1e-6, 1e-2),
    )),
    "adadelta": OptimizerEntry(Adadelta, "Adadelta", (
        lr(1e-2, 1e1), one_minus("rho", 0.5, 0.999), Param("eps", 1e-10, 1e-2), weight_decay(1e-6, 1e-2),
    )),
    # Lion and schedule-free SGD / AdamW: the classes of their reference packages (lion_pytorch, schedulefree)
    "lion": OptimizerEntry(Lion, "Lion", (
        lr(1e-6, 1e-2), one_minus("beta1", 0.5, 0.999), one_minus("beta2", 0.9, 0.9999), weight_decay(1e-5, 1.0),
    ), decay="decoupled", package="lion_pytorch"),
    "schedule_free_sgd": OptimizerEntry(ScheduleFreeSGD, "SGDScheduleFree", (
        lr(1e-3, 1e1), one_minus("momentum", 0.5, 0.999), weight_decay(1e-6, 1e-2),
        Param("warmup_steps", 0, 1000, log=False, integer=True, fixed=0), Param("r", 0.0, 1.0, log=False, fixed=0.0),
        Param("weight_lr_power", 0.0, 2.0, log=False, fixed=2.0), NO_SCHEDULE,
    ), package="schedulefree"),
    "schedule_free_adamw": OptimizerEntry(ScheduleFreeAdamW, "AdamWScheduleFree", (
        lr(1e-5, 1e-1), one_minus("beta1", 0.5, 0.999), one_minus("beta2", 0.9, 0.9999), Param("eps", 1e-10, 1e-2),
        weight_decay(1e-5, 1.0), Param("warmup_steps", 0, 1000, log=False, integer=True, fixed=0),
        Param("r", 0.0, 1.0, log=False, fixed=0.0), Param("weight_lr_power", 0.0, 2.0, log=False, fixed=2.0),
        NO_SCHEDULE,
    ), decay=None, package="schedulefree"),
    # Adafactor and Muon read the task's weight matrices (bind). Adafactor owns its weight decay (torch
    # reads RMS(p) before decaying); Muon's lr is shared with AdamW on the other parameters through
    # "match_rms_adamw".
    "adafactor": OptimizerEntry(Adafactor, "Adafactor", (
        lr(1e-4, 1.0), Param("beta2_decay", -1.0, -0.5, log=False), Param("d", 1.0, 10.0, fixed=1.0),
        weight_decay(1e-5, 1e-1),
    ), decay=None),
    "muon": OptimizerEntry(Muon, "Muon", (
        lr(1e-5, 1e-1), one_minus("momentum", 0.5, 0.999), weight_decay(1e-5, 1.0, fixed=None),
        Param("adjust_lr_fn", choices=("original", "match_rms_adamw"), fixed="match_rms_adamw"),
        Param("nesterov", choices=(False, True), fixed=True),
        Param("adamw_beta1", 0.5, 0.999, one_minus=True, fixed=0.9),
        Param("adamw_beta2", 0.9, 0.9999, one_minus=True, fixed=0.999), Param("adamw_eps", 1e-10, 1e-2, fixed=1e-8),
    ), decay="decoupled", defaults={"weight_decay": 0.1, "adjust_lr_fn": "match_rms_adamw"}),
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
