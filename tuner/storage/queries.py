"""Read-only queries over tuner's tables (and the counts in Optuna's): every SELECT tuner makes
outside the Store. Every function takes an engine and returns plain values, dicts, StudyRows or
pandas DataFrames; none knows the study-file spec (an experiment's spec comes back as its dict).

"Best" has one definition: the ``tuner_best_configs`` view (see ``best_configs``).

pandas is imported by the functions that return DataFrames: the terminal's commands read without it.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import (
    Column,
    Engine,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    case,
    cast,
    exists,
    func,
    literal,
    select,
    text,
    union_all,
)

from tuner.errors import ConfigError, shown
from tuner.storage import schema
from tuner.storage.engine import read_once
from tuner.storage.records import COMPLETE, DONE_STATES, StudyRow, decoded, reached_target

if TYPE_CHECKING:
    import pandas as pd

_optuna = MetaData()
optuna_studies = Table("studies", _optuna, Column("study_id", Integer), Column("study_name", String))
optuna_trials = Table("trials", _optuna, Column("trial_id", Integer), Column("study_id", Integer),
                      Column("state", String))
optuna_values = Table("trial_values", _optuna, Column("trial_id", Integer), Column("objective", Integer),
                      Column("value", Float), Column("value_type", String))
optuna_params = Table("trial_params", _optuna, Column("trial_id", Integer), Column("param_name", String),
                      Column("param_value", Float), Column("distribution_json", String))
"""The columns tuner reads of Optuna's own tables: live counts of RUNNING, WAITING and FAIL trials;
completed trials' values and parameters as Optuna sampled them (``sampled_trials``)."""

TRIAL_COLUMNS = ("run_id", "optimizer", "sampler", "repeat", "trial_number", "state", "objective", "diverged_at",
                 "steps", "wall_time", "params")
"""The columns of ``trials``: who ran a trial, how it ended, and its configuration (``params``)."""

BEST_ORDER = "CASE WHEN reeval_count > 0 THEN 0 ELSE 1 END, reeval_mean, trial_objective, run_id"
"""THE rule that ranks configurations, as ``tuner_best_configs`` ranks the trials of an optimizer
and sampler: a re-evaluated configuration before one that was not, then the lower mean objective
over the re-evaluation seeds, then the lower trial objective, then the older run. Applied to the
view's rows, it ranks the best configuration per optimizer and sampler; the first row of an
optimizer in that order is its best configuration (``best_configs(per_optimizer=True)``)."""


def experiment(engine: Engine, name: str) -> tuple[int, dict[str, Any]]:
    """The id and stored spec (the validated study file as a dict) of the experiment called
    ``name``; ConfigError listing the known ones if there is none."""
    e = schema.experiments
    with engine.connect() as conn:
        row = conn.execute(select(e.c.id, e.c.spec).where(e.c.name == name)).first()
    if row is None:
        known = experiment_names(engine)
        listing = shown_names(known) if known else "none yet: run tuner launch FILE"
        raise ConfigError(f"experiment {shown(name)} is not in this storage; experiments: {listing}")
    return row.id, _json(row.spec)


SHOWN_NAMES = 5
"""A message lists at most this many names, then says how many more there are."""


def shown_names(names: list[str]) -> str:
    """``names`` as a message lists them: the first SHOWN_NAMES, each quoted and cut to 30
    characters (``errors.shown``), then how many more."""
    listed = ", ".join(shown(name, 30) for name in names[:SHOWN_NAMES])
    return listed if len(names) <= SHOWN_NAMES else f"{listed} and {len(names) - SHOWN_NAMES} more"


def experiment_names(engine: Engine) -> list[str]:
    """Every experiment's name, oldest first."""
    e = schema.experiments
    with engine.connect() as conn:
        return list(conn.execute(select(e.c.name).order_by(e.c.created_at, e.c.id)).scalars())


