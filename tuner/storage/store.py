"""The Store: Optuna's storage and tuner's tables over one engine; with ``_optuna_fast``, the only
module that writes SQL. It speaks plain data (names, dicts, rows), never tuner's spec objects."""

import contextlib
import datetime as dt
import os
import re
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import optuna
from optuna.exceptions import ExperimentalWarning
from optuna.storages import InMemoryStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial
from sqlalchemy import Connection, Engine, Row, Table, create_engine, delete, insert, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.pool import StaticPool

from tuner.errors import ConfigError, shown
from tuner.storage import schema
from tuner.storage._optuna_fast import _TRIALS, WorkerCache, WorkerStorage
from tuner.storage.engine import check_writer, configure_sqlite, engine_kwargs, is_sqlite
from tuner.storage.migrate import upgrade
from tuner.storage.problems import translated
from tuner.storage.records import RunRecord, StudyRow, encoded

HEARTBEAT_DEFAULTS_S = {"TUNER_HEARTBEAT_INTERVAL": 5, "TUNER_GRACE_PERIOD": 20}
HEARTBEAT_MAX_S = 86_400
MAX_RETRY = 3


def heartbeat_settings() -> tuple[int, int]:
    """(interval, grace period) in seconds: a worker beats every TUNER_HEARTBEAT_INTERVAL seconds;
    a trial whose worker sent no beat for TUNER_GRACE_PERIOD seconds is failed and retried.
    Unset or empty: ``HEARTBEAT_DEFAULTS_S``. Each must be a whole number of seconds (Optuna's
    rule) from 1 to HEARTBEAT_MAX_S, and the grace period longer than the interval (else live
    workers' trials would be failed); ConfigError naming the variable otherwise."""
    values: dict[str, int] = {}
    for name, default in HEARTBEAT_DEFAULTS_S.items():
        raw = os.environ.get(name, "").strip()
        if raw and not (re.fullmatch(r"[0-9]{1,6}", raw) and 1 <= int(raw) <= HEARTBEAT_MAX_S):
            raise ConfigError(f"{name}={shown(raw)} is not allowed; allowed: a whole number of seconds "
                              f"from 1 to {HEARTBEAT_MAX_S}")
        values[name] = int(raw) if raw else default
    interval, grace = values["TUNER_HEARTBEAT_INTERVAL"], values["TUNER_GRACE_PERIOD"]
    if grace <= interval:
        raise ConfigError(f"TUNER_GRACE_PERIOD={grace} is not allowed; allowed: more than "
                          f"TUNER_HEARTBEAT_INTERVAL={interval} seconds")
    return interval, grace


def study_name(experiment: str, optimizer: str, sampler: str, repeat: int) -> str:
    """The Optuna study name: readable in ``optuna studies``."""
    return f"{experiment}/{optimizer}/{sampler}/{repeat}"


