"""The suite file (``suites/*.yaml``): one set of optimizers and samplers over several tasks, each
with a target, validated with pydantic; ``tuner launch`` runs it, ``tuner best --suite`` ranks
its optimizers across the tasks (``tuner.suite_scores``, ``tuner.profiles``).

    suite: algoperf_small                # the suite's name; task T is the experiment SUITE/T
    description: ...
    protocol: algoperf                   # sets samplers, trials, repeats and pruner (PROTOCOLS)
    space: {batch_size: 64}              # ONE search space, shared by every task
    optimizers: [sgd, nesterov, adam]
    tasks:
      - name: quadratic_k100
        task: {name: quadratic, options: {condition_number: 100}}
        budget: {steps: 400, eval_every: 10}
        target: 1.0e-6                   # the loss to reach (checked on target_series)
    reevaluate: 0                        # the suite's scores use none; 0 unless set
    storage: sqlite:///tuner.db          # optional; --storage and TUNER_STORAGE win

Without ``protocol``, ``samplers`` and ``trials`` are required (``repeats`` 1, ``pruner`` none
unless set), as in a study file. A suite expands into ordinary experiments (``experiments``),
each a valid study file that records its place in the suite (``spec.SuiteMember``), so every
command works on them. A file is a suite file when it has a top-level ``suite`` key (``is_suite``).
"""

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from tuner.errors import ConfigError, from_validation_error, shown
from tuner.safe_yaml import load_yaml
from tuner.space import default_space
from tuner.spec import (
    Budget,
    Experiment,
    OptimizerSpec,
    PrunerName,
    SamplerSpec,
    SuiteMember,
    TaskSpec,
    _check_plain,
    _kind,
    _named,
    _Strict,
    checked_url,
)
from tuner.tasks import is_synthetic

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
NAME_RULE = "letters, digits, '_', '.' and '-' (a letter or digit first), at most 64 characters"
"""Suite and task names: each is part of an experiment's name (``SUITE/TASK``), so no '/' in either."""


@dataclass(frozen=True)
class Protocol:
    """A tuning protocol a suite can name: the samplers, trials per study, studies (repeats) and
    pruner of every task's experiment."""

    samplers: tuple[str, ...]
    trials: int
    repeats: int
    pruner: str
    description: str


PROTOCOLS: dict[str, Protocol] = {
    "algoperf": Protocol(
        ("qmc",), 5, 3, "none",
        "AlgoPerf's external tuning: 5 quasi-random trials in each of 3 studies, no pruning; t is the median "
        "over the studies of the fastest trial's time to target"),
}
ProtocolName = Literal[tuple(PROTOCOLS)]
PROTOCOL_FIELDS = ("samplers", "trials", "repeats", "pruner")
"""The fields a protocol sets, which a suite naming one leaves out."""


def target_series(task: str) -> str:
    """THE curve a task's target is checked on, at each evaluation (as AlgoPerf checks its
    validation targets; ``eval_every`` sets the resolution): a synthetic task's whole training
    objective (``loss``), a data task's validation loss (``val_loss``)."""
    return "loss" if is_synthetic(task) else "val_loss"


def task_objective(task: str, target: float) -> dict[str, Any]:
    """The objective of a task's experiment: on a synthetic task the steps to ``target``
    (``steps_to_target``, on the per-step loss: the evaluated one, step by step), on a data task
    the best validation loss (the target is reached exactly when it is <= the target). It ranks
    the experiment's own configurations (``tuner best SUITE/TASK``) and guides model-based
    samplers; the suite's scores are computed from the curves (``tuner.suite_scores``)."""
    return {"name": "steps_to_target", "target": target} if is_synthetic(task) else {"name": "best_val_loss"}


def _check_name(value: str) -> str:
    if not NAME.fullmatch(value):
        raise ValueError(f"allowed: {NAME_RULE}")
    return value


class SuiteTask(_Strict):
    """One task of a suite: its name in the suite, the task with its options, its budget and target."""

    name: str
    task: TaskSpec
    budget: Budget
    target: float = Field(gt=0, allow_inf_nan=False, description="the loss to reach, on target_series(task)")

    _task_name = field_validator("name")(_check_name)


