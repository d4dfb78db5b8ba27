"""Storage URLs and engines: which database, and how tuner talks to it.

The URL comes from ``--storage``, else ``TUNER_STORAGE``, else the study file's
``storage``, else ``sqlite:///tuner.db`` in the working directory.

SQLite is set up for several local processes: WAL journal, ``synchronous=NORMAL`` (commits
do not wait for fsync; a power cut may lose the last commits, never consistency), a busy
timeout, and ``BEGIN IMMEDIATE`` for every transaction so that two writers queue on the lock
instead of failing with "database is locked". Readers (dashboard, progress display) open
the file read-only. Server databases get ``pool_pre_ping``, a small bounded pool and a
connect timeout; PostgreSQL sessions commit with ``synchronous_commit=off`` (see ``engine_kwargs``).

Every database is checked when it is opened (``reader_engine``, ``check_writer``), so that a
command answers at once, in one line and writing nothing, when it cannot use it; the errors
of the connection are explained by ``tuner.storage.problems``.
"""

import os
import sqlite3
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from sqlalchemy import Connection, Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from tuner.errors import ConfigError
from tuner.storage import schema
from tuner.storage.migrate import VERSION_TABLE, unknown_revisions
from tuner.storage.problems import translated
from tuner.urls import check_url, quoted, quoted_path

DEFAULT_URL = "sqlite:///tuner.db"
BUSY_TIMEOUT_S = 60
CONNECT_TIMEOUT_S = 10
"""Seconds a server has to answer a new connection: a dead or filtered host is reported, not waited for."""


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
    kwargs: dict[str, Any] = {"pool_pre_ping": True, "pool_size": 2, "max_overflow": 2, "pool_recycle": 1800,
                              "connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}}
    if make_url(url).get_backend_name() == "postgresql":
        # like SQLite's synchronous=NORMAL: a commit does not wait for its WAL flush (a server
        # crash may lose the last fraction of a second of commits, never consistency; a trial
        # lost that way is failed by its heartbeat and run again)
        kwargs["connect_args"]["options"] = "-c synchronous_commit=off"
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
    ROLLBACK round trips; one statement sees one snapshot anyway), as is on SQLite. Setting it
    talks to the server outside SQLAlchemy's error handling: a connection lost there (a server
    restarting) is invalidated and raised as SQLAlchemy's DBAPIError, as any lost connection is."""
    connection = engine.connect()
    if engine.dialect.name != "sqlite":
        try:
            connection.execution_options(isolation_level="AUTOCOMMIT")
        except engine.dialect.loaded_dbapi.Error as error:
            connection.invalidate()
            connection.close()
            raise DBAPIError.instance(None, None, error, engine.dialect.loaded_dbapi.Error) from error
    return connection


def writer_engine(url: str) -> Engine:
    """An engine for a process that writes (launcher, worker)."""
    engine = create_engine(url, **engine_kwargs(url))
    return configure_sqlite(engine) if is_sqlite(url) else engine


def reader_engine(url: str) -> Engine:
    """An engine that only reads, on a database with tuner's tables at a revision this tuner knows
    (else ConfigError: ``check_sqlite_path``, ``check_database``). SQLite is opened read-only
    (``sqlite_reader``) and never takes a write lock; server sessions are set read-only, so even
    a role that may write cannot through it."""
    if is_sqlite(url):
        check_sqlite_path(url, write=False, create=False)
    return _checked(_read_only_engine(url), url, need_tables=True)


def check_writer(url: str, *, create: bool) -> None:
    """Answer at once, writing nothing, when a writer cannot use ``url`` (ConfigError: see
    ``check_sqlite_path`` and ``check_database``). With ``create``, a new SQLite file or a
    database without tuner's tables is fine: the writer makes them."""
    if is_sqlite(url):
        check_sqlite_path(url, write=True, create=create)
        if not os.path.exists(make_url(url).database):
            return
    _checked(_read_only_engine(url), url, need_tables=not create).dispose()


def check_sqlite_path(url: str, *, write: bool, create: bool) -> None:
    """ConfigError unless the SQLite file of ``url`` can be used: it is a file that can be read, or
    with ``create`` it is missing in a directory that exists; a writer (``write``) can write the
    file and its directory too (SQLite keeps its journal and shared memory beside the database)."""
    field = f"storage={quoted(url)}"
    path = make_url(url).database
    directory = os.path.dirname(path) or "."
    if os.path.isdir(path):
        raise ConfigError(f"{field}: {quoted_path(path)} is a directory; give a database file in it, "
                          f"e.g. sqlite:///{os.path.join(path, 'tuner.db')}")
    if not os.path.exists(path):
        if not create:
            raise ConfigError(f"{field}: no such database file {quoted_path(path)}; correct the path, or create "
                              "it with tuner launch STUDY_FILE --storage URL")
        if not os.path.isdir(directory):
            raise ConfigError(f"{field}: no such directory {quoted_path(directory)}; create it (mkdir -p {directory}) "
                              "or give another path")
    elif not os.access(path, os.R_OK):
        raise ConfigError(f"{field}: cannot read {quoted_path(path)} (permissions); give a file you can read")
    if write and not os.access(directory, os.W_OK | os.X_OK):
        raise ConfigError(f"{field}: cannot write in directory {quoted_path(directory)}, where SQLite keeps its "
                          "journal beside the database; give a directory you can write")
    if write and os.path.exists(path) and not os.access(path, os.W_OK):
        raise ConfigError(f"{field}: cannot write {quoted_path(path)} (permissions); give a file you can write")


