"""The Store: Optuna's storage and tuner's tables over one engine. The only module that writes SQL."""

import copy
import datetime as dt
import os
import time
import warnings
from dataclasses import dataclass
from typing import Any

import optuna
from optuna import distributions
from optuna.exceptions import ExperimentalWarning
from optuna.storages import InMemoryStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages._cached_storage import _CachedStorage
from optuna.storages._rdb import models
from optuna.storages._rdb.storage import _create_scoped_session
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import Engine, create_engine, insert, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.pool import StaticPool

from tuner.errors import ConfigError
from tuner.spec import Experiment
from tuner.storage import schema
from tuner.storage.engine import configure_sqlite, engine_kwargs, is_sqlite
from tuner.storage.migrate import upgrade
from tuner.storage.records import RunRecord

HEARTBEAT_INTERVAL_S = int(os.environ.get("TUNER_HEARTBEAT_INTERVAL", 5))
GRACE_PERIOD_S = int(os.environ.get("TUNER_GRACE_PERIOD", 20))
"""A trial whose worker sent no heartbeat for the grace period is failed and retried (seconds)."""
MAX_RETRY = 3


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


class BatchedParamsStorage(RDBStorage):
    """RDBStorage that writes a trial's sampled parameters in one transaction, not one each.

    ``set_trial_param`` is held back until ``flush_params`` (the objective calls it once
    sampling is done) or until the trial's state changes, whichever comes first. Optuna's
    cache in front of this storage already holds the values, so this process sees them at once.
    And ``Trial`` re-reads the trial just created: it gets the copy ``_create_new_trial`` returned.
    The first heartbeat is written right after the trial is created, in the worker's thread, so
    the heartbeat thread (which would write it at once, contending for SQLite's lock) skips it.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pending: list[tuple] = []
        self._created: FrozenTrial | None = None
        self._beaten: set[int] = set()

    def _create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> FrozenTrial:
        created = super()._create_new_trial(study_id, template_trial)
        self._created = copy.deepcopy(created)
        if self.heartbeat_interval is not None and created.state == TrialState.RUNNING:
            super().record_heartbeat(created._trial_id)
            self._beaten.add(created._trial_id)
        return created

    def record_heartbeat(self, trial_id: int) -> None:
        if trial_id in self._beaten:  # the first beat was written with the trial, in this thread
            self._beaten.discard(trial_id)
            return
        super().record_heartbeat(trial_id)

    def get_trial(self, trial_id: int) -> FrozenTrial:
        """The trial just created is handed back as created (Optuna reads it again at once)."""
        created, self._created = self._created, None
        if created is not None and created._trial_id == trial_id:
            return created
        return super().get_trial(trial_id)

    def _set_trial_param(self, trial_id: int, param_name: str, param_value_internal: float,
                         distribution: Any, previous_distribution: Any) -> None:
        self._pending.append((trial_id, param_name, param_value_internal, distribution, previous_distribution))

    def flush_params(self) -> None:
        """One transaction: the trial checked once, then every parameter inserted."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        with _create_scoped_session(self.scoped_session, True) as session:
            checked: set[int] = set()
            for trial_id, name, value, distribution, previous in pending:
                if previous is None:  # first sight of this parameter here: Optuna's own full check
                    self._set_trial_param_without_commit(session, trial_id, name, value, distribution, None)
                    continue
                if trial_id not in checked:
                    trial = models.TrialModel.find_or_raise_by_id(trial_id, session)
                    self.check_trial_is_updatable(trial_id, trial.state)
                    checked.add(trial_id)
                distributions.check_distribution_compatibility(previous, distribution)
                session.add(models.TrialParamModel(
                    trial_id=trial_id, param_name=name, param_value=value,
                    distribution_json=distributions.distribution_to_json(distribution),
                ))

    def set_trial_state_values(self, trial_id: int, state: TrialState, values: Any = None) -> bool:
        self.flush_params()
        return super().set_trial_state_values(trial_id, state, values)


class WorkerCache(_CachedStorage):
    """Optuna's cache in front of the storage, skipping a re-read of a study within 50 ms.

    ``study.ask`` reads a study's new trials to find WAITING ones and the sampler reads them
    again a few milliseconds later; that second read only adds what other workers did in
    between, which the next trial sees anyway. A state change made here (``tell``) makes the
    next read go to the database, so this process always sees its own finished trials.
    """

    MIN_INTERVAL_S = 0.05

    def __init__(self, backend: RDBStorage) -> None:
        super().__init__(backend)
        self._read_at: dict[int, float] = {}

    def _read_trials_from_remote_storage(self, study_id: int) -> None:
        now = time.monotonic()
        if now - self._read_at.get(study_id, -1.0) < self.MIN_INTERVAL_S:
            return
        super()._read_trials_from_remote_storage(study_id)
        self._read_at[study_id] = now

    def set_trial_state_values(self, trial_id: int, state: TrialState, values: Any = None) -> bool:
        self._read_at.clear()
        return super().set_trial_state_values(trial_id, state, values)


class StaleTrialCallback:
    """A worker died mid-trial: mark its run row (if written) FAIL, then let Optuna retry the trial."""

    def __init__(self) -> None:
        self.store: Store | None = None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            self._retry = RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if self.store is not None:
            self.store.mark_trial_failed(trial._trial_id)
        self._retry(study, trial)


class Store:
    """One database as tuner uses it. ``Store.open(url)`` migrates tuner's tables on the way."""

    def __init__(self, optuna_storage: optuna.storages.BaseStorage, engine: Engine, url: str) -> None:
        self.optuna = optuna_storage
        self.engine = engine
        self.url = url
        self.rdb: BatchedParamsStorage | None = None
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
        on_stale = StaleTrialCallback()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            storage = BatchedParamsStorage(
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
        on_stale.store = store
        return store

    @classmethod
    def memory(cls) -> "Store":
        """Optuna's in-memory storage and an in-memory SQLite for tuner's tables (one process)."""
        engine = create_engine("sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False})
        return cls(InMemoryStorage(), engine, "memory")

    def close(self) -> None:
        self.engine.dispose()

    def flush_params(self) -> None:
        """Write the parameters sampled so far (one transaction); see BatchedParamsStorage."""
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
        row = {k: v for k, v in vars(record).items() if k != "curves"}
        row.update(study_id=study_id, created_at=dt.datetime.now(dt.UTC))
        try:
            with self.engine.begin() as conn:
                run_id = conn.execute(insert(schema.runs).values(**row)).inserted_primary_key[0]
                if record.curves:
                    conn.execute(insert(schema.curves), [
                        {"run_id": run_id, "series": series, "steps": c.steps, "seconds": c.seconds, "values": c.values}
                        for series, c in record.curves.items()
                    ])
        except IntegrityError:
            if record.kind == "reevaluation":
                return None
            raise
        return run_id

    def mark_trial_failed(self, optuna_trial_id: int) -> None:
        """The Optuna trial behind a run was failed: so is the run."""
        with self.engine.begin() as conn:
            conn.execute(update(schema.runs).where(schema.runs.c.optuna_trial_id == optuna_trial_id)
                         .values(state="FAIL"))
