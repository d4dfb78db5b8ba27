"""Curves in a compact binary form: tuner_curves' steps, seconds and values, JSON arrays until
now, become little-endian arrays in BLOBs (int32 steps, or int64 beyond int32's range; float32
seconds; float64 values, NaN where JSON had null). See ``schema`` for the format and its sizes.

Rows are converted BATCH at a time (keyset pages by id), never all in memory: each converted
into new columns, which then replace the JSON ones (on SQLite by copying the table, as Alembic's
batch mode does). The values and steps convert exactly, the seconds to float32. The room the
JSON took is reused by new rows; the file shrinks only by a VACUUM (SQLite; PostgreSQL: VACUUM
FULL). A downgrade converts back to JSON arrays (NaN to null; seconds at float32 precision).

The format is written out here as this revision defines it: a later format is a later
revision's, never an edit of this file.

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Callable
from typing import Any

import numpy as np
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

BATCH = 1000
"""Rows converted per page."""
COLUMNS = ("steps", "seconds", "values")
STEP, WIDE_STEP, SECOND, VALUE = np.dtype("<i4"), np.dtype("<i8"), np.dtype("<f4"), np.dtype("<f8")


def upgrade() -> None:
    _convert(sa.JSON(), sa.LargeBinary(), _to_binary)


def downgrade() -> None:
    _convert(sa.LargeBinary(), sa.JSON(), _to_json)


def _to_binary(steps: list[int], seconds: list[float], values: list[float | None]) -> tuple[bytes, bytes, bytes]:
    step_array = np.asarray(steps, dtype=np.int64)
    narrow = not len(step_array) or (step_array.min() >= np.iinfo(STEP).min and step_array.max() <= np.iinfo(STEP).max)
    return (step_array.astype(STEP if narrow else WIDE_STEP).tobytes(), np.asarray(seconds, dtype=SECOND).tobytes(),
            np.array([np.nan if v is None else v for v in values], dtype=VALUE).tobytes())


def _to_json(steps: bytes, seconds: bytes, values: bytes) -> tuple[list[int], list[float], list[float | None]]:
    value_array = np.frombuffer(values, dtype=VALUE)
    step_type = STEP if len(steps) == STEP.itemsize * len(value_array) else WIDE_STEP
    return (np.frombuffer(steps, dtype=step_type).tolist(), np.frombuffer(seconds, dtype=SECOND).astype(float).tolist(),
            [v if np.isfinite(v) else None for v in value_array.tolist()])


def _convert(old: sa.types.TypeEngine, new: sa.types.TypeEngine, convert: Callable[..., tuple[Any, Any, Any]]) -> None:
    """Replace the columns of COLUMNS, of type ``old``, by columns of type ``new`` holding
    ``convert(steps, seconds, values)`` of each row."""
    with op.batch_alter_table("tuner_curves") as batch:
        for name in COLUMNS:
            batch.add_column(sa.Column(f"new_{name}", new))
    table = sa.table("tuner_curves", sa.column("id", sa.Integer), *(sa.column(name, old) for name in COLUMNS),
                     *(sa.column(f"new_{name}", new) for name in COLUMNS))
    write = sa.update(table).where(table.c.id == sa.bindparam("row_id")).values(
        {f"new_{name}": sa.bindparam(f"row_{name}") for name in COLUMNS})
    connection, last = op.get_bind(), None
    while True:
        page = sa.select(table.c.id, *(table.c[name] for name in COLUMNS)).order_by(table.c.id).limit(BATCH)
        rows = connection.execute(page if last is None else page.where(table.c.id > last)).all()
        if not rows:
            break
        connection.execute(write, [{"row_id": row[0], **dict(zip((f"row_{name}" for name in COLUMNS),
                                                                 convert(*row[1:]), strict=True))}
                                   for row in rows])
        last = rows[-1][0]
    with op.batch_alter_table("tuner_curves") as batch:
        for name in COLUMNS:
            batch.drop_column(name)
            batch.alter_column(f"new_{name}", new_column_name=name, existing_type=new, nullable=False)
