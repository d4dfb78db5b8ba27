"""A faster RDB storage for Optuna on the worker's hot path: the only module that touches Optuna's
private storage classes and tables. Pinned to the Optuna minor range in ``pyproject.toml``.

The contract
------------
``WorkerCache(WorkerStorage(url, ...))`` is an Optuna storage: it passes Optuna's own suite
(``optuna.testing.pytest_storages.StorageTestCase``) and Optuna's heartbeat cases on SQLite,
PostgreSQL and MariaDB (tests/storage/test_optuna_contract.py), and every sampler suggests
through it exactly what it suggests through Optuna's stock ``RDBStorage``
(tests/storage/test_sampler_oracle.py). It writes the same rows as Optuna. Within that contract:

- **A trial this process runs is served from its own copy.** Every write this process makes to
  the trial (parameters, user and system attributes, intermediate values, state) updates the copy
  as it updates the database, so what this process reads is always what it wrote; nothing else
  writes to a RUNNING trial except to finish it (another worker failing it as stale), which the
  final write detects (``UpdateFinishedTrialError``).
- **Parameters are written once sampling is done.** ``set_trial_param`` (and
  ``set_trial_system_attr``, a sampler's bookkeeping) on a trial this process runs is held until
  ``flush_params`` (the objective calls it before training) or the trial's next state change,
  then all are written in one transaction with Optuna's checks (trial unfinished, distribution
  compatible with the study's). Optuna's own ``_CachedStorage`` documents the same persistence
  rule: a trial's attributes are guaranteed in the database before its state changes.
- **A trial and its first heartbeat are one transaction** (a WAITING trial gets its first beat as
  it starts), so a trial is never RUNNING without a heartbeat: a worker killed before its first
  beat still has its trial failed after the grace period. (Optuna's stock storage leaves such a
  trial RUNNING forever. This is the one behaviour that differs from it, by design, and the one
  heartbeat case adapted to it.)
- **A trial's final state, its values and tuner's run row (``hold_run``) are one transaction.**
- **A population's trials are created in one transaction and finished in one** (the worker's
  populations, ``tuner.populations``): ``reserve_trials`` starts the study's WAITING trials and
  creates new ones, RUNNING, numbered and with their first heartbeats, within the study's budget,
  and ``create_new_trial`` hands them out; inside ``holding()`` the
  finishing writes of this process's trials (state, values, user attributes, intermediate values,
  runs) are held and written together when the block ends. A trial another worker failed
  meanwhile (stale) is left as it is and its writes dropped, as a lone trial's would be.
  ``record_heartbeats`` beats every trial of a population in one statement. While a population's
  trials are asked, the study's queue reads as empty: the reservation took the queued trials.
- **Stale trials are failed and queued again in one transaction** (``fail_stale_trials``): the
  rows Optuna's ``fail_stale_trials`` writes trial by trial with ``RetryHeartbeatStaleTrialCallback``.
- **Other processes' trials are read with one Core query per table** (``load_trials``), and a
  study's trial list is re-read at most every ``WorkerCache.MIN_INTERVAL_S``: changes made by
  other processes are seen within that interval, changes made through this storage at once.
"""

import contextlib
import copy
import datetime as dt
import json
import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from optuna import distributions
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import RDBStorage
from optuna.storages._cached_storage import _CachedStorage, _StudyInfo
from optuna.storages._rdb import models
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import Connection, case, delete, func, insert, or_, select, update

from tuner.storage.engine import read_once

_STUDIES, _TRIALS, _PARAMS, _VALUES, _HEARTBEATS, _USER_ATTRS, _SYSTEM_ATTRS, _INTERMEDIATE = (
    model.__table__ for model in (
        models.StudyModel, models.TrialModel, models.TrialParamModel, models.TrialValueModel,
        models.TrialHeartbeatModel, models.TrialUserAttributeModel, models.TrialSystemAttributeModel,
        models.TrialIntermediateValueModel))
"""Optuna's tables, read and written with SQLAlchemy Core on the hot path."""
_log = logging.getLogger("tuner.worker")
_IMMUTABLE = (str, int, float, bool, type(None))


def _copied(value: Any) -> Any:
    """A shallow copy of an object whose state is its ``__dict__`` (a trial, a distribution), made
    directly: ``copy.copy``'s generic reduce costs several times more."""
    copied = object.__new__(type(value))
    copied.__dict__.update(value.__dict__)
    return copied


