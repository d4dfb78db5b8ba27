"""The study file (``studies/*.yaml``), validated with pydantic.

    name: quickstart                     # the experiment's name
    task: {name: mlp, options: {hidden_sizes: [64]}}
    space: {schedule: {choices: [constant, cosine]}}     # for every optimizer that has it
    optimizers: [sgd, {name: adam, space: {lr: {low: 1e-4, high: 1e-1}, eps: null}}]
    samplers: [random, {name: tpe, seed: 1}]
    trials: 30                           # per study; one study per optimizer, sampler, repeat
    repeats: 1
    budget: {epochs: 10}                 # data tasks count epochs, synthetic ones steps
    objective: final_val_loss            # or {name: steps_to_target, target: 1e-3}; rate (synthetic)
    pruner: none                         # median, hyperband
    reevaluate: 5                        # fresh seeds for each study's best configuration
    population: auto                     # trials trained together in one vectorised pass: auto, N or 1
    storage: sqlite:///tuner.db          # optional; --storage and TUNER_STORAGE win
"""

import math
import unicodedata
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tuner.errors import ConfigError, from_validation_error, shown, shown_key
from tuner.optim import OPTIMIZERS
from tuner.safe_yaml import load_yaml
from tuner.samplers import PRUNERS, SAMPLERS
from tuner.space import Param, default_space, grid_space, resolve
from tuner.tasks import TASKS, is_synthetic, task_options
from tuner.urls import check_url

OBJECTIVES: dict[str, bool] = {
    "final_val_loss": True,
    "best_val_loss": True,
    "final_train_loss": False,
    "train_auc": False,
    "steps_to_target": False,
    "rate": False,
}
"""What Optuna minimises (computed by ``tuner.objective.objective_value``), and whether it needs
validation data (which synthetic tasks have not)."""
SYNTHETIC_OBJECTIVES = ("rate",)
"""Objectives of synthetic tasks only: ``rate`` fits the noise-free loss at every step
(``tuner.theory.convergence_rate``); a data task records minibatch losses and one validation loss
per evaluation, whose plateau is the data's, not the optimizer's."""

# The names a study file allows, from the registries; pydantic lists them in its error messages.
OptimizerName = Literal[tuple(OPTIMIZERS)]
SamplerName = Literal[tuple(SAMPLERS)]
PrunerName = Literal[tuple(PRUNERS)]
ObjectiveName = Literal[tuple(OBJECTIVES)]


MAX_POPULATION = 65_536
"""The most trials a study file may ask to train together."""


class _Strict(BaseModel):
    """Unknown fields are refused, and values are not coerced: ``trials: true`` is not 1."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def checked_url(value: str | None) -> str | None:
    """A file's ``storage:``: a URL tuner can use (``urls.check_url``), or None."""
    if value is not None:
        check_url(value)
    return value


def _named(value: Any) -> Any:
    """Allow ``adam`` as shorthand for ``{name: adam}``."""
    return {"name": value} if isinstance(value, str) else value


class TaskSpec(_Strict):
    name: str
    options: dict[str, Any] = {}

    @model_validator(mode="after")
    def _known(self) -> "TaskSpec":
        if self.name not in TASKS:
            raise ValueError(f"task.name={shown(self.name)} is unknown; allowed: {', '.join(TASKS)}")
        task_options(self.name, self.options)
        return self


class OptimizerSpec(_Strict):
    name: OptimizerName
    space: dict[str, Any] = {}


class SamplerSpec(_Strict):
    name: SamplerName
    seed: int = Field(0, ge=0)
    grid_points: int = Field(4, ge=2, le=100, description="values per searched parameter (grid only)")


class Budget(_Strict):
    epochs: int | None = Field(None, gt=0, le=100_000)
    steps: int | None = Field(None, gt=0, le=100_000_000)
    eval_every: int = Field(1, gt=0, description="epochs (data tasks) or steps (synthetic) between evaluations")
    patience: int | None = Field(None, gt=0, le=100_000, description=(
        "early stopping: evaluations without a new best validation loss (loss on synthetic tasks) "
        "before a run stops, complete, judged at its best evaluation; off when unset"))


class ObjectiveSpec(_Strict):
    name: ObjectiveName = "final_val_loss"
    target: float | None = Field(None, gt=0, description="loss to reach, for steps_to_target")

    @model_validator(mode="after")
    def _target(self) -> "ObjectiveSpec":
        if (self.name == "steps_to_target") != (self.target is not None):
            raise ValueError("target is required by steps_to_target and allowed only there")
        return self


