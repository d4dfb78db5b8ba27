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
    warmup          fraction of the run spent in linear warm-up (0 unless opened; any schedule
                    but one_cycle, which rises over its own cycle_rise and ignores it; the
                    warm-up of wsd)

Fractions of "the run" count the steps after the warm-up. The default ``schedule`` choice is
constant, step, exponential, inverse_time and cosine (``SCHEDULE_KINDS``): one categorical
over every kind would split a study's trials ten ways, and existing studies keep their
Optuna distribution (a changed choice list cannot resume a study). A study file
opens the others with ``schedule: {choices: [...]}``; their parameters (defaults: ranges
searched, else the fixed value, which ``{low, high}`` opens to the range shown):

    inverse_sqrt_flat  fraction of the run flat before the 1/sqrt(k) decay, 0.01-0.5 (log)
    poly_power         power of the polynomial decay to 0 at the end, 0.5-2 (log)
    cycle_rise         fraction of the run rising to lr (OneCycleLR pct_start), 0.1-0.5
    cycle_div          lr / starting lr (div_factor), 5-100 (log)
    cycle_final_div    starting lr / final lr (final_div_factor), fixed 1e4 (10-1e5, log)
    cycle_anneal       cos or linear (anneal_strategy)
    restart_period     fraction of the run in the first cosine cycle (T_0), 0.05-0.5 (log)
    restart_mult       factor of each next cycle's length (T_mult), 1 or 2
    restart_floor      lr_min / lr of the restarts, fixed 0 (0-0.1)
    wsd_decay          fraction of the run in wsd's cool-down, 0.05-0.5 (log)
    wsd_cooldown       linear or 1-sqrt

``to_config`` turns sampled values into what a user pastes: the optimizer's constructor
arguments (torch names), ``lr``, ``batch_size`` and the schedule in absolute steps.
"""

import math
from dataclasses import replace
from typing import Any

from tuner.errors import ConfigError, check_range, shown, shown_key
from tuner.optim import OPTIMIZERS, make_optimizer
from tuner.params import ABSENT, Param
from tuner.schedules import SCHEDULES, Schedule, make_schedule

SCHEDULE_KINDS = tuple(name for name, kind in SCHEDULES.items() if kind.searched)
"""The default ``schedule`` choices; a study file may choose any kind in ``SCHEDULES``."""

SCHEDULE_PARAMS = (
    Param("step_every", 0.1, 0.5, log=False, schedule="step"),
    Param("step_gamma", 0.1, 0.9, log=False, schedule="step"),
    Param("decay_to", 1e-3, 0.5, schedule="exponential"),
    Param("inverse_rate", 0.1, 100.0, schedule="inverse_time"),
    Param("cosine_floor", 0.0, 0.1, log=False, schedule="cosine"),
    Param("inverse_sqrt_flat", 0.01, 0.5, schedule="inverse_sqrt"),
    Param("poly_power", 0.5, 2.0, schedule="polynomial"),
    Param("cycle_rise", 0.1, 0.5, log=False, schedule="one_cycle"),
    Param("cycle_div", 5.0, 100.0, schedule="one_cycle"),
    Param("cycle_final_div", 10.0, 1e5, fixed=1e4, schedule="one_cycle"),
    Param("cycle_anneal", choices=("cos", "linear"), schedule="one_cycle"),
    Param("restart_period", 0.05, 0.5, schedule="cosine_restarts"),
    Param("restart_mult", choices=(1, 2), schedule="cosine_restarts"),
    Param("restart_floor", 0.0, 0.1, log=False, fixed=0.0, schedule="cosine_restarts"),
    Param("wsd_decay", 0.05, 0.5, schedule="wsd"),
    Param("wsd_cooldown", choices=("linear", "1-sqrt"), schedule="wsd"),
)
TECHNIQUE_PARAMS = (
    Param("clip_grad_norm", 0.01, 100.0, fixed=ABSENT),
    Param("clip_grad_value", 1e-3, 10.0, fixed=ABSENT),
    Param("ema_decay", 0.9, 0.9999, one_minus=True, fixed=ABSENT),
    Param("polyak_from", 0.0, 0.9, log=False, fixed=ABSENT),
)
"""Gradient clipping and weight averaging (``tuner.optim.transforms``), off unless a study file
sets a value or opens a range: the clipping thresholds on log scales, the EMA decay as
``1 - decay`` on a log scale, and Polyak averaging's start as a fraction of the run."""