def experiments(engine: Engine) -> list[dict[str, Any]]:
    """Every experiment, oldest first: name, task, created_at, studies, total (the trial budget
    over its studies), done (finished trials: DONE_STATES), complete, pruned, diverged, and from
    Optuna running and failed (crashed or killed workers' trials, retried)."""
    e, s, r, o, t = schema.experiments, schema.studies, schema.runs, optuna_studies, optuna_trials
    per_state = [func.count(case((r.c.state == state, 1))).label(state.lower()) for state in DONE_STATES]
    finished = (select(s.c.experiment_id, *per_state).join(r, r.c.study_id == s.c.id)
                .where(r.c.kind == "trial").group_by(s.c.experiment_id).subquery())
    state = cast(t.c.state, String)
    live = (select(s.c.experiment_id, func.count(case((state == "RUNNING", 1))).label("running"),
                   func.count(case((state == "FAIL", 1))).label("failed"))
            .join(o, o.c.study_name == s.c.study_name).join(t, t.c.study_id == o.c.study_id)
            .group_by(s.c.experiment_id).subquery())
    budget = (select(s.c.experiment_id, func.count(s.c.id).label("studies"), func.sum(s.c.n_trials).label("total"))
              .group_by(s.c.experiment_id).subquery())
    counts = [finished.c[state.lower()] for state in DONE_STATES]
    query = (select(e.c.name, e.c.task, e.c.created_at, budget.c.studies, budget.c.total, *counts, live.c.running,
                    live.c.failed)
             .outerjoin(budget, budget.c.experiment_id == e.c.id)
             .outerjoin(finished, finished.c.experiment_id == e.c.id)
             .outerjoin(live, live.c.experiment_id == e.c.id).order_by(e.c.created_at, e.c.id))
    out = []
    with engine.connect() as conn:
        for row in conn.execute(query):
            found = {k: int(v or 0) for k, v in row._mapping.items() if k not in ("name", "task", "created_at")}
            out.append({"name": row.name, "task": row.task, "created_at": row.created_at, **found,
                        "done": sum(found[state.lower()] for state in DONE_STATES)})
    return out


def finish_times(engine: Engine) -> pd.DataFrame:
    """When each trial run was stored, by experiment. Columns: name, finished_at."""
    e, s, r = schema.experiments, schema.studies, schema.runs
    query = (select(e.c.name, r.c.created_at).join(s, s.c.experiment_id == e.c.id).join(r, r.c.study_id == s.c.id)
             .where(r.c.kind == "trial"))
    return _frame(engine, query, ["name", "finished_at"])


def studies(engine: Engine, experiment_id: int) -> list[StudyRow]:
    """The experiment's Optuna studies, in creation order."""
    s = schema.studies
    query = select(s.c.id, s.c.study_name, s.c.optimizer, s.c.sampler, s.c.repeat, s.c.n_trials).where(
        s.c.experiment_id == experiment_id).order_by(s.c.id)
    with engine.connect() as conn:
        return [StudyRow(*row) for row in conn.execute(query)]


def run_states(engine: Engine, experiment_id: int) -> dict[int, Counter]:
    """Per study id: how many trial runs ended in each state."""
    s, r = schema.studies, schema.runs
    query = (select(r.c.study_id, r.c.state, func.count()).join(s, s.c.id == r.c.study_id)
             .where(s.c.experiment_id == experiment_id, r.c.kind == "trial").group_by(r.c.study_id, r.c.state))
    counts: dict[int, Counter] = {}
    with engine.connect() as conn:
        for study_id, state, n in conn.execute(query):
            counts.setdefault(study_id, Counter())[state] = n
    return counts


def optuna_states(engine: Engine, study_names: list[str]) -> dict[str, Counter]:
    """Per Optuna study name: trials in each Optuna state (RUNNING, WAITING, COMPLETE, ...)."""
    query = (select(optuna_studies.c.study_name, optuna_trials.c.state, func.count())
             .join(optuna_trials, optuna_trials.c.study_id == optuna_studies.c.study_id)
             .where(optuna_studies.c.study_name.in_(study_names))
             .group_by(optuna_studies.c.study_name, optuna_trials.c.state))
    counts: dict[str, Counter] = {}
    with engine.connect() as conn:
        for name, state, n in conn.execute(query):
            counts.setdefault(name, Counter())[str(getattr(state, "name", state))] = n
    return counts


def optuna_study_ids(engine: Engine, study_names: list[str]) -> dict[str, int]:
    """Optuna's id of each named study."""
    query = select(optuna_studies.c.study_name, optuna_studies.c.study_id).where(
        optuna_studies.c.study_name.in_(study_names))
    with engine.connect() as conn:
        return dict(conn.execute(query).all())