class SuiteMember(_Strict):
    """What makes an experiment one task of a suite (``tuner.suite``, which sets it): the suite's
    name, every task's name in the suite's order, and this task's target (the loss to reach,
    checked on ``tuner.suite.target_series``)."""

    suite: str = Field(min_length=1)
    tasks: list[str] = Field(min_length=1)
    target: float = Field(gt=0, allow_inf_nan=False)

    @property
    def experiment_names(self) -> list[str]:
        """THE naming rule of a suite's experiments, in its tasks' order: ``SUITE/TASK``."""
        return [f"{self.suite}/{task}" for task in self.tasks]


class Experiment(_Strict):
    name: str = Field(min_length=1, max_length=200)
    description: str = ""
    task: TaskSpec
    space: dict[str, Any] = Field({}, description="overrides for every optimizer that has the parameter")
    optimizers: list[OptimizerSpec] = Field(min_length=1)
    samplers: list[SamplerSpec] = Field(min_length=1)
    trials: int = Field(gt=0, le=1_000_000)
    repeats: int = Field(1, gt=0, le=1000)
    budget: Budget
    objective: ObjectiveSpec = ObjectiveSpec()
    pruner: PrunerName = "none"
    reevaluate: int = Field(5, ge=0, le=1000, description="fresh seeds re-running each study's best configuration")
    population: Literal["auto"] | int = Field("auto", description=(
        "trials of a study trained together, as one set of array operations over a population axis: "
        "auto (sized by a memory and time budget; CMA-ES: one generation), a number N (CMA-ES: its "
        "population size), or 1 (one trial at a time); L-BFGS always trains one at a time"))
    storage: str | None = None
    in_suite: SuiteMember | None = Field(None, description="set by tuner.suite for each task of a suite file")

    _named_lists = field_validator("optimizers", "samplers", mode="before")(
        lambda v: [_named(item) for item in v] if isinstance(v, list) else v
    )
    _named_objective = field_validator("objective", mode="before")(_named)

    @field_validator("name")
    @classmethod
    def _printable(cls, value: str) -> str:
        bad = next((c for c in value if unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp")), None)
        if bad is not None:
            raise ValueError(f"name={shown(value)} contains the control character U+{ord(bad):04X}; "
                             "allowed: printable characters (no NUL, newline or terminal escape)")
        if value != value.strip():
            raise ValueError(f"name={shown(value)} starts or ends with a space; allowed: a name without")
        return value

    _url = field_validator("storage")(checked_url)

    @field_validator("population", mode="before")
    @classmethod
    def _population(cls, value: Any) -> str | int:
        if value == "auto" or (type(value) is int and 1 <= value <= MAX_POPULATION):
            return value
        raise ValueError(f"population={shown(value)} is not allowed; allowed: auto, or a whole number from 1 to "
                         f"{MAX_POPULATION}")

    @model_validator(mode="after")
    def _consistent(self) -> "Experiment":
        names = {"optimizers": [o.name for o in self.optimizers], "samplers": [s.name for s in self.samplers]}
        for kind, items in names.items():
            if len(set(items)) != len(items):
                raise ValueError(f"{kind}: each name may appear once; got {shown(items)}")
        synthetic = is_synthetic(self.task.name)
        if synthetic and (self.budget.steps is None or self.budget.epochs is not None):
            raise ValueError(
                f"budget: task {self.task.name!r} is synthetic and counts steps; allowed: budget.steps only"
            )
        if not synthetic and (self.budget.epochs is None or self.budget.steps is not None):
            raise ValueError(
                f"budget: task {self.task.name!r} trains on data and counts epochs; allowed: budget.epochs only"
            )
        if not synthetic and self.objective.name in SYNTHETIC_OBJECTIVES:
            allowed = ", ".join(name for name in OBJECTIVES if name not in SYNTHETIC_OBJECTIVES)
            raise ValueError(
                f"objective={self.objective.name!r} needs the noise-free loss of a synthetic task, which task "
                f"{self.task.name!r} (trained on data) has not; allowed: {allowed}"
            )
        if synthetic and OBJECTIVES[self.objective.name]:
            allowed = ", ".join(name for name, validation in OBJECTIVES.items() if not validation)
            raise ValueError(
                f"objective={self.objective.name!r} needs validation data, which task {self.task.name!r} has not; "
                f"allowed: {allowed}"
            )
        grid = next((i for i, s in enumerate(self.samplers) if s.name == "grid"), None)
        for index, optimizer in enumerate(self.optimizers):
            space = self.search_space(optimizer.name)
            if grid is not None:
                grid_space(space, self.samplers[grid].grid_points,
                           where=f"samplers.{grid} (grid) with optimizers.{index} ({optimizer.name})")
        return self

    @model_validator(mode="after")
    def _suite_name(self) -> "Experiment":
        if self.in_suite is not None and self.name not in self.in_suite.experiment_names:
            raise ValueError(f"name={shown(self.name)} is not a task of suite {shown(self.in_suite.suite)}; "
                             f"allowed: {', '.join(self.in_suite.experiment_names)}")
        return self

    def search_space(self, optimizer: str) -> list[Param]:
        """The resolved search space of ``optimizer``."""
        index = [o.name for o in self.optimizers].index(optimizer)
        spec = self.optimizers[index]
        data_task = not is_synthetic(self.task.name)
        known = default_space(spec.name, data_task=data_task)
        shared = {k: v for k, v in self.space.items() if k in known}
        for name in self.space:
            if not any(name in default_space(o.name, data_task=data_task) for o in self.optimizers):
                raise ConfigError(f"space.{name}: no optimizer of this experiment has this parameter")
        try:
            return resolve(spec.name, {**shared, **spec.space}, data_task=data_task, where=f"optimizers.{index}.space")
        except ConfigError as exc:
            if any(f"space.{k}" in str(exc) for k in shared if k not in spec.space):
                raise ConfigError(str(exc).replace(f"optimizers.{index}.space", "space")) from None
            raise

    @property
    def evaluations(self) -> int:
        """How many times a full-budget run is evaluated."""
        length = self.budget.epochs or self.budget.steps
        return -(-length // self.budget.eval_every)


def parse_experiment(data: Any, source: str = "study file") -> Experiment:
    """Validate parsed YAML; ConfigError lists every problem as ``field.path=value: allowed``."""
    if data is None:
        raise ConfigError(f"{source}: the file is empty; a study file needs name, task, optimizers, samplers, "
                          "trials and budget (see studies/quickstart.yaml)")
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of fields (name: ..., task: ..., optimizers: ...); "
                          f"got {_kind(data)}")
    _check_plain(data, "")
    if "in_suite" in data:
        raise ConfigError(f"{source}: in_suite is not allowed in a study file; it is set by tuner launch of a suite "
                          "file (see suites/algoperf_small.yaml)")
    try:
        return Experiment.model_validate(data)
    except ValidationError as exc:
        raise from_validation_error(exc) from None


STORED_POPULATION = 1
"""``population`` of an experiment stored before the field existed: trials one at a time, as then
(``auto`` would change what TPE and CMA-ES propose on resume)."""


def stored_experiment(data: dict[str, Any], name: str) -> Experiment:
    """The study file experiment ``name`` stored, as this tuner reads it (fields it stored without
    get their defaults, ``population`` STORED_POPULATION); ConfigError, in one line, when another
    version of tuner stored fields or names this one does not know."""
    try:
        return Experiment.model_validate({"population": STORED_POPULATION, **data})
    except ValidationError as exc:
        problem = str(from_validation_error(exc)).splitlines()[0]
        raise ConfigError(f"experiment {shown(name)} was stored by another version of tuner, whose study file "
                          f"does not read here ({problem}); use that version") from None


def load_experiment(path: str | Path) -> Experiment:
    """Read (see ``tuner.safe_yaml``) and validate a study file."""
    return parse_experiment(load_yaml(path), str(path))


def _check_plain(data: Any, path: str) -> None:
    """Every key in a study file is text, every value plain YAML data (no ``!!set`` or ``!!binary``)
    and every number finite: NaN and infinity are no setting of anything."""
    if isinstance(data, float) and not math.isfinite(data):
        raise ConfigError(f"{path or 'study file'}={shown(data)} is not allowed; allowed: a finite number")
    if not isinstance(data, (dict, list, str, int, float, bool, type(None))):  # !!set, !!binary, !!timestamp
        raise ConfigError(f"{path or 'study file'}: {_kind(data)} is not allowed; allowed: text, numbers, "
                          "true/false, null, lists and mappings")
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
    for key, value in items:
        field = f"{path}.{shown_key(key)}" if path else shown_key(key)
        if isinstance(data, dict) and not isinstance(key, str):
            raise ConfigError(f"{field}: a key must be a name (text); got {_kind(key)}")
        _check_plain(value, field)


def _kind(value: Any) -> str:
    names = {list: "a list", dict: "a mapping", str: "a string", int: "a number", float: "a number",
             bool: "true or false", type(None): "null"}
    return names.get(type(value), f"a value of YAML type {type(value).__name__}")