def worker_storage(url: str, heartbeat_interval: int | None = None, grace_period: int | None = None,
                   on_stale: Callable[[optuna.Study, FrozenTrial], None] | None = None) -> WorkerStorage:
    """Optuna's storage as a worker uses it on ``url`` (wrap it in a ``WorkerCache``), with tuner's
    engine settings (see ``engine``) and, given an interval, heartbeats."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        storage = WorkerStorage(url, engine_kwargs=engine_kwargs(url), heartbeat_interval=heartbeat_interval,
                                grace_period=grace_period, heartbeat_stale_trial_callback=on_stale)
    if is_sqlite(url):
        configure_sqlite(storage.engine)
    return storage


def _between_lookup_and_insert(table: str) -> None:
    """Where a creator that found no row of ``table`` is, before it inserts one: nothing happens
    here, except in tests, which pause one creator here while another creates the same row."""


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
    def open(cls, url: str, *, heartbeat: bool = True, create: bool = True, attempts: int = 3) -> "Store":
        """A writer on ``url`` with Optuna's heartbeat (``heartbeat_settings``) and retry of stale
        trials. ``create``: make the SQLite file and the tables if missing (a launcher); without it
        they must be there (a worker joins an experiment). Checked first, writing nothing: a
        ConfigError names the storage and what to do (``engine.check_writer``; ``Unreachable``
        when no server answers).

        Two processes creating the tables of a new database at once can collide; the loser
        finds them made when it tries again.
        """
        beats = heartbeat_settings() if heartbeat else None
        check_writer(url, create=create)
        with translated(url):
            for attempt in range(1, attempts):
                try:
                    return cls._open(url, beats)
                except DBAPIError:
                    time.sleep(0.5 * attempt)
            return cls._open(url, beats)

    @classmethod
    def _open(cls, url: str, beats: tuple[int, int] | None) -> "Store":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            on_stale = RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)
        storage = worker_storage(url, *beats, on_stale) if beats else worker_storage(url)
        store = cls(WorkerCache(storage), storage.engine, url)
        store.rdb = storage
        storage.write_runs = write_runs
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

    def fail_stale_trials(self, study_id: int) -> int:
        """Fail the study's trials whose worker stopped beating and queue each again up to MAX_RETRY
        times, as the stale-trial callback ``open`` sets up does, in one transaction
        (``WorkerStorage.fail_stale_trials``); how many failed. 0 without heartbeats."""
        return self.optuna.fail_stale_trials(study_id, MAX_RETRY) if self.rdb is not None else 0

    def forget_cached_trials(self) -> None:
        """Start Optuna's cache afresh: after a study was deleted by another process, the database
        may give its trials' ids to new trials, which the cache would take for the deleted ones."""
        if self.rdb is not None:
            self.optuna = WorkerCache(self.rdb)

    # experiments and studies ----------------------------------------------------------------
    def ensure_experiment(self, name: str, task: str, spec: dict[str, Any], spec_version: int) -> Row[Any]:
        """The tuner_experiments row of ``name`` (id, name, task, spec, created_at, spec_version):
        created with the study file ``spec`` (plain JSON data) in format ``spec_version`` if there
        is none. Whether a row found has the same study file is the caller's to judge."""
        return self._find_or_insert(schema.experiments, "name", dict(
            name=name, task=task, spec=spec, spec_version=spec_version, created_at=dt.datetime.now(dt.UTC)))

    def _find_or_insert(self, table: Table, key: str, values: dict[str, Any]) -> Row[Any]:
        """The row of ``table`` whose unique column ``key`` holds ``values[key]``, inserted with
        ``values`` if there is none. When another creator inserts it between this one's lookup and
        insert, its row is read in a transaction of its own: in the lookup's transaction MariaDB
        (REPEATABLE READ) would show only what was committed before the lookup."""
        found = select(table).where(table.c[key] == values[key])
        with self.engine.begin() as conn:
            row = conn.execute(found).first()
        if row is not None:
            return row
        _between_lookup_and_insert(table.name)
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(table).values(**values))
                return conn.execute(found).one()
        except IntegrityError:
            with self.engine.begin() as conn:
                row = conn.execute(found).first()
            if row is None:  # not another creator's row: the values break another rule
                raise
            return row

    def ensure_studies(self, experiment_id: int, experiment: str, studies: Iterable[tuple[str, str, int]],
                       n_trials: int, metric: str) -> list[StudyRow]:
        """One Optuna study (minimising ``metric``, its name shown by Optuna's tools) and one
        tuner_studies row per (optimizer, sampler, repeat) of ``studies``; idempotent. An Optuna
        study deleted by another tool (optuna-dashboard, ``optuna delete-study``) is created
        again, empty: tuner's runs of it stay, and count towards its budget."""
        rows = []
        for optimizer, sampler, repeat in studies:
            name = study_name(experiment, optimizer, sampler, repeat)
            study = optuna.create_study(storage=self.optuna, study_name=name, direction="minimize",
                                        load_if_exists=True)
            if study.metric_names != [metric]:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ExperimentalWarning)
                    study.set_metric_names([metric])
            rows.append(self._ensure_study_row(experiment_id, name, optimizer, sampler, repeat, n_trials))
        self._detach_deleted_trials([row.id for row in rows])
        return rows

    def _detach_deleted_trials(self, study_ids: list[int]) -> None:
        """Runs of these studies whose Optuna trial was deleted (with its study, by Optuna's tools)
        keep their results but name no Optuna trial any more: the database may give the id to a
        new trial."""
        if self.rdb is None:  # in memory, Optuna's trials are not in SQL
            return
        runs = schema.runs
        with self.engine.begin() as conn:
            conn.execute(update(runs).where(
                runs.c.study_id.in_(study_ids), runs.c.optuna_trial_id.is_not(None),
                runs.c.optuna_trial_id.not_in(select(_TRIALS.c.trial_id)),
            ).values(optuna_trial_id=None))

    def _ensure_study_row(self, experiment_id: int, name: str, optimizer: str, sampler: str,
                          repeat: int, n_trials: int) -> StudyRow:
        row = self._find_or_insert(schema.studies, "study_name", dict(
            experiment_id=experiment_id, study_name=name, optimizer=optimizer, sampler=sampler, repeat=repeat,
            n_trials=n_trials))
        return StudyRow(row.id, row.study_name, row.optimizer, row.sampler, row.repeat, row.n_trials)

    # runs -----------------------------------------------------------------------------------
    def save_run(self, study_id: int, record: RunRecord) -> int | None:
        """``save_runs`` of one run."""
        return self.save_runs([(study_id, record)])[0]

    def save_runs(self, runs: Sequence[tuple[int, RunRecord]]) -> list[int | None]:
        """Write runs (study id, record) and their curves in one transaction (``write_runs``); their
        ids, in order. For runs not written with their Optuna trial's state (``save_trial_run``):
        re-evaluations, trials of the in-memory store. A re-evaluation already stored (same source
        run and seed: another worker ran it) is skipped and None returned for it: the refused
        transaction is tried again one run at a time."""
        try:
            with self.engine.begin() as conn:
                return list(write_runs(conn, runs))
        except IntegrityError:
            if len(runs) == 1 and runs[0][1].kind == "reevaluation":
                return [None]
            if len(runs) > 1 and any(record.kind == "reevaluation" for _, record in runs):
                return [self.save_runs([run])[0] for run in runs]
            raise

    def save_trial_run(self, study_id: int, record: RunRecord) -> None:
        """A trial's run: written with the trial's final state, in the same transaction, so the
        two always agree (at once on the in-memory store, whose Optuna storage is not SQL)."""
        if self.rdb is None or record.optuna_trial_id is None:
            self.save_run(study_id, record)
        else:
            self.rdb.hold_run(record.optuna_trial_id, (study_id, record))

    def holding(self) -> contextlib.AbstractContextManager[list[int]]:
        """A population's finishing writes in one transaction (``WorkerStorage.holding``); on the
        in-memory store, which writes at once, a block that holds nothing."""
        return self.rdb.holding() if self.rdb is not None else contextlib.nullcontext([])

    def reserve_trials(self, study_id: int, count: int, budget: int) -> int:
        """How many trials the next population of the Optuna study ``study_id`` asks for: up to
        ``count``, retries first, within ``budget``; taken in one transaction for ``study.ask``
        (``WorkerStorage.reserve_trials``). On the in-memory store (one process) ``count``."""
        if self.rdb is None:
            return count
        return self.rdb.reserve_trials(study_id, count, budget)

    def asking(self, study_id: int) -> contextlib.AbstractContextManager[None]:
        """While a population is asked: its study read from the database once (``WorkerCache.asking``)."""
        return self.optuna.asking(study_id) if isinstance(self.optuna, WorkerCache) else contextlib.nullcontext()

    def record_heartbeats(self, trial_ids: list[int]) -> None:
        """Beat every trial of a population at once; nothing on the in-memory store (no heartbeats)."""
        if self.rdb is not None and self.rdb.heartbeat_interval is not None:
            self.rdb.record_heartbeats(trial_ids)


    # rankings -------------------------------------------------------------------------------
    def save_ranking(self, experiment_id: int, rankings: list[dict[str, Any]],
                     improvements: list[dict[str, Any]]) -> None:
        """Replace the experiment's rows of tuner_rankings and tuner_improvements (columns as the
        tables', without experiment_id and computed_at) in one transaction. Two workers finishing
        at once compute the same rows; the second one's insert, refused (a duplicate, or a deadlock
        on MariaDB), is dropped: the tables are a copy of what ``tuner best`` computes."""
        now = dt.datetime.now(dt.UTC)
        try:
            with self.engine.begin() as conn:
                for table in (schema.rankings, schema.improvements):
                    conn.execute(delete(table).where(table.c.experiment_id == experiment_id))
                if rankings:
                    conn.execute(insert(schema.rankings), [
                        {**row, "experiment_id": experiment_id, "computed_at": now} for row in rankings])
                if improvements:
                    conn.execute(insert(schema.improvements), [
                        {**row, "experiment_id": experiment_id} for row in improvements])
        except (IntegrityError, OperationalError):
            pass