EXCLUSIVE = (("clip_grad_norm", "clip_grad_value"), ("ema_decay", "polyak_from"))
"""Technique parameters of which a configuration holds at most one."""

COMMON = (
    Param("batch_size", 16, 256, power_of_two=True),
    Param("schedule", choices=SCHEDULE_KINDS),
    *SCHEDULE_PARAMS,
    Param("warmup", 0.0, 0.1, log=False, fixed=0.0),
    *TECHNIQUE_PARAMS,
)
"""Parameters every first-order optimizer has besides its own (see ``OptimizerEntry.space``)."""


def default_space(optimizer: str, *, data_task: bool) -> dict[str, Param]:
    """The default parameters of ``optimizer`` (its registry entry's space), and for first-order
    optimizers COMMON: no batch size for synthetic tasks, no lr or schedule for full-batch L-BFGS.
    An entry's own parameter replaces COMMON's of the same name (schedule-free fixes ``schedule``)."""
    entry = OPTIMIZERS[optimizer]
    params = {p.name: p for p in entry.space}
    if not entry.full_batch:
        params.update({p.name: p for p in COMMON if p.name not in params and (data_task or p.name != "batch_size")})
    return params


def resolve(optimizer: str, overrides: dict[str, Any], *, data_task: bool, where: str) -> list[Param]:
    """Apply study-file overrides: a value fixes a parameter, null drops it (the optimizer's
    default applies), ``{low, high[, log]}`` narrows a range, ``{choices: [...]}`` sets choices.

    Every fixed value, both ends of every range and every choice must build the optimizer and
    schedule (``check_value``): what passes here cannot fail a trial. ConfigError names
    ``where.NAME`` for an unknown parameter or a bad value.
    """
    space = default_space(optimizer, data_task=data_task)
    for name, value in overrides.items():
        field = f"{where}.{shown_key(name)}"
        if name not in space:
            raise ConfigError(f"{field}: unknown parameter for {optimizer}; allowed: {', '.join(space)}")
        space[name] = _override(optimizer, space[name], value, field, data_task)
    for pair in EXCLUSIVE:
        if all(name in space and not space[name].absent for name in pair):
            raise ConfigError(f"{where}.{pair[1]}: {pair[0]} is set too; allowed: one of {pair[0]}, {pair[1]}")
    chosen = _schedule_choices(space)
    for p in space.values():
        if p.schedule and p.name in overrides and p.schedule not in chosen:
            raise ConfigError(
                f"{where}.{p.name} is a parameter of schedule {p.schedule!r}, which is not chosen; "
                f"chosen: {', '.join(chosen)}"
            )
    return [p for p in space.values() if not p.absent and not (p.schedule and p.schedule not in chosen)]


_FORMS = "a value, null, {low, high[, log]} or {choices: [...]}"
CHECK_STEPS = 100
"""The run length the checks convert a schedule's fractions with (any length gives the same verdict)."""


def _schedule_choices(space: dict[str, Param]) -> tuple[str, ...]:
    schedule = space.get("schedule")
    if schedule is None:
        return ()
    return (schedule.fixed,) if not schedule.searched else schedule.choices


