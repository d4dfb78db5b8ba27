"""Curves in their compact form (``records.encoded``/``decoded``), their conversion from JSON
(migration 0006) and back, and runs written in batches (``write_runs``) on every database."""

import datetime as dt
import math
from typing import NamedTuple

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy import insert, select

from tests.helpers import downgrade
from tuner.storage import queries, schema
from tuner.storage.engine import writer_engine
from tuner.storage.migrate import upgrade
from tuner.storage.records import MAX_POINTS, Curve, RunRecord, decoded, downsample, encoded
from tuner.storage.store import Store, write_run, write_runs

INT32_MAX = 2**31 - 1


class JsonCurve(NamedTuple):
    """A curve as revision 0005 and earlier wrote it: JSON lists, None where not finite."""

    steps: list[int]
    seconds: list[float]
    values: list[float | None]


def as_stored(curve: Curve | JsonCurve) -> tuple[list[int], list[float], list[float]]:
    """What a reader gets back of ``curve``: seconds at float32 precision, NaN for None."""
    return (list(curve.steps), [float(np.float32(t)) for t in curve.seconds],
            [math.nan if v is None else v for v in curve.values])


def same(a: list[float], b: list[float]) -> bool:
    return np.array_equal(np.asarray(a, dtype=float), np.asarray(b, dtype=float), equal_nan=True)


def test_a_curve_decodes_to_exactly_what_was_encoded() -> None:
    rng = np.random.default_rng(0)
    values = rng.standard_normal(MAX_POINTS) * 10.0 ** rng.integers(-300, 300, MAX_POINTS)
    values[[3, 4, 5]] = [np.inf, -np.inf, np.nan]
    curve = Curve(steps=list(range(0, 7 * MAX_POINTS, 7)), seconds=rng.random(MAX_POINTS).tolist(),
                  values=[*values[:10].tolist(), None, *values[11:].tolist()])
    wide = Curve(steps=[0, INT32_MAX, INT32_MAX + 1, 10**15], seconds=[0.0, 1.0, 2.0, 3.0], values=[1.0, 2.0, 3.0, 4.0])
    blobs = [encoded(c) for c in (curve, wide, Curve([], [], []), curve)]
    assert len(blobs[0]["steps"]) == 4 * MAX_POINTS and len(blobs[1]["steps"]) == 8 * 4
    assert len(blobs[0]["seconds"]) == 4 * MAX_POINTS and len(blobs[0]["values"]) == 8 * MAX_POINTS
    rows = [(b["steps"], b["seconds"], b["values"]) for b in blobs] + [(None, None, None)]  # a run without
    counts, steps, seconds, values = decoded(rows)
    assert counts.tolist() == [MAX_POINTS, 4, 0, MAX_POINTS, 0]
    ends = np.cumsum(counts)
    for c, start, end in ((curve, 0, MAX_POINTS), (wide, ends[0], ends[1]), (curve, ends[2], ends[3])):
        expected_steps, expected_seconds, expected_values = as_stored(c)
        assert steps[start:end].tolist() == expected_steps and seconds[start:end].tolist() == expected_seconds
        expected = np.where(np.isfinite(np.asarray(expected_values, dtype=float)), expected_values, np.nan)
        assert same(values[start:end].tolist(), expected.tolist())  # bit for bit where finite
    narrow_only = decoded([rows[0], rows[3]])
    assert narrow_only[1].dtype == np.int64 and narrow_only[1].tolist() == curve.steps * 2
    assert [len(a) for a in decoded([])] == [0, 0, 0, 0]


def test_a_curve_is_refused_over_the_limit_or_with_unequal_series() -> None:
    with pytest.raises(ValueError, match=f"at most {MAX_POINTS} points"):
        encoded(Curve(list(range(MAX_POINTS + 1)), [0.0] * (MAX_POINTS + 1), [1.0] * (MAX_POINTS + 1)))
    with pytest.raises(ValueError, match="got 2, 1 and 2"):
        encoded(Curve([0, 1], [0.0], [1.0, 2.0]))


