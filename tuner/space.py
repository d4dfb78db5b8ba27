"""Search spaces: per-optimizer defaults, study-file overrides, and ``trial.suggest_*``.

Parameters are named as users think of them (``momentum``, ``beta2``, ``batch_size``) and
sampled on the scale the tuning literature uses: the learning rate, eps and weight decay on
a log scale; momentum, betas and alpha as ``1 - beta`` on a log scale (Optuna parameter
``one_minus_beta2``); the batch size as a power of two (``log2_batch_size``). The schedule
is a categorical choice; its parameters are conditional on it and relative to the run's
length, so one space fits every budget:

    step_every      fraction of the run between two decays (StepLR step_size)
    step_gamma      factor at each decay (StepLR gamma)
    decay_to        final lr / initial lr of the exponential schedule
    inverse_rate    rate x total steps of the inverse-time schedule
    cosine_floor    lr_min / lr of the cosine schedule
    warmup          fraction of the run spent in linear warm-up (any schedule; 0 unless opened)

``to_config`` turns sampled values into what a user pastes: the optimizer's constructor
arguments (torch names), ``lr``, ``batch_size`` and the schedule in absolute steps.
"""

import math
from dataclasses import replace
from typing import Any

from tuner.errors import ConfigError
from tuner.optim import OPTIMIZERS
from tuner.params import Param
from tuner.schedules import SCHEDULES

SCHEDULE_KINDS = tuple(SCHEDULES)
"""The ``schedule`` choices: every registered schedule kind."""

SCHEDULE_PARAMS = (
    Param("step_every", 0.1, 0.5, log=False, schedule="step"),
    Param("step_gamma", 0.1, 0.9, log=False, schedule="step"),
    Param("decay_to", 1e-3, 0.5, schedule="exponential"),
    Param("inverse_rate", 0.1, 100.0, schedule="inverse_time"),
    Param("cosine_floor", 0.0, 0.1, log=False, schedule="cosine"),
)
COMMON = (
    Param("batch_size", 16, 256, power_of_two=True),
    Param("schedule", choices=SCHEDULE_KINDS),
    *SCHEDULE_PARAMS,
    Param("warmup", 0.0, 0.1, log=False, fixed=0.0),
)
"""Parameters every first-order optimizer has besides its own (see ``OptimizerEntry.space``)."""


def default_space(optimizer: str, *, data_task: bool) -> dict[str, Param]:
    """The default parameters of ``optimizer`` (its registry entry's space), and for first-order
    optimizers COMMON: no batch size for synthetic tasks, no lr or schedule for full-batch L-BFGS."""
    entry = OPTIMIZERS[optimizer]
    params = list(entry.space)
    if not entry.full_batch:
        params += [p for p in COMMON if data_task or p.name != "batch_size"]
    return {p.name: p for p in params}


def resolve(optimizer: str, overrides: dict[str, Any], *, data_task: bool, where: str) -> list[Param]:
    """Apply study-file overrides: a value fixes a parameter, null drops it (the optimizer's
    default applies), ``{low, high[, log]}`` narrows a range, ``{choices: [...]}`` sets choices.
    ConfigError names ``where.NAME`` for an unknown parameter or a bad value.
    """
    space = default_space(optimizer, data_task=data_task)
    for name, value in overrides.items():
        field = f"{where}.{name}"
        if name not in space:
            raise ConfigError(f"{field}: unknown parameter for {optimizer}; allowed: {', '.join(space)}")
        space[name] = _override(space[name], value, field)
    chosen = _schedule_choices(space)
    for p in space.values():
        if p.schedule and p.name in overrides and p.schedule not in chosen:
            raise ConfigError(
                f"{where}.{p.name} is a parameter of schedule {p.schedule!r}, which is not chosen; "
                f"chosen: {', '.join(chosen)}"
            )
    return [p for p in space.values() if p.fixed is not _DROPPED and not (p.schedule and p.schedule not in chosen)]


_DROPPED = object()


def _schedule_choices(space: dict[str, Param]) -> tuple[str, ...]:
    schedule = space.get("schedule")
    if schedule is None:
        return ()
    return (schedule.fixed,) if not schedule.searched else schedule.choices


def _override(param: Param, value: Any, field: str) -> Param:
    if value is None:
        if param.name in ("lr", "schedule"):
            raise ConfigError(f"{field}: cannot be dropped; give a value or a range")
        return replace(param, fixed=_DROPPED)
    if isinstance(value, dict):
        if set(value) == {"choices"}:
            choices = tuple(value["choices"])
            if not choices:
                raise ConfigError(f"{field}.choices: needs at least one value")
            if param.name == "schedule":
                bad = [c for c in choices if c not in SCHEDULE_KINDS]
                if bad:
                    raise ConfigError(f"{field}.choices: {bad[0]!r} is unknown; allowed: {', '.join(SCHEDULE_KINDS)}")
            return replace(param, choices=choices, fixed=None)
        if not set(value) <= {"low", "high", "log"} or not {"low", "high"} <= set(value):
            raise ConfigError(f"{field}={value!r}: allowed: a value, null, {{low, high[, log]}} or {{choices: [...]}}")
        if param.choices is not None and param.low is None:
            raise ConfigError(f"{field}: is categorical; allowed: a value or {{choices: [...]}}")
        low, high = value["low"], value["high"]
        for end, v in (("low", low), ("high", high)):
            if not isinstance(v, (int, float)) or isinstance(v, bool):
                raise ConfigError(f"{field}.{end}={v!r}: allowed: a number")
        if low > high:
            raise ConfigError(f"{field}: low={low!r} > high={high!r}; allowed: low <= high")
        log = value.get("log", param.log)
        if param.one_minus and not 0 <= low <= high < 1:
            raise ConfigError(f"{field}: range [{low}, {high}] is not allowed; allowed: within [0, 1)")
        if log and not param.one_minus and low <= 0:
            raise ConfigError(f"{field}.low={low!r}: a log-scale range needs low > 0")
        if param.power_of_two and not all(v >= 1 and math.log2(v).is_integer() for v in (low, high)):
            raise ConfigError(f"{field}: low and high must be powers of two; got {low}, {high}")
        return replace(param, low=low, high=high, log=log, fixed=None, choices=None)
    if param.choices is not None and value not in param.choices and param.name != "schedule":
        raise ConfigError(f"{field}={value!r}: allowed: {', '.join(map(str, param.choices))}")
    if param.name == "schedule" and value not in SCHEDULE_KINDS:
        raise ConfigError(f"{field}={value!r} is unknown; allowed: {', '.join(SCHEDULE_KINDS)}")
    if param.power_of_two and not (isinstance(value, int) and value >= 1 and math.log2(value).is_integer()):
        raise ConfigError(f"{field}={value!r}: allowed: a power of two")
    return replace(param, fixed=value)


