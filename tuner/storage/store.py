"""The Store: Optuna's storage and tuner's tables over one engine. The only module that writes SQL."""

import copy
import datetime as dt
import json
import math
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna
from optuna import distributions
from optuna.exceptions import ExperimentalWarning, UpdateFinishedTrialError
from optuna.storages import InMemoryStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages._cached_storage import _CachedStorage, _StudyInfo
from optuna.storages._rdb import models
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import Connection, Engine, create_engine, func, insert, or_, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.pool import StaticPool

from tuner.errors import ConfigError
from tuner.spec import Experiment
from tuner.storage import schema
from tuner.storage.engine import configure_sqlite, engine_kwargs, is_sqlite, read_once
from tuner.storage.migrate import upgrade
from tuner.storage.records import RunRecord

HEARTBEAT_INTERVAL_S = int(os.environ.get("TUNER_HEARTBEAT_INTERVAL", 5))
GRACE_PERIOD_S = int(os.environ.get("TUNER_GRACE_PERIOD", 20))
"""A trial whose worker sent no heartbeat for the grace period is failed and retried (seconds)."""
MAX_RETRY = 3
_STUDIES, _TRIALS, _PARAMS, _VALUES, _HEARTBEATS, _USER_ATTRS, _SYSTEM_ATTRS, _INTERMEDIATE = (
    model.__table__ for model in (
        models.StudyModel, models.TrialModel, models.TrialParamModel, models.TrialValueModel,
        models.TrialHeartbeatModel, models.TrialUserAttributeModel, models.TrialSystemAttributeModel,
        models.TrialIntermediateValueModel))
"""Optuna's tables, read and written with SQLAlchemy Core on the worker's hot path (see WorkerStorage)."""


@dataclass(frozen=True)
class StudyRow:
    """One Optuna study of an experiment."""

    id: int
    study_name: str
    optimizer: str
    sampler: str
    repeat: int
    n_trials: int


def study_name(experiment: str, optimizer: str, sampler: str, repeat: int) -> str:
    """The Optuna study name: readable in ``optuna studies``."""
    return f"{experiment}/{optimizer}/{sampler}/{repeat}"


def _utc(local: dt.datetime) -> dt.datetime:
    """A naive local time as Optuna stores it: naive UTC."""
    return local.astimezone(dt.UTC).replace(tzinfo=None)


def _local(utc: dt.datetime | None) -> dt.datetime | None:
    """A stored naive UTC time as Optuna hands it out: naive local time."""
    return None if utc is None else utc.replace(tzinfo=dt.UTC).astimezone().replace(tzinfo=None)