class _Trial(FrozenTrial):
    """A FrozenTrial this storage built (its own trials and those it loads) with a faster deep
    copy: ``study.tell`` returns one of every trial it tells, ``study.trials`` one of every trial,
    and ``copy.deepcopy``'s generic walk costs more than the rest of a tell. The copy is a plain
    FrozenTrial equal to the generic one and sharing nothing mutable with the original: containers
    are new, distributions are copied (their fields hold numbers, strings and tuples of them), and
    attribute values are deep-copied unless they are numbers, strings or None. Its shallow copy
    (Optuna's ``Trial`` takes one at every suggestion, this storage at every write) is one dict
    copy, not ``copy.copy``'s generic reduce. It shows and pickles as the FrozenTrial it copies to."""

    def __copy__(self) -> "_Trial":
        return _copied(self)

    def __repr__(self) -> str:
        return repr(copy.deepcopy(self))  # FrozenTrial(...), as Optuna's own storages give it

    def __reduce__(self) -> tuple:
        return object.__new__, (FrozenTrial,), copy.deepcopy(self).__dict__  # a FrozenTrial: read without tuner

    def __deepcopy__(self, memo: dict[int, Any]) -> FrozenTrial:
        def own(value: Any) -> Any:
            return value if type(value) in _IMMUTABLE else copy.deepcopy(value, memo)

        return FrozenTrial(
            number=self.number, state=self.state, value=None,
            values=None if self.values is None else list(self.values),
            datetime_start=self.datetime_start, datetime_complete=self.datetime_complete,
            params={name: own(value) for name, value in self.params.items()},
            distributions={name: _copied(d) for name, d in self.distributions.items()},
            user_attrs={key: own(value) for key, value in self.user_attrs.items()},
            system_attrs={key: own(value) for key, value in self.system_attrs.items()},
            intermediate_values=dict(self.intermediate_values), trial_id=self._trial_id,
        )


def _utc(local: dt.datetime) -> dt.datetime:
    """A naive local time as Optuna stores it: naive UTC."""
    return local.astimezone(dt.UTC).replace(tzinfo=None)


def _local(utc: dt.datetime | None) -> dt.datetime | None:
    """A stored naive UTC time as Optuna hands it out: naive local time."""
    return None if utc is None else utc.replace(tzinfo=dt.UTC).astimezone().replace(tzinfo=None)


def _as_stored(value: Any) -> Any:
    """An attribute's value as Optuna reads it back (stored as JSON: tuples become lists)."""
    return json.loads(json.dumps(value))


def _delete_existing(conn: Connection, table: Any, row_id: Any, keys: list) -> None:
    """Delete the rows of ``table`` for ``keys`` (trial ids, or (trial id, key) pairs) that exist,
    found first by a plain read and deleted by primary key: a DELETE by a condition no row meets
    takes gap locks on MariaDB (REPEATABLE READ), on which two workers' finishing inserts deadlock."""
    if not keys:
        return
    if isinstance(keys[0], tuple):
        found = select(row_id, table.c.trial_id, table.c.key).where(table.c.trial_id.in_({k[0] for k in keys}))
        ids = [row[0] for row in conn.execute(found) if (row[1], row[2]) in set(keys)]
    else:
        ids = list(conn.execute(select(row_id).where(table.c.trial_id.in_(keys))).scalars())
    if ids:
        conn.execute(delete(table).where(row_id.in_(ids)))


