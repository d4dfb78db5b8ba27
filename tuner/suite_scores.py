"""A suite's results from storage: its experiments, each optimizer's time to target per task under
the suite's protocol, the ratios, profiles and AlgoPerf scores (``tuner.profiles``), and the score
table as the terminal, JSON and CSV show it.

A suite's experiments are those whose stored study file names it (``spec.SuiteMember``, set by
``tuner.suite``); each lists every task of the suite, so a task not launched yet is known missing.

The time of one trial is its run's first evaluation at or under the task's target
(``profiles.time_to_target`` on ``suite.target_series``), in steps or seconds; a study keeps the
trials of its budget (the first ``trials`` finished, by trial number: a study that ran more, as
parallel workers may, gets no extra chance), and t_{s,w} is ``profiles.protocol_time`` over the
studies of optimizer and sampler s on task w.
"""

import csv
import io
import json
from dataclasses import dataclass

import numpy as np
from rich.table import Table
from sqlalchemy import Engine

from tuner.errors import ConfigError, shown
from tuner.profiles import R_MAX, algoperf_score, performance_ratios, protocol_time, time_to_target
from tuner.spec import Experiment, stored_experiment
from tuner.storage import queries
from tuner.suite import target_series

UNITS = ("steps", "seconds")
"""What a time to target is counted in."""


@dataclass(frozen=True)
class TaskTarget:
    """One task of a suite: its name in the suite, the task it trains, and the value of the curve
    ``series`` to reach."""

    name: str
    task: str
    series: str
    target: float


@dataclass(frozen=True)
class SuiteScores:
    """A suite's results: ``times`` t_{s,w} (+inf where missed), ``ratios`` r_{s,w} and ``scores``
    B_s for each solver s (an optimizer with its sampler, rows in the suite's order) and task w
    (columns), over ``studies`` studies of ``trials`` trials each."""

    suite: str
    unit: str
    tasks: list[TaskTarget]
    solvers: list[tuple[str, str]]
    times: np.ndarray
    ratios: np.ndarray
    scores: np.ndarray
    studies: int
    trials: int

    @property
    def reached(self) -> np.ndarray:
        """Per solver: on how many tasks it reached the target."""
        return np.isfinite(self.times).sum(axis=1)

    @property
    def order(self) -> list[int]:
        """Solver indices, the best score first (equal scores in the suite's order)."""
        return sorted(range(len(self.solvers)), key=lambda i: -self.scores[i])

    def rank(self, index: int) -> int:
        """Solver ``index``'s rank: 1 + how many solvers scored higher (equal scores share a rank)."""
        return 1 + int((self.scores > self.scores[index]).sum())

    @property
    def unreached(self) -> list[str]:
        """The tasks whose target no solver reached: a miss for everyone, which ranks nobody."""
        return [task.name for task, reached in zip(self.tasks, np.isfinite(self.times).any(axis=0), strict=True)
                if not reached]


def suite_names(engine: Engine) -> list[str]:
    """Every suite with an experiment in the storage, in the order their first experiments were made."""
    names: dict[str, None] = {}
    for _, _, spec in queries.experiment_specs(engine):
        if isinstance(member := spec.get("in_suite"), dict) and isinstance(member.get("suite"), str):
            names.setdefault(member["suite"])
    return list(names)


def _stored(engine: Engine, suite: str) -> dict[str, tuple[int, Experiment]]:
    """The experiments of ``suite`` in the storage, by name: their ids and study files."""
    return {name: (experiment_id, stored_experiment(spec, name))
            for experiment_id, name, spec in queries.experiment_specs(engine)
            if isinstance(member := spec.get("in_suite"), dict) and member.get("suite") == suite}


def stored_tasks(engine: Engine, suite: str) -> list[str] | None:
    """The tasks of ``suite`` as its stored experiments list them; None when it has none stored."""
    return _agreed_tasks(suite, _stored(engine, suite))


def _agreed_tasks(suite: str, stored: dict[str, tuple[int, Experiment]]) -> list[str] | None:
    """The tasks every one of ``stored`` lists; ConfigError when they disagree (suite files of
    one name with other tasks were launched)."""
    lists = {tuple(spec.in_suite.tasks) for _, spec in stored.values()}
    if len(lists) > 1:
        raise ConfigError(f"the experiments of suite {shown(suite)} list different tasks "
                          f"({'; '.join(', '.join(tasks) for tasks in sorted(lists))})")
    return list(lists.pop()) if lists else None