def workload(engine: Engine, study_ids: dict[int, int | None]) -> dict[int, tuple[int, int, int]]:
    """Per tuner study id: (trial runs finished, Optuna trials RUNNING, Optuna trials WAITING, i.e.
    retries of failed trials). ``study_ids`` maps each tuner study id to its Optuna study id (None
    where Optuna's storage is not SQL, as in memory). One query, without a transaction on a
    server: what a worker reads before every trial."""
    r, t = schema.runs, optuna_trials
    query = (select(r.c.study_id, literal("DONE").label("state"), func.count())
             .where(r.c.study_id.in_(list(study_ids)), r.c.kind == "trial", r.c.state.in_(DONE_STATES))
             .group_by(r.c.study_id))
    optuna_ids = [i for i in study_ids.values() if i is not None]
    if optuna_ids:
        state = cast(t.c.state, String)
        query = union_all(query, select(t.c.study_id, state, func.count())
                          .where(t.c.study_id.in_(optuna_ids), state.in_(["RUNNING", "WAITING"]))
                          .group_by(t.c.study_id, state))
    tuner_id = {optuna_id: tuner_id for tuner_id, optuna_id in study_ids.items()}
    slot = {"DONE": 0, "RUNNING": 1, "WAITING": 2}
    counts = {study_id: [0, 0, 0] for study_id in study_ids}
    with read_once(engine) as conn:
        for study_id, state, n in conn.execute(query):
            counts[study_id if state == "DONE" else tuner_id[study_id]][slot[state]] += n
    return {study_id: tuple(n) for study_id, n in counts.items()}


def trials(engine: Engine, experiment_id: int, optimizer: str | None = None) -> pd.DataFrame:
    """Every finished trial run of the experiment (of ``optimizer``), by optimizer, sampler, repeat
    and trial number. Columns: TRIAL_COLUMNS (``params``: the run's configuration as a dict;
    ``objective`` float, NaN where the run has none)."""
    s, r = schema.studies, schema.runs
    only = [] if optimizer is None else [s.c.optimizer == optimizer]
    query = (select(r.c.id, s.c.optimizer, s.c.sampler, s.c.repeat, r.c.trial_number, r.c.state, r.c.objective,
                    r.c.diverged_at, r.c.steps, r.c.wall_time, r.c.params)
             .join(s, s.c.id == r.c.study_id).where(s.c.experiment_id == experiment_id, r.c.kind == "trial", *only)
             .order_by(s.c.optimizer, s.c.sampler, s.c.repeat, r.c.trial_number))
    frame = _frame(engine, query, list(TRIAL_COLUMNS))
    frame["params"] = frame["params"].map(_json)
    frame["objective"] = frame["objective"].astype(float)
    return frame


def best_trials(engine: Engine, experiment_id: int) -> list[dict[str, Any]]:
    """Per study, its best trial: the configuration to re-evaluate. The view's rule for trials not
    yet re-evaluated (BEST_ORDER without its re-evaluation terms): the completed trial run with the
    lowest objective, then the lowest run id. So before any re-evaluation the view's best per
    optimizer and sampler is one of these, and re-evaluating them is what lets the view rank by
    mean. Keys: id, study_id, objective, params."""
    s, r = schema.studies, schema.runs
    ranked = (select(r.c.id, r.c.study_id, r.c.objective, r.c.params, func.row_number().over(
                  partition_by=r.c.study_id, order_by=(r.c.objective, r.c.id)).label("position"))
              .join(s, s.c.id == r.c.study_id)
              .where(s.c.experiment_id == experiment_id, r.c.kind == "trial", r.c.state == COMPLETE,
                     r.c.objective.is_not(None)).subquery())
    query = select(ranked.c.id, ranked.c.study_id, ranked.c.objective, ranked.c.params).where(ranked.c.position == 1)
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(query)]


def reevaluated(engine: Engine, experiment_id: int) -> set[tuple[int, int]]:
    """(source run id, seed) of every re-evaluation already stored."""
    s, r = schema.studies, schema.runs
    query = (select(r.c.source_run_id, r.c.seed).join(s, s.c.id == r.c.study_id)
             .where(s.c.experiment_id == experiment_id, r.c.kind == "reevaluation"))
    with engine.connect() as conn:
        return {(row.source_run_id, row.seed) for row in conn.execute(query)}


def reevaluation_runs(engine: Engine, experiment_id: int) -> list[dict[str, Any]]:
    """The re-evaluation runs of each study's best trial (``best_trials``), oldest first. Keys:
    optimizer, sampler, repeat, source_run_id, seed, state, objective, steps, final_train_loss."""
    s, r = schema.studies, schema.runs
    sources = [row["id"] for row in best_trials(engine, experiment_id)]
    query = (select(s.c.optimizer, s.c.sampler, s.c.repeat, r.c.source_run_id, r.c.seed, r.c.state, r.c.objective,
                    r.c.steps, r.c.final_train_loss)
             .join(s, s.c.id == r.c.study_id)
             .where(r.c.kind == "reevaluation", r.c.source_run_id.in_(sources)).order_by(r.c.id))
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(query)]