def write_run(conn: Connection, study_id: int, record: RunRecord) -> int:
    """``write_runs`` of one run."""
    return write_runs(conn, [(study_id, record)])[0]


def write_runs(conn: Connection, runs: Sequence[tuple[int, RunRecord]]) -> list[int]:
    """Insert runs (study id, record) and their curves (``records.encoded``) on ``conn``, the
    caller owning the transaction; their ids, in order. Two statements, each one round trip per
    about a thousand rows (SQLAlchemy's insertmanyvalues): the runs' ids come back in order by
    RETURNING (SQLite, PostgreSQL, MariaDB >= 10.5); on a database without (MySQL) the runs
    are inserted one by one."""
    if not runs:
        return []
    now = dt.datetime.now(dt.UTC)
    rows = [{**{k: v for k, v in vars(record).items() if k != "curves"}, "study_id": study_id, "created_at": now}
            for study_id, record in runs]
    table = schema.runs
    if conn.dialect.insert_executemany_returning_sort_by_parameter_order:
        ids = list(conn.execute(insert(table).returning(table.c.id, sort_by_parameter_order=True), rows).scalars())
    else:
        ids = [conn.execute(insert(table).values(**row)).inserted_primary_key[0] for row in rows]
    curves = [{"run_id": run_id, "series": series, **encoded(curve)}
              for run_id, (_, record) in zip(ids, runs, strict=True) for series, curve in record.curves.items()]
    if curves:
        conn.execute(insert(schema.curves), curves)
    return ids