class WorkerStorage(RDBStorage):
    """Optuna's RDBStorage with fewer round trips per trial, writing the same rows.

    The hot path (create a trial, write its parameters, finish it) is SQLAlchemy Core on
    Optuna's tables, not the ORM; everything else is Optuna's own code. The contract holds
    (checked against Optuna's storage by the tests), and:

    - A new trial and its first heartbeat are one transaction: a trial is never RUNNING
      without one (the heartbeat thread's first beat, which would follow at once, is skipped).
    - ``set_trial_param`` is held back until ``flush_params`` (the objective calls it once
      sampling is done, before training) or the trial's state changes; all in one transaction.
    - A trial this process created is read from its own copy, which ``Trial`` keeps up to
      date, instead of the database (Optuna reads it at creation and again on ``tell``).
    - A trial's final state, its values and tuner's run row (``hold_run``) are one transaction.
    - Other workers' trials are read with one query per table (``load_trials``), not the ORM.
    - Stale trials of a study are looked for at most once per heartbeat interval.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pending: list[tuple] = []
        self._own: dict[int, FrozenTrial] = {}
        self._runs: dict[int, Callable[[Connection], Any]] = {}
        self._beaten: set[int] = set()
        self._stale_checked: dict[int, float] = {}

    def _create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> FrozenTrial:
        """A new RUNNING trial numbered as Optuna numbers them (under the study's row lock, the
        count of its trials so far), with its first heartbeat. A template (a retry) is Optuna's."""
        if template_trial is not None:
            return super()._create_new_trial(study_id, template_trial)
        now = dt.datetime.now()
        with self.engine.begin() as conn:
            locked = select(_STUDIES.c.study_id).where(_STUDIES.c.study_id == study_id).with_for_update()
            if conn.execute(locked).first() is None:
                raise KeyError(f"No study with study_id {study_id} exists.")
            number = conn.execute(select(func.count()).select_from(_TRIALS)
                                  .where(_TRIALS.c.study_id == study_id)).scalar_one()
            trial_id = conn.execute(insert(_TRIALS).values(
                number=number, study_id=study_id, state=TrialState.RUNNING, datetime_start=_utc(now),
            )).inserted_primary_key[0]
            if self.heartbeat_interval is not None:
                conn.execute(insert(_HEARTBEATS).values(trial_id=trial_id, heartbeat=func.now()))
                self._beaten.add(trial_id)
        self._own[trial_id] = FrozenTrial(
            number=number, state=TrialState.RUNNING, value=None, values=None, datetime_start=now,
            datetime_complete=None, params={}, distributions={}, user_attrs={}, system_attrs={},
            intermediate_values={}, trial_id=trial_id,
        )
        return copy.deepcopy(self._own[trial_id])

    def record_heartbeat(self, trial_id: int) -> None:
        if trial_id in self._beaten:  # the first beat was written with the trial
            self._beaten.discard(trial_id)
            return
        super().record_heartbeat(trial_id)

    def get_trial(self, trial_id: int) -> FrozenTrial:
        own = self._own.get(trial_id)
        return own if own is not None else super().get_trial(trial_id)

    def own_trial(self, trial_id: int) -> FrozenTrial | None:
        """This process's copy of a trial it created and runs; None for any other."""
        return self._own.get(trial_id)

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        now = time.monotonic()
        if now - self._stale_checked.get(study_id, -math.inf) < (self.heartbeat_interval or 0):
            return []
        self._stale_checked[study_id] = now
        return super()._get_stale_trial_ids(study_id)

    def _set_trial_param(self, trial_id: int, param_name: str, param_value_internal: float,
                         distribution: Any, previous_distribution: Any) -> None:
        self._pending.append((trial_id, param_name, param_value_internal, distribution, previous_distribution))

    def flush_params(self) -> None:
        """One transaction: each trial checked to be unfinished and each parameter's distribution
        against the study's (as Optuna checks them), then every parameter inserted."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        with self.engine.begin() as conn:
            for trial_id in {p[0] for p in pending}:
                self._check_updatable(conn, trial_id)
            for trial_id, name, _, distribution, previous in pending:
                previous = previous or self._study_distribution(conn, trial_id, name)
                if previous is not None:
                    distributions.check_distribution_compatibility(previous, distribution)
            conn.execute(insert(_PARAMS), [
                {"trial_id": trial_id, "param_name": name, "param_value": value,
                 "distribution_json": distributions.distribution_to_json(distribution)}
                for trial_id, name, value, distribution, _ in pending
            ])

    @staticmethod
    def _check_updatable(conn: Connection, trial_id: int) -> None:
        row = conn.execute(select(_TRIALS.c.number, _TRIALS.c.state).where(_TRIALS.c.trial_id == trial_id)).first()
        if row is None:
            raise KeyError(f"No trial with trial_id {trial_id} exists.")
        if row.state.is_finished():
            raise UpdateFinishedTrialError(f"Trial#{row.number} has already finished and can not be updated.")

    @staticmethod
    def _study_distribution(conn: Connection, trial_id: int, name: str) -> Any:
        """The distribution of parameter ``name`` in the trial's study so far, if any."""
        study = select(_TRIALS.c.study_id).where(_TRIALS.c.trial_id == trial_id).scalar_subquery()
        found = conn.execute(select(_PARAMS.c.distribution_json).join(_TRIALS, _TRIALS.c.trial_id == _PARAMS.c.trial_id)
                             .where(_TRIALS.c.study_id == study, _PARAMS.c.param_name == name).limit(1)).scalar()
        return None if found is None else distributions.json_to_distribution(found)

    LOAD_CHUNK = 1000
    """Trials read per query: an IN list of this many ids stays within every database's limits."""

    @classmethod
    def load_trials(cls, conn: Connection, trial_ids: set[int]) -> list[FrozenTrial]:
        """The trials ``trial_ids`` in id order, as Optuna's ``_get_trials`` builds them, read with
        one query per table (Optuna's ORM loading costs several milliseconds a trial)."""
        ids = sorted(trial_ids)
        return [trial for start in range(0, len(ids), cls.LOAD_CHUNK)
                for trial in cls._load_chunk(conn, ids[start:start + cls.LOAD_CHUNK])]

    @staticmethod
    def _load_chunk(conn: Connection, ids: list[int]) -> list[FrozenTrial]:
        def rows(table: Any, order: Any) -> list:
            return conn.execute(select(table).where(table.c.trial_id.in_(ids)).order_by(order)).all()

        trials = rows(_TRIALS, _TRIALS.c.trial_id)
        parts: dict[int, dict[str, dict]] = {row.trial_id: {
            "params": {}, "distributions": {}, "values": {}, "user_attrs": {}, "system_attrs": {},
            "intermediate_values": {}} for row in trials}
        parsed: dict[str, distributions.BaseDistribution] = {}
        for row in rows(_PARAMS, _PARAMS.c.param_id):
            if row.distribution_json not in parsed:
                parsed[row.distribution_json] = distributions.json_to_distribution(row.distribution_json)
            distribution = parsed[row.distribution_json]
            parts[row.trial_id]["params"][row.param_name] = distribution.to_external_repr(row.param_value)
            parts[row.trial_id]["distributions"][row.param_name] = distribution
        for row in rows(_VALUES, _VALUES.c.trial_value_id):
            parts[row.trial_id]["values"][row.objective] = models.TrialValueModel.stored_repr_to_value(
                row.value, row.value_type)
        for table, order, field in ((_USER_ATTRS, _USER_ATTRS.c.trial_user_attribute_id, "user_attrs"),
                                    (_SYSTEM_ATTRS, _SYSTEM_ATTRS.c.trial_system_attribute_id, "system_attrs")):
            for row in rows(table, order):
                parts[row.trial_id][field][row.key] = json.loads(row.value_json)
        for row in rows(_INTERMEDIATE, _INTERMEDIATE.c.trial_intermediate_value_id):
            parts[row.trial_id]["intermediate_values"][row.step] = (
                models.TrialIntermediateValueModel.stored_repr_to_intermediate_value(
                    row.intermediate_value, row.intermediate_value_type))
        loaded = []
        for row in trials:
            part = parts[row.trial_id]
            values = part.pop("values")
            loaded.append(FrozenTrial(
                number=row.number, state=row.state, value=None, values=[values[k] for k in sorted(values)] or None,
                datetime_start=_local(row.datetime_start), datetime_complete=_local(row.datetime_complete),
                trial_id=row.trial_id, **part,
            ))
        return loaded

    def hold_run(self, trial_id: int, write: Callable[[Connection], Any]) -> None:
        """Have ``write`` run in the transaction that records the trial's final state."""
        self._runs[trial_id] = write

    def set_trial_state_values(self, trial_id: int, state: TrialState, values: Any = None) -> bool:
        """As Optuna's. A finished state is one transaction with the trial's values and, if it is
        COMPLETE or PRUNED, its held run (a FAIL drops it): the state changes only from RUNNING."""
        write_run = self._runs.pop(trial_id, None)
        try:
            self.flush_params()
            if not state.is_finished():
                return super().set_trial_state_values(trial_id, state, values)
            with self.engine.begin() as conn:
                finished = conn.execute(update(_TRIALS).where(_TRIALS.c.trial_id == trial_id,
                                                              _TRIALS.c.state == TrialState.RUNNING)
                                        .values(state=state, datetime_complete=_utc(dt.datetime.now())))
                if finished.rowcount != 1:
                    raise UpdateFinishedTrialError(f"trial {trial_id} is not running: it cannot be finished again")
                if values:
                    conn.execute(insert(_VALUES), [
                        dict(zip(("value", "value_type"), models.TrialValueModel.value_to_stored_repr(value),
                                 strict=True), trial_id=trial_id, objective=objective)
                        for objective, value in enumerate(values)
                    ])
                if write_run is not None and state in (TrialState.COMPLETE, TrialState.PRUNED):
                    write_run(conn)
            return True
        finally:
            if state.is_finished():
                self._own.pop(trial_id, None)