def ranking_is_current(engine: Engine, experiment_id: int) -> bool:
    """Whether tuner_rankings holds the experiment's ranking computed after its last run was stored."""
    s, r, k = schema.studies, schema.runs, schema.rankings
    last_run = (select(func.max(r.c.created_at)).join(s, s.c.id == r.c.study_id)
                .where(s.c.experiment_id == experiment_id).scalar_subquery())
    computed = select(func.min(k.c.computed_at)).where(k.c.experiment_id == experiment_id).scalar_subquery()
    with engine.connect() as conn:
        return bool(conn.execute(select(computed >= last_run)).scalar())


def best_configs(engine: Engine, name: str, optimizer: str | None = None, sampler: str | None = None, *,
                 per_optimizer: bool = False) -> list[dict[str, Any]]:
    """The best configurations of experiment ``name``: the rows of the tuner_best_configs view (one
    per optimizer and sampler), best first by BEST_ORDER, with ``reeval_std``, the standard
    deviation over the re-evaluation seeds (None under two), ``params`` as a dict, and for an
    objective that counts steps to a target: ``reeval_reached`` (completed re-evaluations that
    reached it, ``records.reached_target``), ``reeval_final_loss`` (their median final training
    loss), ``trial_steps`` and ``trial_final_loss`` (the trial's). With
    ``per_optimizer``, only each optimizer's first row in that order: its best configuration over
    every sampler. ConfigError for an unknown experiment."""
    _, spec = experiment(engine, name)  # a clear error for an unknown name
    for field, value in (("optimizer", optimizer), ("sampler", sampler)):
        allowed = [item["name"] for item in spec[f"{field}s"]]
        if value is not None and value not in allowed:
            raise ConfigError(f"{field}={shown(value)} is not in experiment {shown(name)}; "
                              f"allowed: {', '.join(allowed)}")
    sql = f"SELECT * FROM {schema.BEST_CONFIGS_VIEW} WHERE experiment = :name"
    binds: dict[str, Any] = {"name": name}
    for column, value in (("optimizer", optimizer), ("sampler", sampler)):
        if value is not None:
            sql += f" AND {column} = :{column}"
            binds[column] = value
    with engine.connect() as conn:
        rows = [dict(row._mapping) for row in conn.execute(text(f"{sql} ORDER BY {BEST_ORDER}"), binds)]
    if per_optimizer:
        first: dict[str, dict[str, Any]] = {}
        for row in rows:
            first.setdefault(row["optimizer"], row)
        rows = list(first.values())
    r = schema.runs
    ids = [row["run_id"] for row in rows]
    runs: dict[int, list[Any]] = {}
    trial: dict[int, Any] = {}
    with engine.connect() as conn:
        for run in conn.execute(select(r.c.source_run_id, r.c.objective, r.c.steps, r.c.final_train_loss).where(
                r.c.source_run_id.in_(ids), r.c.state == COMPLETE)):
            runs.setdefault(run.source_run_id, []).append(run)
        for run in conn.execute(select(r.c.id, r.c.steps, r.c.final_train_loss).where(r.c.id.in_(ids))):
            trial[run.id] = run
    for row in rows:
        done = runs.get(row["run_id"], [])
        values = [run.objective for run in done]
        finals = [run.final_train_loss for run in done if run.final_train_loss is not None]
        row["reeval_std"] = statistics.stdev(values) if len(values) > 1 else None
        row["reeval_reached"] = sum(reached_target(run.objective, run.steps) for run in done)
        row["reeval_final_loss"] = statistics.median(finals) if finals else None
        row["trial_steps"] = trial[row["run_id"]].steps
        row["trial_final_loss"] = trial[row["run_id"]].final_train_loss
        row["params"] = _json(row["params"])  # SQLite returns a view's JSON column as text
    return rows