def suggest(trial: Any, params: list[Param]) -> dict[str, Any]:
    """Sample every parameter of the space; conditional ones only under their schedule."""
    values: dict[str, Any] = {}
    for p in params:
        if p.schedule is None:
            values[p.name] = p.suggest(trial)
    for p in params:
        if p.schedule is not None and values.get("schedule") == p.schedule:
            values[p.name] = p.suggest(trial)
    return values


def grid_space(params: list[Param], points: int) -> dict[str, list]:
    """The search space of Optuna's GridSampler for ``params``."""
    searched = [p for p in params if p.searched]
    schedule = next((p for p in params if p.name == "schedule"), None)
    if schedule is not None and schedule.searched and any(p.schedule for p in searched):
        raise ConfigError(
            "sampler grid cannot search a schedule choice together with its conditional parameters; "
            "fix the schedule to one kind (schedule: cosine) or drop its parameters"
        )
    return {p.optuna_name: p.grid(points) for p in searched}


def to_config(optimizer: str, values: dict[str, Any], total_steps: int) -> dict[str, Any]:
    """Sampled values -> {"optimizer", constructor arguments, "lr", "batch_size", "schedule"}."""
    config: dict[str, Any] = {"optimizer": optimizer}
    options = {k: v for k, v in values.items()
               if k not in ("lr", "batch_size", "schedule", "warmup") and k not in _SCHEDULE_NAMES}
    if "beta1" in options or "beta2" in options:
        config["betas"] = [float(options.pop("beta1", 0.9)), float(options.pop("beta2", 0.999))]
    config.update({k: _plain(v) for k, v in options.items()})
    if OPTIMIZERS[optimizer].full_batch:
        return config
    config["lr"] = float(values["lr"])
    if "batch_size" in values:
        config["batch_size"] = int(values["batch_size"])
    config["schedule"] = schedule_config(values, config["lr"], total_steps)
    return config


_SCHEDULE_NAMES = {p.name for p in SCHEDULE_PARAMS}


def schedule_config(values: dict[str, Any], lr: float, total_steps: int) -> dict[str, Any]:
    """The schedule in absolute steps, as ``tuner.schedules.make_schedule`` takes it."""
    kind = values.get("schedule", "constant")
    warmup = min(int(round(values.get("warmup", 0.0) * total_steps)), max(total_steps - 1, 0))
    decay_steps = max(total_steps - warmup, 1)
    schedule: dict[str, Any] = {"kind": kind}
    if kind == "step":
        schedule["step_size"] = max(1, int(round(values.get("step_every", 0.3) * decay_steps)))
        schedule["gamma"] = float(values.get("step_gamma", 0.1))
    elif kind == "exponential":
        schedule["gamma"] = float(values.get("decay_to", 0.01)) ** (1.0 / decay_steps)
    elif kind == "inverse_time":
        schedule["rate"] = float(values.get("inverse_rate", 10.0)) / decay_steps
    elif kind == "cosine":
        schedule["total_steps"] = decay_steps
        schedule["lr_min"] = float(values.get("cosine_floor", 0.0)) * lr
    if warmup:
        schedule["warmup_steps"] = warmup
    return schedule


def _plain(value: Any) -> Any:
    """numpy scalars -> Python values, so configs serialise as JSON."""
    return value.item() if hasattr(value, "item") else value


def from_config(config: dict[str, Any], total_steps: int) -> dict[str, Any]:
    """The inverse of ``to_config``: a run's configuration -> values in search-space terms
    (what a study file fixes). Integer step counts make the schedule's fractions approximate."""
    values = {k: v for k, v in config.items() if k not in ("optimizer", "betas", "schedule")}
    if "betas" in config:
        values["beta1"], values["beta2"] = (float(b) for b in config["betas"])
    schedule = config.get("schedule")
    if schedule is None:
        return values
    kind, warmup = schedule["kind"], schedule.get("warmup_steps", 0)
    values["schedule"] = kind
    decay_steps = max(total_steps - warmup, 1)
    if kind == "step":
        values["step_every"] = schedule["step_size"] / decay_steps
        values["step_gamma"] = schedule["gamma"]
    elif kind == "exponential":
        values["decay_to"] = schedule["gamma"] ** decay_steps
    elif kind == "inverse_time":
        values["inverse_rate"] = schedule["rate"] * decay_steps
    elif kind == "cosine":
        values["cosine_floor"] = schedule["lr_min"] / config["lr"]
    if warmup:
        values["warmup"] = warmup / total_steps
    return values