class WorkerStorage(RDBStorage):
    """Optuna's RDBStorage with fewer round trips per trial (see the module's contract)."""

    LOAD_CHUNK = 1000
    """Trials read per query: an IN list of this many ids stays within every database's limits."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pending: list[tuple[int, str, float, distributions.BaseDistribution,
                                  distributions.BaseDistribution | None]] = []
        """Parameters held for ``flush_params``: trial id, name, internal value, distribution and
        the study's distribution it was already checked against (None: check against the database)."""
        self._own: dict[int, FrozenTrial] = {}
        self._runs: dict[int, Any] = {}
        self.write_runs: Callable[[Connection, list[Any]], Any] | None = None
        """Writes held runs (``hold_run``) on the caller's connection; set by the Store."""
        self._reserved: dict[int, list[FrozenTrial]] = {}
        self._held: list[tuple[int, TrialState, Sequence[float] | None]] | None = None
        """Finishing writes held by ``holding()`` (None outside it): trial id, state, values."""
        self._held_attrs: dict[tuple[int, str], str] = {}
        self._held_reports: dict[tuple[int, int], float] = {}
        self._changed: set[int] = set()
        """Own trials written since the cache last took them up (``take_changed``)."""
        self._pending_attrs: dict[tuple[int, str], str] = {}
        """System attributes of own trials held for ``flush_params``: (trial id, key) -> JSON."""

    # trials this process runs ----------------------------------------------------------------
    def own_trial(self, trial_id: int) -> FrozenTrial | None:
        """This process's copy of a trial it runs, as last written; None for any other. Copies are
        never modified (a write replaces the copy), so one handed out stays as it was."""
        return self._own.get(trial_id)

    def own_trials(self) -> list[FrozenTrial]:
        """The copies of every trial this process runs."""
        return list(self._own.values())

    def _revise(self, trial_id: int, **changes: Any) -> None:
        """Replace the copy of an own trial by one with ``changes``."""
        revised = copy.copy(self._own[trial_id])
        for name, value in changes.items():
            setattr(revised, name, value)
        self._own[trial_id] = revised
        self._changed.add(trial_id)

    def take_changed(self) -> list[FrozenTrial]:
        """The copies of own trials written since the last call (for the cache to take up)."""
        changed, self._changed = self._changed, set()
        return [trial for trial_id in changed if (trial := self._own.get(trial_id)) is not None]

    def _create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> FrozenTrial:
        """A new RUNNING trial numbered as Optuna numbers them (under the study's row lock, the
        count of its trials so far), with its first heartbeat. A template (a retry, an enqueued
        trial) goes through Optuna's own code. Returns this process's copy (see ``own_trial``)."""
        if template_trial is None and self._reserved.get(study_id):
            return self._reserved[study_id].pop(0)
        if template_trial is not None:
            created = super()._create_new_trial(study_id, template_trial)
            if created.state == TrialState.RUNNING:
                self._own[created._trial_id] = created
            return created
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
        self._own[trial_id] = _Trial(
            number=number, state=TrialState.RUNNING, value=None, values=None, datetime_start=now,
            datetime_complete=None, params={}, distributions={}, user_attrs={}, system_attrs={},
            intermediate_values={}, trial_id=trial_id,
        )
        return self._own[trial_id]

    def reserve_trials(self, study_id: int, count: int, budget: int | None = None) -> int:
        """Take up to ``count`` trials of ``study_id`` for this process, in one transaction, for its
        next ``create_new_trial`` calls to hand out: first the study's WAITING trials (retries,
        enqueued trials), started as ``study.ask`` starts one, then new RUNNING trials, no more
        than leaves ``budget`` trials COMPLETE, PRUNED, RUNNING or WAITING; each with its first
        heartbeat. Under the study's row lock, so that workers reserving at once take turns: none
        takes a retry another took, and together they never overshoot ``budget``. New trials are
        numbered as ``_create_new_trial`` numbers one. Returns how many were taken."""
        now = dt.datetime.now()
        with self.engine.begin() as conn:
            locked = select(_STUDIES.c.study_id).where(_STUDIES.c.study_id == study_id).with_for_update()
            if conn.execute(locked).first() is None:
                raise KeyError(f"No study with study_id {study_id} exists.")
            in_study = _TRIALS.c.study_id == study_id
            taken_states = [TrialState.WAITING, TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED]
            first, taken = conn.execute(select(func.count(), func.coalesce(func.sum(
                case((_TRIALS.c.state.in_(taken_states), 1), else_=0)), 0)).where(in_study)).one()
            first, taken = int(first), int(taken)  # MariaDB sums as DECIMAL
            retries = conn.execute(select(_TRIALS.c.trial_id).where(in_study, _TRIALS.c.state == TrialState.WAITING)
                                   .order_by(_TRIALS.c.trial_id).limit(count)).scalars().all()
            if retries:
                conn.execute(update(_TRIALS).where(_TRIALS.c.trial_id.in_(retries))
                             .values(state=TrialState.RUNNING, datetime_start=_utc(now)))
            room = count - len(retries) if budget is None else min(count - len(retries), budget - taken)
            numbers = range(first, first + max(room, 0))
            if numbers:
                conn.execute(insert(_TRIALS), [
                    {"number": number, "study_id": study_id, "state": TrialState.RUNNING,
                     "datetime_start": _utc(now)} for number in numbers])
            created = conn.execute(select(_TRIALS.c.trial_id, _TRIALS.c.number)
                                   .where(in_study, _TRIALS.c.number >= first).order_by(_TRIALS.c.number)).all()
            started = [*retries, *(trial_id for trial_id, _ in created)]
            if started and self.heartbeat_interval is not None:
                conn.execute(delete(_HEARTBEATS).where(_HEARTBEATS.c.trial_id.in_(started)))
                conn.execute(insert(_HEARTBEATS).from_select(
                    ["trial_id", "heartbeat"], select(_TRIALS.c.trial_id, func.now())
                    .where(_TRIALS.c.trial_id.in_(started))))
            # a retry carries what its template gave it (parameters, attributes): read back; a new trial has nothing yet
            loaded = {trial._trial_id: trial for trial in self.load_trials(conn, set(retries))} if retries else {}
        trials = [loaded[trial_id] for trial_id in retries] + [  # the retries first, as study.ask takes them
            _Trial(number=number, state=TrialState.RUNNING, value=None, values=None, datetime_start=now,
                   datetime_complete=None, params={}, distributions={}, user_attrs={}, system_attrs={},
                   intermediate_values={}, trial_id=trial_id) for trial_id, number in created]
        reserved = self._reserved.setdefault(study_id, [])
        for trial in trials:
            self._own[trial._trial_id] = trial
            reserved.append(trial)
        return len(trials)

    def record_heartbeats(self, trial_ids: Sequence[int]) -> None:
        """One heartbeat (the database's clock) for each of ``trial_ids``, in one statement; each
        has beaten before (``_create_new_trial``, ``reserve_trials`` or a WAITING trial's start)."""
        if trial_ids:
            with self.engine.begin() as conn:
                conn.execute(update(_HEARTBEATS).where(_HEARTBEATS.c.trial_id.in_(list(trial_ids)))
                             .values(heartbeat=func.now()))

    def get_trial(self, trial_id: int) -> FrozenTrial:
        """An own trial's copy as a shallow copy (copies are replaced, never changed, on a write)."""
        own = self._own.get(trial_id)
        return copy.copy(own) if own is not None else super().get_trial(trial_id)

    def get_all_trials(self, study_id: int, deepcopy: bool = True, states: Any = None) -> list[FrozenTrial]:
        self.flush_params()  # read directly (not through the cache): what was set is in the database
        return super().get_all_trials(study_id, deepcopy=deepcopy, states=states)

    def record_heartbeat(self, trial_id: int) -> None:
        """As Optuna's (the database's clock), in one statement when the trial has beaten before."""
        with self.engine.begin() as conn:
            beat = conn.execute(update(_HEARTBEATS).where(_HEARTBEATS.c.trial_id == trial_id)
                                .values(heartbeat=func.now()))
            if beat.rowcount == 0:
                conn.execute(insert(_HEARTBEATS).values(trial_id=trial_id, heartbeat=func.now()))

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        """As Optuna's: the study's RUNNING trials whose last heartbeat is older than the grace
        period (default: two intervals) by the database's clock; one query."""
        with read_once(self.engine) as conn:
            return self._stale(conn, study_id)

    def _stale(self, conn: Connection, study_id: int) -> list[int]:
        """``_get_stale_trial_ids`` on ``conn``, in trial id order."""
        assert self.heartbeat_interval is not None
        grace_s = self.grace_period if self.grace_period is not None else 2 * self.heartbeat_interval
        grace = dt.timedelta(seconds=grace_s)
        beats = (select(_TRIALS.c.trial_id, _HEARTBEATS.c.heartbeat, func.now())
                 .join(_HEARTBEATS, _HEARTBEATS.c.trial_id == _TRIALS.c.trial_id)
                 .where(_TRIALS.c.study_id == study_id, _TRIALS.c.state == TrialState.RUNNING)
                 .order_by(_TRIALS.c.trial_id))
        rows = conn.execute(beats).all()
        return [trial_id for trial_id, beat, now in rows if now.replace(tzinfo=None) - beat > grace]

    def fail_stale_trials(self, study_id: int, max_retry: int | None) -> int:
        """What Optuna's ``fail_stale_trials`` does for a storage whose stale-trial callback is
        ``RetryHeartbeatStaleTrialCallback(max_retry)`` (intermediate values not inherited), in one
        transaction under the study's row lock instead of two or three per trial: every stale
        trial of ``study_id`` FAIL, and for each that has been retried fewer than ``max_retry``
        times a WAITING copy numbered after the study's trials, with its parameters, distributions
        and user attributes, and system attributes ``failed_trial`` (the first trial of the series)
        and ``retry_history`` (the numbers of the series so far). A worker's crash can leave
        thousands of trials in flight with populations; retried one by one, Optuna's way took
        longer than running them. Returns how many trials were failed."""
        if self.heartbeat_interval is None or not self._get_stale_trial_ids(study_id):  # a read: no lock to take
            return 0
        with self.engine.begin() as conn:
            locked = select(_STUDIES.c.study_id).where(_STUDIES.c.study_id == study_id).with_for_update()
            if conn.execute(locked).first() is None:
                raise KeyError(f"No study with study_id {study_id} exists.")
            stale = self._stale(conn, study_id)
            if stale:  # locked, as a worker finishing its trials locks them: a trial finished meanwhile stays so
                running = select(_TRIALS.c.trial_id).where(_TRIALS.c.trial_id.in_(stale),
                                                           _TRIALS.c.state == TrialState.RUNNING)
                stale = conn.execute(running.with_for_update()).scalars().all()
            if not stale:
                return 0
            conn.execute(update(_TRIALS).where(_TRIALS.c.trial_id.in_(stale))
                         .values(state=TrialState.FAIL, datetime_complete=_utc(dt.datetime.now())))
            failed = sorted(self.load_trials(conn, set(stale)), key=lambda trial: trial._trial_id)
            retries = []
            for trial in failed:
                system_attrs = {"failed_trial": trial.number, "retry_history": [], **trial.system_attrs}
                system_attrs["retry_history"] = [*system_attrs["retry_history"], trial.number]
                if max_retry is None or len(system_attrs["retry_history"]) <= max_retry:
                    retries.append((trial, system_attrs))
            if retries:
                self._insert_waiting(conn, study_id, retries)
        for trial in failed:
            self._own.pop(trial._trial_id, None)
        return len(failed)

    @staticmethod
    def _insert_waiting(conn: Connection, study_id: int, retries: list[tuple[FrozenTrial, dict[str, Any]]]) -> None:
        """Insert a WAITING trial per (trial, system attributes): numbered after the study's trials,
        with the trial's parameters and user attributes, as Optuna's ``create_new_trial`` writes a template."""
        in_study = _TRIALS.c.study_id == study_id
        first = conn.execute(select(func.count()).select_from(_TRIALS).where(in_study)).scalar_one()
        conn.execute(insert(_TRIALS), [{"number": first + k, "study_id": study_id, "state": TrialState.WAITING}
                                       for k in range(len(retries))])
        numbered = select(_TRIALS.c.number, _TRIALS.c.trial_id).where(in_study, _TRIALS.c.number >= first)
        ids = dict(conn.execute(numbered).all())
        params, users, systems = [], [], []
        for k, (trial, system_attrs) in enumerate(retries):
            trial_id = ids[first + k]
            params += [{"trial_id": trial_id, "param_name": name, "param_value": trial.distributions[name]
                        .to_internal_repr(value), "distribution_json": distributions.distribution_to_json(
                            trial.distributions[name])} for name, value in trial.params.items()]
            users += [{"trial_id": trial_id, "key": key, "value_json": json.dumps(value)}
                      for key, value in trial.user_attrs.items()]
            systems += [{"trial_id": trial_id, "key": key, "value_json": json.dumps(value)}
                        for key, value in system_attrs.items()]
        for table, rows in ((_PARAMS, params), (_USER_ATTRS, users), (_SYSTEM_ATTRS, systems)):
            if rows:
                conn.execute(insert(table), rows)

    # writes -----------------------------------------------------------------------------------
    def _set_trial_param(self, trial_id: int, param_name: str, param_value_internal: float,
                         distribution: distributions.BaseDistribution,
                         previous_distribution: distributions.BaseDistribution | None) -> None:
        own = self._own.get(trial_id)
        if own is None:
            return super()._set_trial_param(trial_id, param_name, param_value_internal, distribution,
                                            previous_distribution)
        if previous_distribution is not None:
            distributions.check_distribution_compatibility(previous_distribution, distribution)
        self._pending.append((trial_id, param_name, param_value_internal, distribution, previous_distribution))
        self._revise(trial_id, params={**own.params, param_name: distribution.to_external_repr(param_value_internal)},
                     distributions={**own.distributions, param_name: distribution})

    def flush_params(self) -> None:
        """One transaction: each trial checked to be unfinished and each parameter's distribution
        against the study's (as Optuna checks them; the cache's copy of the study's distribution
        when it had one, as Optuna's cache does), then every held parameter and system attribute
        (a sampler's, e.g. CMA-ES's generation) written."""
        if not self._pending and not self._pending_attrs:
            return
        pending, self._pending = self._pending, []
        attrs, self._pending_attrs = self._pending_attrs, {}
        with self.engine.begin() as conn:
            self._check_all_updatable(conn, {p[0] for p in pending} | {trial_id for trial_id, _ in attrs})
            _delete_existing(conn, _SYSTEM_ATTRS, _SYSTEM_ATTRS.c.trial_system_attribute_id, list(attrs))
            if attrs:
                conn.execute(insert(_SYSTEM_ATTRS), [{"trial_id": trial_id, "key": key, "value_json": value}
                                                     for (trial_id, key), value in attrs.items()])
            if not pending:
                return
            for trial_id, name, _, distribution, checked in pending:  # checked: in _set_trial_param already
                if checked is None and (previous := self._study_distribution(conn, trial_id, name)) is not None:
                    distributions.check_distribution_compatibility(previous, distribution)
            as_json: dict[tuple, str] = {}  # equal distributions (their class and fields) written once as JSON

            def json_of(distribution: distributions.BaseDistribution) -> str:
                key = (type(distribution), *vars(distribution).items())
                if (known := as_json.get(key)) is None:
                    known = as_json[key] = distributions.distribution_to_json(distribution)
                return known

            conn.execute(insert(_PARAMS), [
                {"trial_id": trial_id, "param_name": name, "param_value": value,
                 "distribution_json": json_of(distribution)} for trial_id, name, value, distribution, _ in pending
            ])

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        if self._held is not None and trial_id in self._own:
            self._held_attrs[(trial_id, key)] = json.dumps(value)
        else:
            super().set_trial_user_attr(trial_id, key, value)
        if (own := self._own.get(trial_id)) is not None:
            self._revise(trial_id, user_attrs={**own.user_attrs, key: _as_stored(value)})

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        """As Optuna's; on a trial this process runs, held with its parameters (``flush_params``)."""
        if trial_id in self._own:
            self._pending_attrs[(trial_id, key)] = json.dumps(value)
        else:
            super().set_trial_system_attr(trial_id, key, value)
        if (own := self._own.get(trial_id)) is not None:
            self._revise(trial_id, system_attrs={**own.system_attrs, key: _as_stored(value)})

    def set_trial_intermediate_value(self, trial_id: int, step: int, intermediate_value: float) -> None:
        if self._held is not None and trial_id in self._own:
            self._held_reports[(trial_id, step)] = float(intermediate_value)
        else:
            super().set_trial_intermediate_value(trial_id, step, intermediate_value)
        if (own := self._own.get(trial_id)) is not None:
            self._revise(trial_id, intermediate_values={**own.intermediate_values, step: float(intermediate_value)})

    def hold_run(self, trial_id: int, run: Any) -> None:
        """Have ``run`` written (``write_runs``) in the transaction that records the trial's final
        state, if that state is COMPLETE or PRUNED."""
        self._runs[trial_id] = run

    @contextlib.contextmanager
    def holding(self) -> Iterator[list[int]]:
        """Hold the finishing writes of this process's trials made in the block (see the module's
        contract) and write them in one transaction as it ends, also when it raises. Yields a list
        that then holds the trials whose writes were dropped: another worker had failed them."""
        self._held, self._held_attrs, self._held_reports = [], {}, {}
        dropped: list[int] = []
        try:
            yield dropped
        finally:
            held, self._held = self._held, None
            try:
                if held:
                    dropped.extend(self._finish_held(held))
            finally:
                for trial_id, _, _ in held:
                    self._own.pop(trial_id, None)
                    self._runs.pop(trial_id, None)

    def _finish_held(self, held: list[tuple[int, TrialState, Sequence[float] | None]]) -> list[int]:
        """Write the held finishes in one transaction; the ids of those another worker had finished."""
        self.flush_params()
        ids = [trial_id for trial_id, _, _ in held]
        with self.engine.begin() as conn:
            live = set(conn.execute(select(_TRIALS.c.trial_id).where(
                _TRIALS.c.trial_id.in_(ids), _TRIALS.c.state.in_([TrialState.RUNNING, TrialState.WAITING]),
            ).with_for_update()).scalars())
            held = [h for h in held if h[0] in live]
            now = _utc(dt.datetime.now())
            for state in {state for _, state, _ in held}:
                conn.execute(update(_TRIALS).where(_TRIALS.c.trial_id.in_([i for i, s, _ in held if s == state]))
                             .values(state=state, datetime_complete=now))
            valued = [(trial_id, values) for trial_id, _, values in held if values is not None]
            if valued:
                _delete_existing(conn, _VALUES, _VALUES.c.trial_value_id, [i for i, _ in valued])
                conn.execute(insert(_VALUES), [
                    dict(zip(("value", "value_type"), models.TrialValueModel.value_to_stored_repr(value), strict=True),
                         trial_id=trial_id, objective=objective)
                    for trial_id, values in valued for objective, value in enumerate(values)])
            attrs = [(i, key, value) for (i, key), value in self._held_attrs.items() if i in live]
            _delete_existing(conn, _USER_ATTRS, _USER_ATTRS.c.trial_user_attribute_id, [(i, k) for i, k, _ in attrs])
            if attrs:
                conn.execute(insert(_USER_ATTRS), [{"trial_id": i, "key": k, "value_json": v} for i, k, v in attrs])
            reports = [(i, step, value) for (i, step), value in self._held_reports.items() if i in live]
            if reports:
                conn.execute(insert(_INTERMEDIATE), [
                    dict(zip(("intermediate_value", "intermediate_value_type"),
                             models.TrialIntermediateValueModel.intermediate_value_to_stored_repr(value), strict=True),
                         trial_id=i, step=step) for i, step, value in reports])
            runs = [self._runs[i] for i, state, _ in held
                    if i in self._runs and state in (TrialState.COMPLETE, TrialState.PRUNED)]
            if runs:
                self.write_runs(conn, runs)
        if dropped := sorted(set(ids) - live):
            _log.warning("%d trial(s) outlived their heartbeat: another worker failed them, and they run again",
                         len(dropped))
        return dropped

    def set_trial_state_values(self, trial_id: int, state: TrialState, values: Sequence[float] | None = None) -> bool:
        """As Optuna's. A finished state is one transaction with the trial's values and, if it is
        COMPLETE or PRUNED, its held run (a FAIL drops it). A WAITING trial this process starts
        gets its first heartbeat and becomes one it runs."""
        if self._held is not None and state.is_finished() and trial_id in self._own:
            self._held.append((trial_id, state, values))
            self._revise(trial_id, state=state, values=None if values is None else list(values),
                         datetime_complete=dt.datetime.now())
            return True
        write_run = self._runs.pop(trial_id, None)
        try:
            self.flush_params()
            if not state.is_finished():
                started = super().set_trial_state_values(trial_id, state, values)
                if started and state == TrialState.RUNNING:
                    if self.heartbeat_interval is not None:
                        self.record_heartbeat(trial_id)
                    self._own[trial_id] = super().get_trial(trial_id)
                    self._changed.add(trial_id)
                return started
            with self.engine.begin() as conn:
                finished = conn.execute(update(_TRIALS).where(
                    _TRIALS.c.trial_id == trial_id, _TRIALS.c.state.in_([TrialState.RUNNING, TrialState.WAITING]),
                ).values(state=state, datetime_complete=_utc(dt.datetime.now())))
                if finished.rowcount != 1:
                    self._check_updatable(conn, trial_id)  # KeyError, or UpdateFinishedTrialError
                if values is not None:
                    _delete_existing(conn, _VALUES, _VALUES.c.trial_value_id, [trial_id])
                    conn.execute(insert(_VALUES), [
                        dict(zip(("value", "value_type"), models.TrialValueModel.value_to_stored_repr(value),
                                 strict=True), trial_id=trial_id, objective=objective)
                        for objective, value in enumerate(values)
                    ])
                if write_run is not None and state in (TrialState.COMPLETE, TrialState.PRUNED):
                    self.write_runs(conn, [write_run])
            return True
        finally:
            if state.is_finished():
                self._own.pop(trial_id, None)

    @classmethod
    def _check_all_updatable(cls, conn: Connection, trial_ids: set[int]) -> None:
        """``_check_updatable`` for each of ``trial_ids``, in one query when all are unfinished."""
        states = dict(conn.execute(select(_TRIALS.c.trial_id, _TRIALS.c.state)
                                   .where(_TRIALS.c.trial_id.in_(sorted(trial_ids)))).all())
        for trial_id in trial_ids:
            if trial_id not in states or states[trial_id].is_finished():
                cls._check_updatable(conn, trial_id)  # its error

    @staticmethod
    def _check_updatable(conn: Connection, trial_id: int) -> None:
        row = conn.execute(select(_TRIALS.c.number, _TRIALS.c.state).where(_TRIALS.c.trial_id == trial_id)).first()
        if row is None:
            raise KeyError(f"No trial with trial_id {trial_id} exists.")
        if row.state.is_finished():
            raise UpdateFinishedTrialError(f"Trial#{row.number} has already finished and can not be updated.")

    @staticmethod
    def _study_distribution(conn: Connection, trial_id: int, name: str) -> distributions.BaseDistribution | None:
        """The distribution of parameter ``name`` in the trial's study so far, if any."""
        study = select(_TRIALS.c.study_id).where(_TRIALS.c.trial_id == trial_id).scalar_subquery()
        found = conn.execute(select(_PARAMS.c.distribution_json).join(_TRIALS, _TRIALS.c.trial_id == _PARAMS.c.trial_id)
                             .where(_TRIALS.c.study_id == study, _PARAMS.c.param_name == name).limit(1)).scalar()
        return None if found is None else distributions.json_to_distribution(found)

    # reads of other processes' trials ---------------------------------------------------------
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
            loaded.append(_Trial(
                number=row.number, state=row.state, value=None, values=[values[k] for k in sorted(values)] or None,
                datetime_start=_local(row.datetime_start), datetime_complete=_local(row.datetime_complete),
                trial_id=row.trial_id, **part,
            ))
        return loaded


