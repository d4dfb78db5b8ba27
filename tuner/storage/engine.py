"""Storage URLs and engines: which database, and how tuner talks to it.

The URL comes from ``--storage``, else ``TUNER_STORAGE``, else the study file's
``storage``, else ``sqlite:///tuner.db`` in the working directory.

SQLite is set up for several local processes: WAL journal, ``synchronous=NORMAL`` (commits
do not wait for fsync; a power cut may lose the last commits, never consistency), a busy
timeout, and ``BEGIN IMMEDIATE`` for every transaction so that two writers queue on the lock
instead of failing with "database is locked". Readers (dashboard, progress display) open
the file read-only. Server databases get ``pool_pre_ping`` and a small bounded pool;
PostgreSQL sessions commit with ``synchronous_commit=off`` (see ``engine_kwargs``).
"""

import os
import sqlite3
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url

from tuner.errors import ConfigError
from tuner.urls import check_url, shown

DEFAULT_URL = "sqlite:///tuner.db"
BUSY_TIMEOUT_S = 60


def resolve_url(option: str | None = None, spec: str | None = None) -> str:
    """--storage, else TUNER_STORAGE, else the study file's storage, else the default."""
    url = option or os.environ.get("TUNER_STORAGE") or spec or DEFAULT_URL
    return check_url(url)


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def engine_kwargs(url: str) -> dict[str, Any]:
    """Keyword arguments for ``create_engine`` (also handed to Optuna's RDBStorage)."""
    if is_sqlite(url):
        return {"connect_args": {"timeout": BUSY_TIMEOUT_S}}
    kwargs: dict[str, Any] = {"pool_pre_ping": True, "pool_size": 2, "max_overflow": 2, "pool_recycle": 1800}
    if make_url(url).get_backend_name() == "postgresql":
        # like SQLite's synchronous=NORMAL: a commit does not wait for its WAL flush (a server
        # crash may lose the last fraction of a second of commits, never consistency; a trial
        # lost that way is failed by its heartbeat and run again)
        kwargs["connect_args"] = {"options": "-c synchronous_commit=off"}
    return kwargs


def configure_sqlite(engine: Engine) -> Engine:
    """Pragmas on every new connection and BEGIN IMMEDIATE for every transaction."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_S * 1000}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # connections opened before the listeners would skip them
    return engine


def read_once(engine: Engine) -> Connection:
    """A connection for one read on a writer engine: autocommit on a server (no BEGIN and
    ROLLBACK round trips; one statement sees one snapshot anyway), as is on SQLite."""
    connection = engine.connect()
    if engine.dialect.name != "sqlite":
        connection.execution_options(isolation_level="AUTOCOMMIT")
    return connection


def writer_engine(url: str) -> Engine:
    """An engine for a process that writes (launcher, worker)."""
    engine = create_engine(url, **engine_kwargs(url))
    return configure_sqlite(engine) if is_sqlite(url) else engine


def reader_engine(url: str) -> Engine:
    """An engine that only reads: SQLite is opened with ``mode=ro`` and never takes a write lock;
    server sessions are set read-only, so even a role that may write cannot through it."""
    if not is_sqlite(url):
        engine = create_engine(url, **engine_kwargs(url))
        event.listen(engine, "connect", _read_only_session)
        return engine
    path = make_url(url).database
    if not os.path.exists(path):
        raise ConfigError(f"storage={shown(url)!r}: no such database file {path!r}")

    def connect() -> sqlite3.Connection:
        connection = sqlite3.connect(f"file:{os.path.abspath(path)}?mode=ro", uri=True,
                                     timeout=BUSY_TIMEOUT_S, check_same_thread=False)
        connection.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_S * 1000}")
        return connection

    return create_engine("sqlite://", creator=connect)


def _read_only_session(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    if type(dbapi_connection).__module__.startswith("psycopg"):
        cursor.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
    else:
        cursor.execute("SET SESSION TRANSACTION READ ONLY")
    cursor.close()
    dbapi_connection.commit()