def _override(optimizer: str, param: Param, value: Any, field: str, data_task: bool) -> Param:
    def check(v: Any, where: str) -> None:
        check_value(optimizer, param.name, v, where, data_task=data_task)

    if value is None:
        if param.name in ("lr", "schedule"):
            raise ConfigError(f"{field}: cannot be dropped; give a value or a range")
        return replace(param, fixed=ABSENT)
    if isinstance(value, list):
        raise ConfigError(f"{field}={shown(value)}: a list is not allowed; allowed: {_FORMS}")
    if not isinstance(value, dict):
        check(value, field)
        return replace(param, fixed=value)
    if set(value) == {"choices"}:
        choices = value["choices"]
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{field}.choices={shown(choices)} is not allowed; allowed: a list of one or more values")
        for i, choice in enumerate(choices):
            if not (choice is None or isinstance(choice, (bool, int, float, str))):
                raise ConfigError(f"{field}.choices.{i}={shown(choice)} is not allowed; allowed: a single value")
            check(choice, f"{field}.choices.{i}")
        if len(set(map(repr, choices))) != len(choices):
            raise ConfigError(f"{field}.choices={shown(choices)}: each choice may appear once")
        return replace(param, choices=tuple(choices), fixed=None)
    keys = set(value)
    if not keys <= {"low", "high", "log"} or not {"low", "high"} <= keys:
        raise ConfigError(f"{field}={shown(value)} is not allowed; allowed: {_FORMS}")
    if param.choices is not None and param.low is None:
        raise ConfigError(f"{field}: is categorical; allowed: a value or {{choices: [...]}}")
    log = value.get("log", param.log)
    if not isinstance(log, bool):
        raise ConfigError(f"{field}.log={shown(log)} is not allowed; allowed: true or false")
    low, high = value["low"], value["high"]
    check(low, f"{field}.low")
    check(high, f"{field}.high")
    if low > high:
        raise ConfigError(f"{field}: low={shown(low)} > high={shown(high)}; allowed: low <= high")
    if log and not param.one_minus and low <= 0:
        raise ConfigError(f"{field}.low={shown(low)}: a log-scale range needs low > 0 (or log: false)")
    if log and param.one_minus and high >= 1:
        raise ConfigError(f"{field}.high={shown(high)}: a range sampled as 1 - value on a log scale needs "
                          "high < 1 (or log: false)")
    return replace(param, low=low, high=high, log=log, fixed=None, choices=None)


def check_value(optimizer: str, name: str, value: Any, field: str, *, data_task: bool) -> None:
    """Raise ConfigError naming ``field`` unless ``value`` for parameter ``name`` of ``optimizer``
    builds the optimizer and schedule (``instantiate``), every other parameter at its default:
    the same constructor checks a trial's configuration passes, in the same code."""
    space = default_space(optimizer, data_task=data_task)
    param = space[name]
    if param.choices is None or param.low is not None:  # a number
        whole = param.integer or param.power_of_two
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (whole and not isinstance(value, int)):
            kind = "an integer" if whole else "a number"
            raise ConfigError(f"{field}={shown(value)} is not allowed; allowed: {kind}, or a range or choices of them")
        if not math.isfinite(value):
            raise ConfigError(f"{field}={shown(value)} is not allowed; allowed: a finite number")
        if param.power_of_two and not (value >= 1 and math.log2(value).is_integer()):
            raise ConfigError(f"{field}={shown(value)} is not allowed; allowed: a power of two (1, 2, 4, ...)")
    values = {p.name: _typical(p) for p in space.values() if p.schedule is None and not p.absent}
    if param.schedule is not None:
        values["schedule"] = param.schedule
        values.update({p.name: _typical(p) for p in space.values() if p.schedule == param.schedule})
    values[name] = value
    try:
        instantiate(to_config(optimizer, values, CHECK_STEPS))
    except ConfigError as exc:
        if exc.allowed is None:
            raise ConfigError(f"{field}={shown(value)}: {exc}") from None
        raise ConfigError(f"{field}={shown(value)} is not allowed; allowed: {exc.allowed}") from None


def _typical(param: Param) -> Any:
    """A valid value of a default parameter: its fixed value, else its first choice or low end."""
    if not param.searched:
        return param.fixed
    return param.choices[0] if param.choices is not None else param.low