class Suite(_Strict):
    """A suite file, validated whole: every task's experiment is a valid study file."""

    suite: str
    description: str = ""
    protocol: ProtocolName | None = None
    space: dict[str, Any] = Field({}, description="the search space every task shares")
    optimizers: list[OptimizerSpec] = Field(min_length=1)
    samplers: list[SamplerSpec] | None = None
    trials: int | None = Field(None, gt=0, le=1_000_000)
    repeats: int | None = Field(None, gt=0, le=1000)
    pruner: PrunerName | None = None
    reevaluate: int = Field(0, ge=0, le=1000, description="the scores use no re-evaluation")
    storage: str | None = None
    tasks: list[SuiteTask] = Field(min_length=1)

    _named_lists = field_validator("optimizers", "samplers", mode="before")(
        lambda v: [_named(item) for item in v] if isinstance(v, list) else v
    )
    _suite_name = field_validator("suite")(_check_name)

    _url = field_validator("storage")(checked_url)

    @model_validator(mode="after")
    def _consistent(self) -> "Suite":
        if self.protocol is not None:
            given = [field for field in PROTOCOL_FIELDS if getattr(self, field) is not None]
            if given:
                raise ValueError(f"{given[0]}: set by protocol {self.protocol!r}; leave it out, or leave out "
                                 "protocol to choose samplers, trials, repeats and pruner")
        else:
            missing = [field for field in ("samplers", "trials") if getattr(self, field) is None]
            if missing:
                raise ValueError(f"{missing[0]}: required field is missing (or name a protocol: "
                                 f"{', '.join(PROTOCOLS)})")
        names = [task.name for task in self.tasks]
        if len(set(names)) != len(names):
            raise ValueError(f"tasks: each name may appear once; got {shown(names)}")
        self.experiments()  # every task's experiment is valid: a suite that loads can be launched
        return self

    def experiments(self) -> list[Experiment]:
        """One experiment per task, in the suite's order, named ``SUITE/TASK``: the shared space
        and optimizers, the protocol's (or the suite's) samplers, trials, repeats and pruner, the
        task's budget, ``task_objective``, and the membership (``spec.SuiteMember``). On a
        synthetic task, the parameters only data tasks have (batch_size) are left out of the
        space. ConfigError naming the task when one is not a valid study file."""
        protocol = PROTOCOLS.get(self.protocol) if self.protocol else None
        shared = {
            "samplers": ([{"name": name} for name in protocol.samplers] if protocol
                         else [s.model_dump() for s in self.samplers]),
            "trials": protocol.trials if protocol else self.trials,
            "repeats": protocol.repeats if protocol else self.repeats or 1,
            "pruner": protocol.pruner if protocol else self.pruner or "none",
            "reevaluate": self.reevaluate,
            "storage": self.storage,
        }
        tasks = [task.name for task in self.tasks]
        out = []
        for index, task in enumerate(self.tasks):
            synthetic = is_synthetic(task.task.name)
            member = SuiteMember(suite=self.suite, tasks=tasks, target=task.target)
            data = {
                "name": member.experiment_names[index],
                "description": f"task {task.name} of suite {self.suite}" + (
                    f": {self.description}" if self.description else ""),
                "task": task.task.model_dump(),
                "space": self._for_task(self.space, synthetic),
                "optimizers": [{"name": o.name, "space": self._for_task(o.space, synthetic)} for o in self.optimizers],
                **shared,
                "budget": task.budget.model_dump(),
                "objective": task_objective(task.task.name, task.target),
                "in_suite": member.model_dump(),
            }
            try:
                out.append(Experiment.model_validate(data))
            except ValidationError as exc:
                problem = str(from_validation_error(exc))
                raise ConfigError("\n".join(f"tasks.{index} ({task.name}): {line}"
                                            for line in problem.splitlines())) from None
        return out

    def _for_task(self, space: dict[str, Any], synthetic: bool) -> dict[str, Any]:
        """``space`` without the parameters a synthetic task's optimizers do not have (those of
        data tasks only: the batch size) when ``synthetic``."""
        if not synthetic:
            return dict(space)
        names = [o.name for o in self.optimizers]
        data_only = ({p for name in names for p in default_space(name, data_task=True)}
                     - {p for name in names for p in default_space(name, data_task=False)})
        return {k: v for k, v in space.items() if k not in data_only}


def is_suite(data: Any) -> bool:
    """Whether parsed YAML is a suite file (a top-level ``suite`` key) rather than a study file."""
    return isinstance(data, dict) and "suite" in data


def parse_suite(data: Any, source: str = "suite file") -> Suite:
    """Validate parsed YAML; ConfigError lists every problem as ``field.path=value: allowed``."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of fields (suite: ..., optimizers: ..., tasks: ...); "
                          f"got {_kind(data)}")
    _check_plain(data, "")
    try:
        return Suite.model_validate(data)
    except ValidationError as exc:
        raise from_validation_error(exc) from None


def load_suite(path: str | Path) -> Suite:
    """Read (see ``tuner.safe_yaml``) and validate a suite file."""
    return parse_suite(load_yaml(path), str(path))