class WorkerCache(_CachedStorage):
    """Optuna's cache in front of a WorkerStorage, reading less to see a study's new trials.

    - The trials this process runs are the storage's live copies: always as written.
    - A trial this process finishes goes into the cache as told: no read is needed to see it.
    - A read first asks for the ids and states of the trials Optuna would re-read; only other
      processes' trials that the cache does not already hold, finished and in that state, are
      loaded in full.
    - A study is re-read at most every ``MIN_INTERVAL_S``: ``study.ask`` reads it to find WAITING
      trials and the sampler again a few milliseconds later; that second read would only add what
      other processes did in between. Any state change through this storage ends the pause, so
      the next read always sees it (and a retry that is waiting).
    """

    MIN_INTERVAL_S = 0.05

    def __init__(self, backend: WorkerStorage) -> None:
        super().__init__(backend)
        self._backend: WorkerStorage = backend
        self._read_at: dict[int, float] = {}
        self._by_state: dict[int, dict[TrialState, set[int]]] = {}
        self._asking: set[int] = set()
        self._asking_since: dict[int, float] = {}

    def _read_trials_from_remote_storage(self, study_id: int) -> None:
        now = time.monotonic()
        last = self._read_at.get(study_id, -math.inf)
        if now - last < self.MIN_INTERVAL_S or (study_id in self._asking and last > self._asking_since[study_id]):
            with self._lock:
                self._take_own_changes()
            return
        with self._lock:
            if study_id not in self._studies:
                self._check_study(study_id)
            study = self._studies.setdefault(study_id, _StudyInfo())
            changed = select(_TRIALS.c.trial_id, _TRIALS.c.state).where(_TRIALS.c.study_id == study_id, or_(
                _TRIALS.c.trial_id > study.last_finished_trial_id, _TRIALS.c.trial_id.in_(study.unfinished_trial_ids)))
            with read_once(self._backend.engine) as conn:
                states = dict(conn.execute(changed).all())
                own = [t for i in states if (t := self._backend.own_trial(i)) is not None]
                own_ids = {t._trial_id for t in own}
                unknown = {i for i, state in states.items() if i not in own_ids and not self._holds(i, state)}
                loaded = self._backend.load_trials(conn, unknown) if unknown else []
            self._read_at[study_id] = now
            self._add_trials_to_cache(study_id, loaded + own)
            states.update((trial._trial_id, trial.state) for trial in loaded + own)
            for trial_id, state in states.items():
                if state.is_finished():
                    study.last_finished_trial_id = max(study.last_finished_trial_id, trial_id)
                    study.unfinished_trial_ids.discard(trial_id)
                else:
                    study.unfinished_trial_ids.add(trial_id)

    def _take_own_changes(self) -> None:
        """Put the own trials written since the last time into the cache (a trial the cache does not
        know yet, reserved and not handed out, is left out: ``create_new_trial`` adds it)."""
        by_study: dict[int, list[FrozenTrial]] = {}
        for trial in self._backend.take_changed():
            if (known := self._trial_id_to_study_id_and_number.get(trial._trial_id)) is not None:
                by_study.setdefault(known[0], []).append(trial)
        for study_id, trials in by_study.items():
            self._add_trials_to_cache(study_id, trials)

    def _add_trials_to_cache(self, study_id: int, trials: list[FrozenTrial]) -> None:
        """As Optuna's, keeping ``_by_state``: the numbers of each study's cached trials by
        unfinished state (RUNNING, WAITING)."""
        super()._add_trials_to_cache(study_id, trials)
        by_state = self._by_state.setdefault(study_id, {TrialState.RUNNING: set(), TrialState.WAITING: set()})
        for trial in trials:
            for state, numbers in by_state.items():
                if trial.state == state:
                    numbers.add(trial.number)
                else:
                    numbers.discard(trial.number)

    def get_all_trials(self, study_id: int, deepcopy: bool = True, states: Any = None) -> list[FrozenTrial]:
        """As Optuna's; asked only for unfinished states (``study.ask`` looks for WAITING trials at
        every trial), it looks at the study's trials in those states only, not at all of them.
        While a population's trials are asked (``asking``) the study's queue reads as empty: the
        population took its queued trials when it reserved its trials, and ``study.ask`` would
        otherwise start one more queued trial at every call, a transaction each (after a crash the
        queue can hold thousands of retries); the rest waits for the next reservations."""
        if states is None or any(state.is_finished() for state in states):
            return super().get_all_trials(study_id, deepcopy=deepcopy, states=states)
        self._read_trials_from_remote_storage(study_id)
        if study_id in self._asking:
            states = [state for state in states if state != TrialState.WAITING]
        with self._lock:
            trials = self._studies[study_id].trials
            by_state = self._by_state.get(study_id, {})
            found = sorted((trials[n] for state in states for n in by_state.get(state, ())), key=lambda t: t.number)
            return copy.deepcopy(found) if deepcopy else found

    @contextlib.contextmanager
    def asking(self, study_id: int) -> Iterator[None]:
        """While a population's trials of ``study_id`` are asked, the study is read from the
        database once, at the first read; later reads only take up this process's own writes, and
        its queue reads as empty (``get_all_trials``): ``study.ask`` hands out the reserved trials,
        and a queued trial waits for the next reservation."""
        self._asking.add(study_id)
        self._asking_since[study_id] = time.monotonic()
        try:
            yield
        finally:
            self._asking.discard(study_id)

    def fail_stale_trials(self, study_id: int, max_retry: int | None) -> int:
        """The backend's ``fail_stale_trials``; the study's next read sees the failed trials and their retries."""
        failed = self._backend.fail_stale_trials(study_id, max_retry)
        if failed:
            self._read_at.pop(study_id, None)
        return failed

    def _check_study(self, study_id: int) -> None:
        """KeyError, as Optuna's, for a study that does not exist."""
        with read_once(self._backend.engine) as conn:
            if conn.execute(select(_STUDIES.c.study_id).where(_STUDIES.c.study_id == study_id)).first() is None:
                raise KeyError(f"No study with study_id {study_id} exists.")

    def _holds(self, trial_id: int, state: TrialState) -> bool:
        """Whether the cache has the trial finished in ``state`` (a finished trial never changes)."""
        cached = self._get_cached_trial(trial_id)
        return cached is not None and cached.state == state

    def set_trial_state_values(self, trial_id: int, state: TrialState, values: Sequence[float] | None = None) -> bool:
        own = self._backend.own_trial(trial_id)
        self._read_at.clear()  # the next read sees the change (and a retry that may be waiting)
        updated = self._backend.set_trial_state_values(trial_id, state, values)
        if updated and own is not None and state.is_finished():
            told = copy.copy(own)
            told.state, told.values, told.datetime_complete = state, values, dt.datetime.now()
            with self._lock:
                self._add_trials_to_cache(self._trial_id_to_study_id_and_number[trial_id][0], [told])
        return updated