def members(engine: Engine, suite: str) -> list[tuple[int, Experiment]]:
    """The ids and study files of every experiment of ``suite``, in its tasks' order. ConfigError
    for a suite the storage does not have (listing those it has), or one with an experiment not
    in the storage (naming them and the command that runs them)."""
    stored = _stored(engine, suite)
    if not stored:
        known = suite_names(engine)
        listing = queries.shown_names(known) if known else "none yet: run tuner launch SUITE_FILE"
        raise ConfigError(f"suite {shown(suite)} is not in this storage; suites: {listing}")
    _agreed_tasks(suite, stored)
    names = next(iter(stored.values()))[1].in_suite.experiment_names
    missing = [name for name in names if name not in stored]
    if missing:
        raise ConfigError(f"suite {shown(suite)} has {len(missing)} of its {len(names)} experiments not in this "
                          f"storage ({queries.shown_names(missing)}); run them: tuner launch SUITE_FILE "
                          f"(the suite file whose suite: is {shown(suite)})")
    return [stored[name] for name in names]


def scores(engine: Engine, suite: str, unit: str = "steps") -> SuiteScores:
    """The results of ``suite`` with times to target in ``unit`` (UNITS). ConfigError as ``members``,
    and for a suite whose studies have not all finished their trials (naming the experiments)."""
    if unit not in UNITS:
        raise ConfigError(f"unit={shown(unit)} is not allowed; allowed: {', '.join(UNITS)}")
    experiments = members(engine, suite)
    first = experiments[0][1]
    solvers = [(o.name, s.name) for o in first.optimizers for s in first.samplers]
    times = np.full((len(solvers), len(experiments)), np.inf)
    unfinished = []
    for column, (experiment_id, spec) in enumerate(experiments):
        per_solver, done, budget = _protocol_times(engine, experiment_id, spec, unit)
        if done < budget:
            unfinished.append(f"{spec.name} {done} of {budget}")
        for row, solver in enumerate(solvers):
            times[row, column] = per_solver.get(solver, np.inf)
    if unfinished:
        raise ConfigError(f"suite {shown(suite)} has experiments still running or stopped before their budget "
                          f"(trials finished: {', '.join(unfinished)}); finish them: tuner launch SUITE_FILE "
                          f"(the suite file whose suite: is {shown(suite)})")
    ratios = performance_ratios(times)
    tasks = [TaskTarget(name, spec.task.name, target_series(spec.task.name), spec.in_suite.target)
             for name, (_, spec) in zip(first.in_suite.tasks, experiments, strict=True)]
    return SuiteScores(suite, unit, tasks, solvers, times, ratios, algoperf_score(ratios), first.repeats,
                       first.trials)


def _protocol_times(engine: Engine, experiment_id: int, spec: Experiment,
                    unit: str) -> tuple[dict[tuple[str, str], float], int, int]:
    """t per (optimizer, sampler) on one experiment (``profiles.protocol_time`` over its studies,
    each keeping the first ``n_trials`` finished trials), and its trials finished towards the
    budget and the budget."""
    studies = queries.studies(engine, experiment_id)
    times: dict[tuple[str, str, int], list[float]] = {(r.optimizer, r.sampler, r.repeat): [] for r in studies}
    for run in queries.trial_series(engine, experiment_id, target_series(spec.task.name)):
        reached = time_to_target(run["steps"], run["seconds"], run["values"], spec.in_suite.target)
        times[run["optimizer"], run["sampler"], run["repeat"]].append(getattr(reached, unit))
    kept = {(r.optimizer, r.sampler, r.repeat): times[r.optimizer, r.sampler, r.repeat][:r.n_trials] for r in studies}
    per_solver: dict[tuple[str, str], list[list[float]]] = {}
    for (optimizer, sampler, _), trial_times in kept.items():
        per_solver.setdefault((optimizer, sampler), []).append(trial_times)
    done = sum(len(trial_times) for trial_times in kept.values())
    return ({solver: protocol_time(per_study) for solver, per_study in per_solver.items()}, done,
            sum(r.n_trials for r in studies))