class WorkerCache(_CachedStorage):
    """Optuna's cache in front of a WorkerStorage, reading less to see a study's new trials.

    - A trial this process finishes goes into the cache as told: no read is needed to see it.
    - A read first asks for the ids and states of the trials Optuna would re-read; only the
      ones the cache does not already hold, finished and in that state, are loaded in full.
    - A study is re-read at most every 50 ms within a trial: ``study.ask`` reads it to find
      WAITING trials and the sampler again a few milliseconds later; that second read would only
      add what other workers did in between, which the next trial sees anyway. Finishing a trial
      ends the pause, so the next ``ask`` always finds a retry that is waiting.
    """

    MIN_INTERVAL_S = 0.05

    def __init__(self, backend: "WorkerStorage") -> None:
        super().__init__(backend)
        self._backend: WorkerStorage = backend
        self._read_at: dict[int, float] = {}

    def _read_trials_from_remote_storage(self, study_id: int) -> None:
        now = time.monotonic()
        if now - self._read_at.get(study_id, -math.inf) < self.MIN_INTERVAL_S:
            return
        self._read_at[study_id] = now
        with self._lock:
            study = self._studies.setdefault(study_id, _StudyInfo())
            changed = select(_TRIALS.c.trial_id, _TRIALS.c.state).where(_TRIALS.c.study_id == study_id, or_(
                _TRIALS.c.trial_id > study.last_finished_trial_id, _TRIALS.c.trial_id.in_(study.unfinished_trial_ids)))
            with read_once(self._backend.engine) as conn:
                states = dict(conn.execute(changed).all())
                unknown = {trial_id for trial_id, state in states.items() if not self._holds(trial_id, state)}
                loaded = self._backend.load_trials(conn, unknown) if unknown else []
            self._add_trials_to_cache(study_id, loaded)
            states.update((trial._trial_id, trial.state) for trial in loaded)
            for trial_id, state in states.items():
                if state.is_finished():
                    study.last_finished_trial_id = max(study.last_finished_trial_id, trial_id)
                    study.unfinished_trial_ids.discard(trial_id)
                else:
                    study.unfinished_trial_ids.add(trial_id)

    def _holds(self, trial_id: int, state: TrialState) -> bool:
        """Whether the cache has the trial finished in ``state`` (a finished trial never changes)."""
        cached = self._get_cached_trial(trial_id)
        return cached is not None and cached.state == state

    def set_trial_state_values(self, trial_id: int, state: TrialState, values: Any = None) -> bool:
        own = self._backend.own_trial(trial_id)
        self._read_at.clear()  # the next trial's ask reads the database: a retry may be waiting
        updated = super().set_trial_state_values(trial_id, state, values)
        if updated and own is not None and state.is_finished():
            told = copy.deepcopy(own)
            told.state, told.values, told.datetime_complete = state, values, dt.datetime.now()
            with self._lock:
                self._add_trials_to_cache(self._trial_id_to_study_id_and_number[trial_id][0], [told])
        return updated


