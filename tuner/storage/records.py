"""What a finished training run leaves behind, ready for one bulk write, and the compact form
its curves are stored in (``encoded``, ``decoded``; the format and why: ``schema``'s tuner_curves).
"""

import functools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

MAX_POINTS = 120
"""Points kept per series (``downsample``): every point of a series up to this many, else this
many evenly spaced ones. Enough to draw a curve; every evaluation of the shipped studies and
suites (at most 100 each) is kept, so their times to target are those of the run. 120 float64
values, float32 seconds and int32 steps are 1,920 bytes, so two series rows share a 4 KiB
SQLite page: 100 points took as much room, 128 to 250 points twice as much (a page per row;
measured). Sizes per trial: ``schema``."""

STEP, WIDE_STEP, SECOND, VALUE = np.dtype("<i4"), np.dtype("<i8"), np.dtype("<f4"), np.dtype("<f8")
"""A stored curve's columns: little-endian arrays, steps int32 (int64 in a curve with a step
beyond int32's range, told apart by the length: the values give the count), seconds float32,
values float64 (NaN where not finite)."""

COMPLETE, PRUNED, DIVERGED, FAIL = "COMPLETE", "PRUNED", "DIVERGED", "FAIL"
RUN_STATES = (COMPLETE, PRUNED, DIVERGED, FAIL)
"""How a run ended (tuner_runs.state). COMPLETE and PRUNED as Optuna's; DIVERGED: a non-finite or
exploding loss (Optuna: PRUNED); FAIL: the run's Optuna trial was failed afterwards (e.g. its
worker died before telling)."""
DONE_STATES = (COMPLETE, PRUNED, DIVERGED)
"""The states of a finished trial, i.e. one that counts towards its study's budget."""


def target_score(final_loss: float, target: float, steps: int) -> float:
    """The steps_to_target score of a run whose loss reached ``target`` at no step before the end:
    ``steps`` when its final loss did (reached after the last step); for a miss, ``steps * (1 +
    log10(final_loss / target))``, more than ``steps``, so nearer misses rank better. A ranking
    device, never a step count to show (``reached_target``; ``missed_final_loss`` inverts it)."""
    return float(steps * (1.0 + max(0.0, math.log10(final_loss / target))))


def missed_final_loss(score: float, target: float, steps: int) -> float:
    """The final loss of a run that missed its target, from its ``target_score``."""
    return target * 10.0 ** (score / steps - 1.0)


def reached_target(objective: float | None, steps: int) -> bool:
    """Whether a completed run scored by steps_to_target reached its target: its objective is then
    the first step whose loss was at or under the target, or ``steps`` when only the final
    evaluation was (``target_score``); a miss scores more than ``steps``."""
    return objective is not None and objective <= steps


@dataclass(frozen=True)
class StudyRow:
    """One Optuna study of an experiment."""

    id: int
    study_name: str
    optimizer: str
    sampler: str
    repeat: int
    n_trials: int


@dataclass(frozen=True, eq=False)
class Curve:
    """One series as it is stored (``encoded``): x as steps (int64) and seconds since the run
    started (float32, the precision they are stored at, so a curve reads back equal), y as values
    (float64, NaN where not finite); arrays of one length."""

    steps: np.ndarray
    seconds: np.ndarray
    values: np.ndarray


@dataclass
class RunRecord:
    """A row of tuner_runs and its curves."""

    kind: str
    seed: int
    state: str
    params: dict[str, Any]
    wall_time: float
    steps: int
    samples: int
    objective: float | None = None
    final_train_loss: float | None = None
    best_train_loss: float | None = None
    final_val_loss: float | None = None
    best_val_loss: float | None = None
    final_val_accuracy: float | None = None
    diverged_at: int | None = None
    optuna_trial_id: int | None = None
    trial_number: int | None = None
    source_run_id: int | None = None
    curves: dict[str, Curve] = field(default_factory=dict)