def _time(value: float, unit: str) -> str:
    if not np.isfinite(value):
        return "-"
    return f"{value:.0f}" if unit == "steps" else f"{value:.3g}s"


def _ratio(value: float) -> str:
    return f"{value:.2f}" if np.isfinite(value) else "-"


def table(result: SuiteScores) -> Table:
    """The score table, best first: rank, optimizer, sampler, score B_s, tasks reached, and each
    task's ratio r_{s,w} ("-" where the target was missed)."""
    out = Table(title=f"suite {result.suite}: AlgoPerf score over {len(result.tasks)} tasks, and the ratio of each "
                      f"task's time to target to the fastest ({result.unit}; scored up to r_max = {R_MAX:g})",
                title_justify="left")
    for column in ("rank", "optimizer", "sampler", "score", "reached", *(task.name for task in result.tasks)):
        out.add_column(column, overflow="fold", justify="left" if column in ("optimizer", "sampler") else "right")
    for i in result.order:
        out.add_row(str(result.rank(i)), *result.solvers[i], f"{result.scores[i]:.3f}",
                    f"{result.reached[i]}/{len(result.tasks)}", *(_ratio(r) for r in result.ratios[i]))
    return out


def time_table(result: SuiteScores) -> Table:
    """Each task's time to target t_{s,w} in the order of ``table`` ("-" where missed)."""
    out = Table(title=f"time to target ({result.unit}): median over {result.studies} studies of the fastest of "
                      f"{result.trials} trials", title_justify="left")
    for column in ("optimizer", "sampler", *(task.name for task in result.tasks)):
        out.add_column(column, overflow="fold", justify="left" if column in ("optimizer", "sampler") else "right")
    for i in result.order:
        out.add_row(*result.solvers[i], *(_time(t, result.unit) for t in result.times[i]))
    return out


def notes(result: SuiteScores) -> list[str]:
    """What the tables need said: the targets, and the tasks nobody reached."""
    lines = ["targets: " + "; ".join(f"{t.name} {t.series} <= {t.target:g}" for t in result.tasks)]
    if result.unreached:
        lines.append(f"no optimizer reached the target of {', '.join(result.unreached)}: a miss for every one "
                     "(raise its budget or its target)")
    return lines


def _number(value: float) -> float | None:
    """A time or ratio for JSON and CSV: None (null, empty) where the target was missed."""
    return float(value) if np.isfinite(value) else None


def as_json(result: SuiteScores) -> str:
    """The results as JSON, best first; a missed target's time and ratio are null."""
    return json.dumps({
        "suite": result.suite, "unit": result.unit, "r_max": R_MAX, "studies": result.studies,
        "trials": result.trials,
        "tasks": [{"name": t.name, "task": t.task, "series": t.series, "target": t.target} for t in result.tasks],
        "scores": [
            {"rank": result.rank(i), "optimizer": result.solvers[i][0], "sampler": result.solvers[i][1],
             "score": float(result.scores[i]), "reached": int(result.reached[i]),
             "tasks": {t.name: {"time": _number(result.times[i, w]), "ratio": _number(result.ratios[i, w])}
                       for w, t in enumerate(result.tasks)}}
            for i in result.order],
    }, indent=2)


def as_csv(result: SuiteScores) -> str:
    """One line per optimizer and sampler, best first: rank, optimizer, sampler, score, reached,
    then each task's ratio and time (empty where missed). Every text cell is a registry or suite
    name (``suite.NAME``: a letter or digit first), never a formula to a spreadsheet."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["rank", "optimizer", "sampler", "score", "reached",
                     *(f"{t.name}_{kind}" for t in result.tasks for kind in ("ratio", result.unit))])
    for i in result.order:
        cells = [_number(value) for w in range(len(result.tasks))
                 for value in (result.ratios[i, w], result.times[i, w])]
        writer.writerow([result.rank(i), *result.solvers[i], float(result.scores[i]), int(result.reached[i]),
                         *("" if cell is None else cell for cell in cells)])
    return out.getvalue()