def check_database(engine: Engine, url: str, *, need_tables: bool = True) -> None:
    """ConfigError naming the storage and what to do unless ``engine`` connects (see
    ``problems.problem``), any tuner tables are at a revision this tuner knows, and, with
    ``need_tables``, tuner's tables are there."""
    field = f"storage={quoted(url)}"
    with translated(url), engine.connect() as connection:
        tables = set(inspect(connection).get_table_names())
        unknown = unknown_revisions(connection) if VERSION_TABLE in tables else []
    if unknown:
        raise ConfigError(f"{field}: tuner's tables there are at revision {unknown[-1]!r}, which this tuner "
                          "does not know (a newer tuner migrated them); upgrade tuner")
    if need_tables and schema.experiments.name not in tables:
        raise ConfigError(f"{field}: no tuner experiments in this database (it has no tuner tables); "
                          "create one first: tuner launch STUDY_FILE --storage URL")


def _read_only_engine(url: str) -> Engine:
    if is_sqlite(url):
        return create_engine("sqlite://", creator=sqlite_reader(url))
    with translated(url):  # a driver that is not installed fails here
        engine = create_engine(url, **engine_kwargs(url))
    event.listen(engine, "connect", _read_only_session)
    return engine


def _checked(engine: Engine, url: str, *, need_tables: bool) -> Engine:
    try:
        check_database(engine, url, need_tables=need_tables)
    except BaseException:
        engine.dispose()
        raise
    return engine


def read_as_snapshot(path: str) -> bool:
    """Whether readers open the SQLite file at ``path`` with ``immutable=1``: when its directory
    cannot be written, SQLite cannot make the shared-memory file that reading a WAL database
    needs, and ``mode=ro`` alone fails. No writer can work through that directory then; commits
    that a crashed writer left in a ``-wal`` file are not seen."""
    return not os.access(os.path.dirname(os.path.abspath(path)), os.W_OK)


def snapshot_note(url: str) -> str | None:
    """What a reader tells its user when ``url`` is read as a snapshot (``read_as_snapshot``); else None."""
    if not is_sqlite(url) or not read_as_snapshot(make_url(url).database):
        return None
    return (f"storage {quoted(url)} is in a directory you cannot write: it is read as it is now; "
            "to follow running workers live, give it a writable directory")


def sqlite_reader(url: str) -> Callable[[], sqlite3.Connection]:
    """Read-only connections to the SQLite file of ``url`` (``create_engine``'s ``creator``):
    ``mode=ro``, and ``immutable=1`` where it is read as a snapshot (``read_as_snapshot``)."""
    path = os.path.abspath(make_url(url).database)
    uri = f"file:{quote(path)}?mode=ro{'&immutable=1' if read_as_snapshot(path) else ''}"

    def connect() -> sqlite3.Connection:
        connection = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S, check_same_thread=False)
        connection.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_S * 1000}")
        return connection

    return connect


def _read_only_session(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    if type(dbapi_connection).__module__.startswith("psycopg"):
        cursor.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
    else:
        cursor.execute("SET SESSION TRANSACTION READ ONLY")
    cursor.close()
    dbapi_connection.commit()


class FileLost(ConfigError):
    """The SQLite file in use was deleted or replaced (``FileWatch``)."""


class FileWatch:
    """Notices a SQLite file deleted or replaced while processes use it (``rm tuner.db*``, ``mv
    other.db tuner.db``): their open connections go on writing into the old file, whose results
    are lost, and its journal (``-wal``, ``-shm``), left beside the new file, would be replayed
    into that file when it is next opened. Servers have no file: never a problem there."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.path = make_url(url).database if is_sqlite(url) else None
        self.identity = self._identity()

    def _identity(self) -> tuple[int, int] | None:
        try:
            info = os.stat(self.path) if self.path else None
        except FileNotFoundError:
            return None
        return (info.st_dev, info.st_ino) if info else None

    def problem(self) -> str | None:
        """What happened to the file, if it is not the one there at the start; else None."""
        if self.path is None or self._identity() == self.identity:
            return None
        happened = "replaced" if os.path.exists(self.path) else "deleted"
        return (f"storage={quoted(self.url)}: the database file was {happened} while tuner used it; results "
                "written since went into the old file; tuner stopped")

    def set_aside_journal(self) -> list[str]:
        """Once no process of this tuner writes any more: rename the old file's journal, so that the
        file now at the path is opened without it. The names it was given."""
        moved = []
        for suffix in ("-wal", "-shm"):
            journal = f"{self.path}{suffix}"
            if os.path.exists(journal):
                os.replace(journal, f"{journal}.stale")
                moved.append(f"{journal}.stale")
        return moved