class Store:
    """One database as tuner uses it. ``Store.open(url)`` migrates tuner's tables on the way."""

    def __init__(self, optuna_storage: optuna.storages.BaseStorage, engine: Engine, url: str) -> None:
        self.optuna = optuna_storage
        self.engine = engine
        self.url = url
        self.rdb: WorkerStorage | None = None
        self.shared = url != "memory"  # other processes may write: count their trials in flight
        upgrade(engine)

    @classmethod
    def open(cls, url: str, *, heartbeat: bool = True, attempts: int = 3) -> "Store":
        """A writer on ``url`` with Optuna's heartbeat and retry of stale trials.

        Two processes creating the tables of a new database at once can collide; the loser
        finds them made when it tries again.
        """
        for attempt in range(1, attempts):
            try:
                return cls._open(url, heartbeat)
            except DBAPIError:
                time.sleep(0.5 * attempt)
        return cls._open(url, heartbeat)

    @classmethod
    def _open(cls, url: str, heartbeat: bool) -> "Store":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            on_stale = RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)
            storage = WorkerStorage(
                url,
                engine_kwargs=engine_kwargs(url),
                heartbeat_interval=HEARTBEAT_INTERVAL_S if heartbeat else None,
                grace_period=GRACE_PERIOD_S if heartbeat else None,
                heartbeat_stale_trial_callback=on_stale if heartbeat else None,
            )
        if is_sqlite(url):
            configure_sqlite(storage.engine)
        store = cls(WorkerCache(storage), storage.engine, url)
        store.rdb = storage
        return store

    @classmethod
    def memory(cls) -> "Store":
        """Optuna's in-memory storage and an in-memory SQLite for tuner's tables (one process)."""
        engine = create_engine("sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False})
        return cls(InMemoryStorage(), engine, "memory")

    def close(self) -> None:
        self.engine.dispose()

    def flush_params(self) -> None:
        """Write the parameters sampled so far (one transaction); see WorkerStorage."""
        if self.rdb is not None:
            self.rdb.flush_params()

    # experiments and studies ----------------------------------------------------------------
    def ensure_experiment(self, spec: Experiment) -> int:
        """Create the experiment or return the id of the one with the same name and spec."""
        stored_spec = spec.model_dump(mode="json", exclude={"storage"})
        with self.engine.begin() as conn:
            row = conn.execute(
                select(schema.experiments.c.id, schema.experiments.c.spec).where(schema.experiments.c.name == spec.name)
            ).first()
            if row is None:
                try:
                    with conn.begin_nested():
                        return conn.execute(insert(schema.experiments).values(
                            name=spec.name, task=spec.task.name, spec=stored_spec,
                            created_at=dt.datetime.now(dt.UTC),
                        )).inserted_primary_key[0]
                except IntegrityError:  # another launcher created it just now
                    row = conn.execute(select(schema.experiments.c.id, schema.experiments.c.spec)
                                       .where(schema.experiments.c.name == spec.name)).one()
        if row.spec != stored_spec:
            changed = sorted(k for k in stored_spec.keys() | row.spec.keys() if stored_spec.get(k) != row.spec.get(k))
            raise ConfigError(
                f"experiment {spec.name!r} already exists with a different study file (changed: "
                f"{', '.join(changed)}); give it a new name to start another experiment"
            )
        return row.id

    def ensure_studies(self, spec: Experiment, experiment_id: int) -> list[StudyRow]:
        """One Optuna study and one tuner_studies row per optimizer, sampler and repeat (idempotent)."""
        rows = []
        for optimizer in spec.optimizers:
            for sampler in spec.samplers:
                for repeat in range(spec.repeats):
                    name = study_name(spec.name, optimizer.name, sampler.name, repeat)
                    optuna.create_study(storage=self.optuna, study_name=name, direction="minimize",
                                        load_if_exists=True)
                    rows.append(self._ensure_study_row(experiment_id, name, optimizer.name, sampler.name,
                                                       repeat, spec.trials))
        return rows

    def _ensure_study_row(self, experiment_id: int, name: str, optimizer: str, sampler: str,
                          repeat: int, n_trials: int) -> StudyRow:
        table = schema.studies
        values = dict(experiment_id=experiment_id, study_name=name, optimizer=optimizer, sampler=sampler,
                      repeat=repeat, n_trials=n_trials)
        with self.engine.begin() as conn:
            found = conn.execute(select(table.c.id).where(table.c.study_name == name)).scalar()
            if found is None:
                try:
                    with conn.begin_nested():
                        found = conn.execute(insert(table).values(**values)).inserted_primary_key[0]
                except IntegrityError:
                    found = conn.execute(select(table.c.id).where(table.c.study_name == name)).scalar_one()
        return StudyRow(found, name, optimizer, sampler, repeat, n_trials)

    # runs -----------------------------------------------------------------------------------
    def save_run(self, study_id: int, record: RunRecord) -> int | None:
        """Write a run and its curves in one transaction. A re-evaluation already stored
        (same source run and seed) is skipped and None returned."""
        try:
            with self.engine.begin() as conn:
                return write_run(conn, study_id, record)
        except IntegrityError:
            if record.kind == "reevaluation":
                return None
            raise

    def save_trial_run(self, study_id: int, record: RunRecord) -> None:
        """A trial's run: written with the trial's final state, in the same transaction, so the
        two always agree (at once on the in-memory store, whose Optuna storage is not SQL)."""
        if self.rdb is None or record.optuna_trial_id is None:
            self.save_run(study_id, record)
        else:
            self.rdb.hold_run(record.optuna_trial_id, lambda conn: write_run(conn, study_id, record))


def write_run(conn: Connection, study_id: int, record: RunRecord) -> int:
    """Insert a run and its curves on ``conn`` (the caller owns the transaction); its id."""
    row = {k: v for k, v in vars(record).items() if k != "curves"}
    row.update(study_id=study_id, created_at=dt.datetime.now(dt.UTC))
    run_id = conn.execute(insert(schema.runs).values(**row)).inserted_primary_key[0]
    if record.curves:
        conn.execute(insert(schema.curves), [
            {"run_id": run_id, "series": series, "steps": c.steps, "seconds": c.seconds, "values": c.values}
            for series, c in record.curves.items()
        ])
    return run_id