def config_runs(engine: Engine, run_ids: list[int]) -> pd.DataFrame:
    """The runs that show each given trial's configuration: its re-evaluations on fresh seeds, or
    the trial itself before any. Columns: source_run_id, run_id, seed, state, total_steps (the
    trial's step budget, as it ran)."""
    source, r = schema.runs.alias("source"), schema.runs
    shown = (select(source.c.id, r.c.id, r.c.seed, r.c.state, source.c.steps)
             .join(r, (r.c.source_run_id == source.c.id) & (r.c.kind == "reevaluation"))
             .where(source.c.id.in_(run_ids)))
    alone = (select(source.c.id, source.c.id, source.c.seed, source.c.state, source.c.steps)
             .where(source.c.id.in_(run_ids),
                    ~exists().where(r.c.source_run_id == source.c.id, r.c.kind == "reevaluation")))
    return _frame(engine, union_all(shown, alone), ["source_run_id", "run_id", "seed", "state", "total_steps"])


def curves(engine: Engine, run_ids: list[int] | tuple[int, ...], series: str) -> pd.DataFrame:
    """Long form of one series of the given runs: run_id, step, seconds, value (NaN where the
    recorded value was not finite)."""
    import pandas as pd

    c = schema.curves
    rows = []
    if run_ids:
        query = select(c.c.run_id, c.c.steps, c.c.seconds, c.c["values"]).where(c.c.run_id.in_(list(run_ids)),
                                                                                 c.c.series == series)
        with engine.connect() as conn:
            rows = conn.execute(query).all()
    if not rows:
        return pd.DataFrame({"run_id": [], "step": [], "seconds": [], "value": []})
    counts, steps, seconds, values = decoded([row[1:] for row in rows])
    return pd.DataFrame({"run_id": np.repeat([row[0] for row in rows], counts), "step": steps, "seconds": seconds,
                         "value": values})


def series_names(engine: Engine, experiment_id: int) -> list[str]:
    """The curve series the experiment's runs record (train_loss, val_loss, val_accuracy, loss),
    read from its first completed run (a run that diverged before its first evaluation has only
    train_loss), else its first run; empty before any."""
    s, r, c = schema.studies, schema.runs, schema.curves
    first = (select(r.c.id).join(s, s.c.id == r.c.study_id).where(s.c.experiment_id == experiment_id)
             .order_by(case((r.c.state == COMPLETE, 0), else_=1), r.c.id).limit(1).scalar_subquery())
    with engine.connect() as conn:
        return sorted(conn.execute(select(c.c.series).where(c.c.run_id == first)).scalars())


def _frame(engine: Engine, query: Any, columns: list[str]) -> pd.DataFrame:
    import pandas as pd

    with engine.connect() as conn:
        return pd.DataFrame([tuple(row) for row in conn.execute(query)], columns=columns)


def _json(value: Any) -> Any:
    """A JSON column's value: decoded already, or text where the driver (SQLite on a view) left it so."""
    return json.loads(value) if isinstance(value, str) else value


def experiment_specs(engine: Engine) -> list[tuple[int, str, dict[str, Any]]]:
    """Every experiment's id, name and stored spec (the validated study file as a dict), oldest first."""
    e = schema.experiments
    with engine.connect() as conn:
        return [(row.id, row.name, _json(row.spec))
                for row in conn.execute(select(e.c.id, e.c.name, e.c.spec).order_by(e.c.created_at, e.c.id))]


def trial_series(engine: Engine, experiment_id: int, series: str) -> list[dict[str, Any]]:
    """Every finished trial run (DONE_STATES) of the experiment with one series of its curves, by
    optimizer, sampler, repeat and trial number. Keys: study_id, optimizer, sampler, repeat,
    trial_number, state, steps, seconds, values (lists; a value NaN where it was not finite; all
    three empty for a run that recorded no point of ``series``, as one that diverged before its
    first evaluation)."""
    s, r, c = schema.studies, schema.runs, schema.curves
    query = (select(s.c.id.label("study_id"), s.c.optimizer, s.c.sampler, s.c.repeat, r.c.trial_number, r.c.state,
                    c.c.steps, c.c.seconds, c.c["values"])
             .select_from(s).join(r, r.c.study_id == s.c.id)
             .outerjoin(c, (c.c.run_id == r.c.id) & (c.c.series == series))
             .where(s.c.experiment_id == experiment_id, r.c.kind == "trial", r.c.state.in_(DONE_STATES))
             .order_by(s.c.optimizer, s.c.sampler, s.c.repeat, r.c.trial_number, r.c.id))
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    if not rows:
        return []
    counts, steps, seconds, values = decoded([row[-3:] for row in rows])
    ends = np.cumsum(counts)[:-1]
    return [{**dict(row._mapping), "steps": run_steps.tolist(), "seconds": run_seconds.tolist(),
             "values": run_values.tolist()}
            for row, run_steps, run_seconds, run_values in zip(
                rows, np.split(steps, ends), np.split(seconds, ends), np.split(values, ends), strict=True)]