def test_downsample_gives_seconds_as_stored_so_a_curve_reads_back_equal() -> None:
    n = 1000
    curve = downsample(np.arange(n), np.linspace(0, 3.3, n), np.geomspace(1.0, 1e-9, n))
    assert len(curve.steps) == MAX_POINTS and curve.steps[0] == 0 and curve.steps[-1] == n - 1
    assert all(float(np.float32(t)) == t for t in curve.seconds)
    _, _, seconds, values = decoded([tuple(encoded(curve).values())])
    assert seconds.tolist() == curve.seconds.tolist() and values.tolist() == curve.values.tolist()


# migration 0006 -------------------------------------------------------------------------------------

JSON_CURVES = sa.table("tuner_curves", sa.column("run_id", sa.Integer), sa.column("series", sa.String),
                       sa.column("steps", sa.JSON), sa.column("seconds", sa.JSON), sa.column("values", sa.JSON))
"""tuner_curves as revision 0005 and earlier wrote it."""


def old_curves(runs: int) -> dict[tuple[int, str], JsonCurve]:
    """Curves as tuner wrote them before 0006: up to 500 points, seconds rounded to 6 decimals,
    null for a value that was not finite; one with a step beyond int32's range."""
    rng = np.random.default_rng(1)
    out = {}
    for run_id in range(1, runs + 1):
        n = {1: 500, 2: 3}.get(run_id, int(rng.integers(1, 6)))
        values: list[float | None] = (rng.standard_normal(n) * 1e3).tolist()
        if run_id % 7 == 0:
            values[-1] = None
        steps = list(range(0, 10 * n, 10)) if run_id != 2 else [0, 5_000_000_000, 5_000_000_010]
        out[run_id, "train_loss"] = JsonCurve(steps, [round(t, 6) for t in np.cumsum(rng.random(n)).tolist()], values)
        if run_id % 3:
            out[run_id, "loss"] = JsonCurve(steps, out[run_id, "train_loss"].seconds, values[::-1])
    return out


def populate_0005(engine: sa.Engine, curves: dict[tuple[int, str], JsonCurve]) -> None:
    now = dt.datetime.now(dt.UTC)
    runs = sorted({run_id for run_id, _ in curves})
    with engine.begin() as conn:
        conn.execute(insert(schema.experiments).values(id=1, name="e", task="quadratic", spec={}, created_at=now))
        conn.execute(insert(schema.studies).values(id=1, experiment_id=1, study_name="e/sgd/random/0",
                                                   optimizer="sgd", sampler="random", repeat=0, n_trials=len(runs)))
        conn.execute(insert(schema.runs), [
            {"id": run_id, "study_id": 1, "kind": "trial", "trial_number": run_id - 1, "seed": 0, "state": "COMPLETE",
             "params": {}, "wall_time": 1.0, "steps": 10, "samples": 10, "created_at": now} for run_id in runs])
        conn.execute(insert(JSON_CURVES), [
            {"run_id": run_id, "series": series, "steps": c.steps, "seconds": c.seconds, "values": c.values}
            for (run_id, series), c in curves.items()])


def test_0006_converts_json_curves_in_pages_and_a_downgrade_converts_them_back(database) -> None:
    """More rows than a page of the conversion (1000), a 500-point curve of the old limit, a step
    beyond int32's range, nulls: every reader sees the same curves after the upgrade (seconds at
    float32 precision), and a downgrade gives back the JSON arrays."""
    engine = writer_engine(database)
    upgrade(engine, "0005")
    curves = old_curves(700)
    populate_0005(engine, curves)
    upgrade(engine)
    for series in ("train_loss", "loss"):
        frame = queries.curves(engine, list(range(1, 701)), series)
        mine = {run_id: c for (run_id, s), c in curves.items() if s == series}
        assert sorted(frame["run_id"].unique().tolist()) == sorted(mine)
        for run_id, c in mine.items():
            rows = frame[frame["run_id"] == run_id]
            steps, seconds, values = as_stored(c)
            assert rows["step"].tolist() == steps and rows["seconds"].tolist() == seconds
            assert same(rows["value"].tolist(), values)
        listed = queries.trial_series(engine, 1, series)
        assert [run["trial_number"] for run in listed] == list(range(700))
        for run_id, run in enumerate(listed, start=1):
            expected = as_stored(mine[run_id]) if run_id in mine else ([], [], [])
            assert run["steps"] == expected[0] and run["seconds"] == expected[1] and same(run["values"], expected[2])
    downgrade(engine, "0005")
    with engine.connect() as conn:
        back = {(row.run_id, row.series): (row.steps, row.seconds, row.values)
                for row in conn.execute(select(JSON_CURVES))}
    assert back == {key: (c.steps, as_stored(c)[1], c.values) for key, c in curves.items()}
    engine.dispose()