def instantiate(config: dict[str, Any]) -> tuple[Any, Schedule | None]:
    """A configuration (as ``to_config`` makes it) -> its optimizer and schedule; ConfigError
    from their constructors if a value is not allowed."""
    options = {k: v for k, v in config.items() if k not in ("optimizer", "lr", "batch_size", "schedule")}
    optimizer = make_optimizer(config["optimizer"], **options)
    if "schedule" not in config:
        return optimizer, None
    schedule = {k: v for k, v in config["schedule"].items() if k != "kind"}
    return optimizer, make_schedule(config["schedule"]["kind"], config["lr"], **schedule)


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


MAX_GRID_SIZE = 100_000
"""Optuna's GridSampler lists every point of its grid in memory (and no study runs that many trials)."""


def grid_space(params: list[Param], points: int, where: str = "samplers (grid)") -> dict[str, list]:
    """The search space of Optuna's GridSampler for ``params``; ConfigError names ``where`` when the
    space cannot be a grid or has more than MAX_GRID_SIZE points."""
    searched = [p for p in params if p.searched]
    schedule = next((p for p in params if p.name == "schedule"), None)
    if schedule is not None and schedule.searched and any(p.schedule for p in searched):
        raise ConfigError(
            f"{where}: the grid sampler cannot search a schedule choice together with its conditional "
            "parameters; fix the schedule to one kind (space: {schedule: cosine}) or drop its parameters"
        )
    grid = {p.optuna_name: p.grid(points) for p in searched}
    size = math.prod(len(values) for values in grid.values())
    if size > MAX_GRID_SIZE:
        raise ConfigError(
            f"{where}: the grid has {size:,} points ({points} per parameter over {len(grid)} parameters); "
            f"allowed: at most {MAX_GRID_SIZE:,} (fewer grid_points, or fix parameters)"
        )
    return grid


def to_config(optimizer: str, values: dict[str, Any], total_steps: int) -> dict[str, Any]:
    """Sampled values -> {"optimizer", constructor arguments, "lr", "batch_size", "schedule"}."""
    config: dict[str, Any] = {"optimizer": optimizer}
    options = {k: v for k, v in values.items()
               if k not in ("lr", "batch_size", "schedule", "warmup", "polyak_from") and k not in _SCHEDULE_NAMES}
    if "beta1" in options or "beta2" in options:
        default = OPTIMIZERS[optimizer].option_default("betas")
        config["betas"] = [float(options.pop("beta1", default[0])), float(options.pop("beta2", default[1]))]
    config.update({k: _plain(v) for k, v in options.items()})
    if OPTIMIZERS[optimizer].full_batch:
        return config
    config["lr"] = float(values["lr"])
    if "batch_size" in values:
        config["batch_size"] = int(values["batch_size"])
    config["schedule"] = schedule_config(values, config["lr"], total_steps)
    if "polyak_from" in values:
        fraction = check_range("polyak_from", values["polyak_from"], 0.0, 1.0, high_open=True)
        config["polyak_start"] = int(round(fraction * total_steps))
    return config


_SCHEDULE_NAMES = {p.name for p in SCHEDULE_PARAMS}