OUTCOME_COLUMNS = ("run_id", "optimizer", "sampler", "repeat", "trial_number", "state", "objective", "diverged_at",
                   "steps")
"""The columns of ``trial_outcomes``: ``TRIAL_COLUMNS`` without the configuration and the wall time."""


def trial_outcomes(engine: Engine, experiment_id: int, keys: tuple[str, ...] = ()) -> pd.DataFrame:
    """Every finished trial run of the experiment, by optimizer, sampler, repeat and trial number,
    as ``trials`` gives them but read as columns, without decoding a configuration: what
    summaries over 100,000 trials read. Columns: OUTCOME_COLUMNS (``objective`` and
    ``diverged_at`` float, NaN where the run has none), then for each name in ``keys`` that
    top-level number of the runs' configuration (``lr``, ``batch_size``: read by the database,
    float, NaN where a configuration has none)."""
    import pandas as pd

    s, r = schema.studies, schema.runs
    names = ["study_id", "run_id", "trial_number", "state", "objective", "diverged_at", "steps", *keys]
    query = (select(r.c.study_id, r.c.id, r.c.trial_number, r.c.state, r.c.objective, r.c.diverged_at, r.c.steps,
                    *(r.c.params[key].as_float() for key in keys))
             .join(s, s.c.id == r.c.study_id).where(s.c.experiment_id == experiment_id, r.c.kind == "trial"))
    with engine.connect() as conn:
        slots = sorted(conn.execute(select(s.c.id, s.c.optimizer, s.c.sampler, s.c.repeat)
                                    .where(s.c.experiment_id == experiment_id)).all(), key=lambda row: row[1:])
        rows = conn.execute(query).all()
    raw = dict(zip(names, zip(*rows, strict=True), strict=True)) if rows else dict.fromkeys(names, ())
    place = {row.id: k for k, row in enumerate(slots)}  # the frame's order of studies
    study = np.array([place[i] for i in raw["study_id"]], dtype=np.int64)
    number = np.array(raw["trial_number"], dtype=np.int64)
    order = np.lexsort((number, study))
    study = study[order]

    def column(name: str, dtype: Any) -> np.ndarray:
        return np.array(raw[name], dtype=dtype)[order]

    return pd.DataFrame({
        "run_id": column("run_id", np.int64),
        **{field: np.array([getattr(row, field) for row in slots], dtype=object)[study]
           for field in ("optimizer", "sampler")},
        "repeat": np.array([row.repeat for row in slots], dtype=np.int64)[study], "trial_number": number[order],
        "state": column("state", object), "objective": column("objective", float),
        "diverged_at": column("diverged_at", float), "steps": column("steps", np.int64),
        **{key: column(key, float) for key in keys}})


def sampled_trials(engine: Engine, study_names: list[str],
                   limit: int) -> list[tuple[float, dict[str, tuple[float, str]]]]:
    """Up to ``limit`` COMPLETE trials with a finite value of the named Optuna studies, evenly
    spread over them in creation order (all when there are no more): each one's value and its
    parameters as Optuna stores them, name -> (internal value, distribution as JSON). Read from
    Optuna's tables in two queries, where Optuna's ``get_trials`` takes seconds per 10,000 trials."""
    o, t, v, p = optuna_studies, optuna_trials, optuna_values, optuna_params
    completed = (select(t.c.trial_id, v.c.value).join(o, o.c.study_id == t.c.study_id)
                 .join(v, (v.c.trial_id == t.c.trial_id) & (v.c.objective == 0))
                 .where(o.c.study_name.in_(study_names), cast(t.c.state, String) == "COMPLETE",
                        v.c.value.is_not(None), cast(v.c.value_type, String) == "FINITE")
                 .order_by(t.c.trial_id))
    with engine.connect() as conn:
        found = conn.execute(completed).all()
        if len(found) > limit:
            found = [found[i] for i in np.unique(np.linspace(0, len(found) - 1, limit).round().astype(int))]
        params: dict[int, dict[str, tuple[float, str]]] = {trial_id: {} for trial_id, _ in found}
        for trial_id, name, value, distribution in conn.execute(
                select(p.c.trial_id, p.c.param_name, p.c.param_value, p.c.distribution_json)
                .where(p.c.trial_id.in_(list(params)))).all():
            params[trial_id][name] = (float(value), distribution)
    return [(float(value), params[trial_id]) for trial_id, value in found]