# batched writes ---------------------------------------------------------------------------------------

def record(i: int, rng: np.random.Generator) -> RunRecord:
    n = 300 if i % 5 else int(rng.integers(2, 300))  # every fifth one diverged early
    loss = np.geomspace(100.0, 1e-6, n) * (1 + 0.1 * rng.random(n))
    if not i % 5:
        loss[-1] = np.inf
    seconds = np.cumsum(rng.random(n)) * 1e-4
    curves = {"train_loss": downsample(np.arange(n), seconds, loss),
              "loss": downsample(np.arange(1, n + 1), seconds, loss / 2)}
    return RunRecord(kind="trial" if i % 2 else "reevaluation", seed=i, state="COMPLETE" if i % 5 else "DIVERGED",
                     params={"lr": float(rng.random()), "optimizer": "sgd"}, wall_time=float(seconds[-1]), steps=n,
                     samples=n, objective=float(loss[-1]) if i % 5 else None, final_train_loss=float(loss[-2]),
                     diverged_at=None if i % 5 else n - 1, trial_number=i if i % 2 else None,
                     source_run_id=None, curves=curves)


def studies(engine: sa.Engine) -> list[int]:
    now = dt.datetime.now(dt.UTC)
    with engine.begin() as conn:
        conn.execute(insert(schema.experiments).values(id=1, name="e", task="quadratic", spec={}, created_at=now))
        conn.execute(insert(schema.studies), [
            {"id": i, "experiment_id": 1, "study_name": f"e/{name}/random/0", "optimizer": name, "sampler": "random",
             "repeat": 0, "n_trials": 100} for i, name in ((1, "sgd"), (2, "adam"))])
    return [1, 2]


def stored_runs(engine: sa.Engine, ids: list[int]) -> list[dict]:
    r = schema.runs
    with engine.connect() as conn:
        rows = {row.id: dict(row._mapping) for row in conn.execute(select(r).where(r.c.id.in_(ids)))}
    return [rows[i] for i in ids]


def check_read_back(engine: sa.Engine, ids: list[int], runs: list[tuple[int, RunRecord]]) -> None:
    """Every run's row and curves read back as written, through the readers."""
    for row, (study_id, written) in zip(stored_runs(engine, ids), runs, strict=True):
        assert row["study_id"] == study_id
        assert {k: row[k] for k in vars(written) if k != "curves"} == {k: v for k, v in vars(written).items()
                                                                         if k != "curves"}
    for series in ("train_loss", "loss"):
        frame = queries.curves(engine, ids, series)
        for run_id, (_, written) in zip(ids, runs, strict=True):
            rows = frame[frame["run_id"] == run_id]
            steps, seconds, values = as_stored(written.curves[series])
            assert rows["step"].tolist() == steps and rows["seconds"].tolist() == seconds
            assert seconds == written.curves[series].seconds.tolist() and same(rows["value"].tolist(), values)


def test_200_runs_written_in_one_call_read_back_as_written(database) -> None:
    engine = writer_engine(database)
    upgrade(engine)
    study_ids = studies(engine)
    rng = np.random.default_rng(2)
    runs = [(study_ids[i % 2], record(i, rng)) for i in range(200)]
    with engine.begin() as conn:
        ids = write_runs(conn, runs)
        assert write_runs(conn, []) == []
        one = write_run(conn, study_ids[0], record(201, rng))
    assert len(set(ids)) == 200 and one not in ids
    check_read_back(engine, ids, runs)
    assert len(queries.trial_series(engine, 1, "loss")) == sum(r.kind == "trial" for _, r in runs) + 1
    engine.dispose()