def schedule_config(values: dict[str, Any], lr: float, total_steps: int) -> dict[str, Any]:
    """The schedule in absolute steps, as ``tuner.schedules.make_schedule`` takes it."""
    kind = values.get("schedule", "constant")
    fraction = check_range("warmup", values.get("warmup", 0.0), 0.0, 1.0, high_open=True)
    if kind in SCHEDULES and not SCHEDULES[kind].warmup:
        fraction = 0.0  # one_cycle: its rise is its warm-up
    warmup = min(int(round(fraction * total_steps)), max(total_steps - 1, 0))
    decay_steps = max(total_steps - warmup, 1)
    schedule: dict[str, Any] = {"kind": kind}
    if kind == "step":
        every = check_range("step_every", values.get("step_every", 0.3), 0.0, 1.0, low_open=True)
        schedule["step_size"] = max(1, int(round(every * decay_steps)))
        schedule["gamma"] = float(values.get("step_gamma", 0.1))
    elif kind == "exponential":
        decay_to = check_range("decay_to", values.get("decay_to", 0.01), 0.0, 1.0, low_open=True)
        schedule["gamma"] = decay_to ** (1.0 / decay_steps)
    elif kind == "inverse_time":
        schedule["rate"] = float(values.get("inverse_rate", 10.0)) / decay_steps
    elif kind == "cosine":
        schedule["total_steps"] = decay_steps
        schedule["lr_min"] = check_range("cosine_floor", values.get("cosine_floor", 0.0), 0.0, 1.0) * lr
    elif kind == "inverse_sqrt":
        flat = check_range("inverse_sqrt_flat", values.get("inverse_sqrt_flat", 0.1), 0.0, 1.0, low_open=True)
        schedule["flat_steps"] = max(1, int(round(flat * decay_steps)))
    elif kind == "polynomial":
        schedule["total_steps"] = decay_steps
        schedule["power"] = float(values.get("poly_power", 1.0))
    elif kind == "one_cycle":
        rise = float(check_range("cycle_rise", values.get("cycle_rise", 0.3), 0.0, 1.0,
                                 low_open=True, high_open=True))
        while rise * decay_steps - 1 == 0:  # a rise ending exactly at step 0: OneCycleLR divides 0 by 0
            rise = math.nextafter(rise, 1.0)
        schedule.update(total_steps=decay_steps, pct_start=rise, anneal_strategy=values.get("cycle_anneal", "cos"),
                        div_factor=float(values.get("cycle_div", 25.0)),
                        final_div_factor=float(values.get("cycle_final_div", 1e4)))
    elif kind == "cosine_restarts":
        period = check_range("restart_period", values.get("restart_period", 0.1), 0.0, 1.0, low_open=True)
        schedule["period"] = max(1, int(round(period * decay_steps)))
        schedule["period_mult"] = values.get("restart_mult", 1)
        schedule["lr_min"] = check_range("restart_floor", values.get("restart_floor", 0.0), 0.0, 1.0) * lr
    elif kind == "wsd":
        cooldown = check_range("wsd_decay", values.get("wsd_decay", 0.2), 0.0, 1.0, low_open=True)
        schedule["total_steps"] = decay_steps
        schedule["cooldown_steps"] = max(1, int(round(cooldown * decay_steps)))
        schedule["cooldown"] = values.get("wsd_cooldown", "linear")
    if warmup:
        schedule["warmup_steps"] = warmup
    return schedule


def _plain(value: Any) -> Any:
    """numpy scalars -> Python values, so configs serialise as JSON."""
    return value.item() if hasattr(value, "item") else value


def from_config(config: dict[str, Any], total_steps: int) -> dict[str, Any]:
    """The inverse of ``to_config``: a run's configuration -> values in search-space terms
    (what a study file fixes). Integer step counts make the schedule's fractions approximate."""
    values = {k: v for k, v in config.items() if k not in ("optimizer", "betas", "schedule", "polyak_start")}
    if "polyak_start" in config:
        values["polyak_from"] = config["polyak_start"] / total_steps
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
    elif kind == "inverse_sqrt":
        values["inverse_sqrt_flat"] = schedule["flat_steps"] / decay_steps
    elif kind == "polynomial":
        values["poly_power"] = schedule["power"]
    elif kind == "one_cycle":
        values.update(cycle_rise=schedule["pct_start"], cycle_div=schedule["div_factor"],
                      cycle_final_div=schedule["final_div_factor"], cycle_anneal=schedule["anneal_strategy"])
    elif kind == "cosine_restarts":
        values.update(restart_period=schedule["period"] / decay_steps, restart_mult=schedule["period_mult"],
                      restart_floor=schedule["lr_min"] / config["lr"])
    elif kind == "wsd":
        values.update(wsd_decay=schedule["cooldown_steps"] / decay_steps, wsd_cooldown=schedule["cooldown"])
    if warmup:
        values["warmup"] = warmup / total_steps
    return values
