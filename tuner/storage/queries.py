"""Read-only queries over tuner's tables (and the counts in Optuna's). Every function takes an engine."""

import json
import statistics
from collections import Counter
from typing import Any

from sqlalchemy import (
    Column,
    Engine,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    cast,
    func,
    literal,
    select,
    text,
    union_all,
)

from tuner.errors import ConfigError
from tuner.spec import Experiment
from tuner.storage import schema
from tuner.storage.engine import read_once
from tuner.storage.store import StudyRow

_optuna = MetaData()
optuna_studies = Table("studies", _optuna, Column("study_id", Integer), Column("study_name", String))
optuna_trials = Table("trials", _optuna, Column("trial_id", Integer), Column("study_id", Integer),
                      Column("state", String))
optuna_trial_params = Table("trial_params", _optuna, Column("trial_id", Integer), Column("param_name", String),
                            Column("param_value", Float), Column("distribution_json", Text))
optuna_trial_values = Table("trial_values", _optuna, Column("trial_id", Integer), Column("value", Float))
"""The columns tuner reads of Optuna's own tables: live counts of RUNNING and WAITING trials, and
parameters as Optuna sampled them (for its importance evaluators)."""

DONE_STATES = ("COMPLETE", "PRUNED", "DIVERGED")


def experiment(engine: Engine, name: str) -> tuple[int, Experiment]:
    """The experiment called ``name``; ConfigError listing the known ones if there is none."""
    with engine.connect() as conn:
        row = conn.execute(select(schema.experiments.c.id, schema.experiments.c.spec)
                           .where(schema.experiments.c.name == name)).first()
        if row is None:
            known = conn.execute(select(schema.experiments.c.name).order_by(schema.experiments.c.name)).scalars().all()
    if row is None:
        listing = ", ".join(repr(k) for k in known) if known else "none yet: run tuner launch FILE"
        raise ConfigError(f"experiment {name!r} is not in this storage; experiments: {listing}")
    return row.id, Experiment(**row.spec)


def experiments(engine: Engine) -> list[dict[str, Any]]:
    """Every experiment: name, task, creation time, studies, finished trials and budget."""
    e, s, r = schema.experiments, schema.studies, schema.runs
    done = (select(s.c.experiment_id, func.count(r.c.id).label("done"))
            .join(r, r.c.study_id == s.c.id)
            .where(r.c.kind == "trial", r.c.state.in_(DONE_STATES)).group_by(s.c.experiment_id).subquery())
    budget = (select(s.c.experiment_id, func.count(s.c.id).label("studies"), func.sum(s.c.n_trials).label("total"))
              .group_by(s.c.experiment_id).subquery())
    query = (select(e.c.name, e.c.task, e.c.created_at, budget.c.studies, budget.c.total, done.c.done)
             .outerjoin(budget, budget.c.experiment_id == e.c.id)
             .outerjoin(done, done.c.experiment_id == e.c.id).order_by(e.c.created_at))
    with engine.connect() as conn:
        return [
            {"name": row.name, "task": row.task, "created_at": row.created_at, "studies": row.studies or 0,
             "done": row.done or 0, "total": row.total or 0}
            for row in conn.execute(query)
        ]


def studies(engine: Engine, experiment_id: int) -> list[StudyRow]:
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


def best_trials(engine: Engine, experiment_id: int) -> list[dict[str, Any]]:
    """Per study, its best completed trial run (lowest objective): the ones to re-evaluate."""
    s, r = schema.studies, schema.runs
    ranked = (select(r.c.id, r.c.study_id, r.c.objective, r.c.params, func.row_number().over(
                  partition_by=r.c.study_id, order_by=(r.c.objective, r.c.id)).label("position"))
              .join(s, s.c.id == r.c.study_id)
              .where(s.c.experiment_id == experiment_id, r.c.kind == "trial", r.c.state == "COMPLETE",
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


def best_configs(engine: Engine, name: str, optimizer: str | None = None,
                 sampler: str | None = None) -> list[dict[str, Any]]:
    """Rows of the tuner_best_configs view, with the standard deviation over re-evaluation seeds."""
    experiment(engine, name)  # a clear error for an unknown name
    sql = f"SELECT * FROM {schema.BEST_CONFIGS_VIEW} WHERE experiment = :name"
    binds: dict[str, Any] = {"name": name}
    for column, value in (("optimizer", optimizer), ("sampler", sampler)):
        if value is not None:
            sql += f" AND {column} = :{column}"
            binds[column] = value
    with engine.connect() as conn:
        rows = [dict(row._mapping) for row in conn.execute(text(sql + " ORDER BY optimizer, sampler"), binds)]
        r = schema.runs
        scores: dict[int, list[float]] = {}
        for source, objective in conn.execute(select(r.c.source_run_id, r.c.objective).where(
                r.c.source_run_id.in_([row["run_id"] for row in rows]), r.c.state == "COMPLETE")):
            scores.setdefault(source, []).append(objective)
        for row in rows:
            values = scores.get(row["run_id"], [])
            row["reeval_std"] = statistics.stdev(values) if len(values) > 1 else None
            if isinstance(row["params"], str):  # SQLite returns a view's JSON column as text
                row["params"] = json.loads(row["params"])
    return rows


def best_so_far(engine: Engine, experiment_id: int) -> dict[str, float]:
    """Per optimizer: the lowest objective of any completed trial so far."""
    s, r = schema.studies, schema.runs
    query = (select(s.c.optimizer, func.min(r.c.objective)).join(r, r.c.study_id == s.c.id)
             .where(s.c.experiment_id == experiment_id, r.c.kind == "trial", r.c.state == "COMPLETE")
             .group_by(s.c.optimizer))
    with engine.connect() as conn:
        return dict(conn.execute(query).all())