def test_runs_are_written_one_by_one_where_the_database_returns_no_ids_in_order(tmp_path, monkeypatch) -> None:
    """MySQL has no INSERT ... RETURNING: the same rows, one insert each."""
    engine = writer_engine(f"sqlite:///{tmp_path}/r.db")
    upgrade(engine)
    study_ids = studies(engine)
    monkeypatch.setattr(engine.dialect, "insert_executemany_returning_sort_by_parameter_order", False)
    rng = np.random.default_rng(3)
    runs = [(study_ids[i % 2], record(i, rng)) for i in range(20)]
    with engine.begin() as conn:
        ids = write_runs(conn, runs)
    assert ids == list(range(1, 21))
    check_read_back(engine, ids, runs)


def test_save_runs_skips_the_reevaluations_already_stored(tmp_path) -> None:
    store = Store.open(f"sqlite:///{tmp_path}/s.db", heartbeat=False)
    study_id = studies(store.engine)[0]
    rng = np.random.default_rng(4)
    source = store.save_run(study_id, record(1, rng))
    again = [RunRecord(**{**vars(record(0, rng)), "source_run_id": source, "seed": seed}) for seed in (7, 8, 9)]
    first = store.save_runs([(study_id, again[0])])
    ids = store.save_runs([(study_id, r) for r in again])
    assert ids[0] is None and first[0] is not None and None not in ids[1:]
    assert store.save_run(study_id, again[1]) is None
    check_read_back(store.engine, [first[0], *ids[1:]], [(study_id, r) for r in again])
    trial = RunRecord(**{**vars(record(3, rng)), "optuna_trial_id": 99})
    with pytest.raises(sa.exc.IntegrityError):  # not a re-evaluation: refused as it is
        store.save_runs([(study_id, trial), (study_id, RunRecord(**{**vars(trial), "seed": 5}))])
    store.close()


def test_a_quadratic_trial_takes_a_few_kilobytes_of_curves(tmp_path) -> None:
    """The size the format was chosen for (see ``schema``): 300-step runs, both series at
    MAX_POINTS, two rows to a SQLite page."""
    url = f"sqlite:///{tmp_path}/size.db"
    engine = writer_engine(url)
    upgrade(engine)
    study_ids = studies(engine)
    rng = np.random.default_rng(5)
    runs = [(study_ids[0], RunRecord(**{**vars(record(2 * i + 1, rng)), "steps": 300})) for i in range(1000)]
    for run in runs:
        run[1].curves = {series: downsample(np.arange(300), np.arange(300) * 1e-3, np.geomspace(1, 1e-9, 300))
                         for series in ("train_loss", "loss")}
    with engine.begin() as conn:
        write_runs(conn, runs)
    with engine.connect() as conn:
        pages = dict(conn.execute(sa.text("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name")).all())
    assert pages["tuner_curves"] / len(runs) <= 4 * 1024 * 1.02  # two 4 KiB pages per run, and a little
    engine.dispose()


def test_a_reader_decodes_curves_a_writer_has_not_migrated_yet() -> None:
    """Readers never migrate: on a database of revision 0005 the columns still hold JSON arrays."""
    import json

    from tuner.storage.records import decoded

    rows = [(json.dumps([0, 5, 9]), json.dumps([0.0, 0.5, 0.9]), json.dumps([3.0, None, 1.5])),
            (json.dumps([0]), json.dumps([0.0]), json.dumps([2.0]))]
    counts, steps, seconds, values = decoded(rows)
    assert counts.tolist() == [3, 1] and steps.tolist() == [0, 5, 9, 0]
    np.testing.assert_array_equal(seconds, [0.0, 0.5, 0.9, 0.0])
    np.testing.assert_array_equal(values, [3.0, np.nan, 1.5, 2.0])