def finite(value: float | None) -> float | None:
    """``value`` as a float, or None when missing or not finite (SQL and JSON take no NaN)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


@functools.lru_cache(maxsize=256)
def _kept(n: int, limit: int) -> np.ndarray:
    """The indices of the points ``downsample`` keeps of ``n`` (read-only: shared by every call)."""
    keep = np.arange(n) if n <= limit else np.unique(np.linspace(0, n - 1, limit).round().astype(np.int64))
    keep.flags.writeable = False
    return keep


def downsample(steps: np.ndarray, seconds: np.ndarray, values: np.ndarray, limit: int = MAX_POINTS) -> Curve:
    """At most ``limit`` evenly spaced points, always the first and the last (see ``Curve``)."""
    keep = _kept(len(values), limit)
    kept = np.asarray(values, dtype=VALUE)[keep]
    return Curve(steps=np.asarray(steps)[keep].astype(np.int64), seconds=np.asarray(seconds)[keep].astype(SECOND),
                 values=np.where(np.isfinite(kept), kept, np.nan))


def encoded(curve: Curve) -> dict[str, bytes]:
    """The tuner_curves columns (steps, seconds, values) of ``curve``, of at most MAX_POINTS points
    (a MariaDB BLOB holds 64 KB: ``downsample`` first); ValueError otherwise or for series of
    unequal lengths. Non-finite values (and None in a sequence) are stored as NaN."""
    n = len(curve.values)
    if n > MAX_POINTS or len(curve.steps) != n or len(curve.seconds) != n:
        raise ValueError(f"a curve is stored with at most {MAX_POINTS} points and as many steps, seconds and "
                         f"values; got {len(curve.steps)}, {len(curve.seconds)} and {n}")
    steps = np.asarray(curve.steps, dtype=np.int64)
    narrow = not n or (steps.min() >= np.iinfo(STEP).min and steps.max() <= np.iinfo(STEP).max)
    values = np.asarray(curve.values, dtype=VALUE)
    if not np.isfinite(values).all():
        values = np.where(np.isfinite(values), values, np.nan)
    return {"steps": steps.astype(STEP if narrow else WIDE_STEP).tobytes(),
            "seconds": np.asarray(curve.seconds, dtype=SECOND).tobytes(), "values": values.tobytes()}


def decoded(rows: Sequence[tuple[bytes | None, bytes | None, bytes | None]],
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Stored curves, (steps, seconds, values) per row (NULLs: no curve, no points), decoded at
    once: (points per row, steps int64, seconds float64, values float64 with NaN where not
    finite), the rows' points one after the other. One ``np.frombuffer`` per column for all rows
    (a row with int64 steps, beyond int32's range, is read on its own)."""
    if any(isinstance(blob, str) for row in rows for blob in row):
        return _decoded_json(rows)
    columns = zip(*rows, strict=True) if rows else ((), (), ())
    steps, seconds, values = ([blob or b"" for blob in column] for column in columns)
    counts = np.fromiter((len(blob) for blob in values), dtype=np.int64, count=len(values)) // VALUE.itemsize
    joined = b"".join(steps)
    if len(joined) == STEP.itemsize * counts.sum():  # every row narrow
        step_array = np.frombuffer(joined, dtype=STEP).astype(np.int64)
    else:
        step_array = np.concatenate([np.frombuffer(blob, dtype=STEP if len(blob) == STEP.itemsize * n else WIDE_STEP)
                                     for blob, n in zip(steps, counts, strict=True)]).astype(np.int64)
    return (counts, step_array, np.frombuffer(b"".join(seconds), dtype=SECOND).astype(float),
            np.frombuffer(b"".join(values), dtype=VALUE))


def _decoded_json(rows: Sequence[tuple]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``decoded`` for a database a reader opens before a writer migrated it (revision 0005 and
    earlier: JSON arrays, None where not finite)."""
    parsed = [[json.loads(cell) if isinstance(cell, str) else (cell or []) for cell in row] for row in rows]
    counts = np.array([len(values) for _, _, values in parsed], dtype=np.int64)

    def joined(column: int, dtype: type) -> np.ndarray:
        cells = [np.array([np.nan if v is None else v for v in row[column]], dtype=float) for row in parsed]
        return np.concatenate(cells).astype(dtype) if cells else np.empty(0, dtype)

    return counts, joined(0, np.int64), joined(1, float), joined(2, float)
