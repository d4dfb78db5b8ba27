import contextlib
import fcntl
import os
import tempfile

import pytest


def optional_torch():
    """torch is an optional test reference: skip without it, except under CI where it is installed."""
    if os.environ.get("CI") == "true":
        import torch
    else:
        torch = pytest.importorskip("torch")
    torch.set_default_dtype(torch.float64)
    return torch


def optional_package(name: str):
    """A test reference package besides torch (lion_pytorch, schedulefree): skip without it, except
    under CI where it is installed."""
    if os.environ.get("CI") == "true":
        import importlib

        return importlib.import_module(name)
    return pytest.importorskip(name)


_SERVER_LOCKS: dict[str, int] = {}
"""The lock file each server's tests hold shared while they run (``fresh_database``), by variable."""
SERVER_VARIABLES = {"postgres": "TUNER_TEST_POSTGRES_URL", "mariadb": "TUNER_TEST_MYSQL_URL"}


@contextlib.contextmanager
def server_to_itself(server: str):
    """Hold the server (``postgres`` or ``mariadb``) alone, for a test that restarts it: wait until
    the tests on the other pytest-xdist process release it. The caller uses a fresh database on it."""
    lock = _SERVER_LOCKS[SERVER_VARIABLES[server]]
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(lock, fcntl.LOCK_SH)


def fresh_database(variable: str, create: str, drop: str):
    """Yield the URL of a new database on the server named by the environment ``variable``;
    drop it afterwards. Skipped without the variable, except under CI=true."""
    import uuid

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    base = os.environ.get(variable)
    if not base:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{variable} must be set under CI")
        pytest.skip(f"set {variable} to run these tests")
    lock = os.open(os.path.join(tempfile.gettempdir(), f"tuner-test-{variable}.lock"), os.O_CREAT | os.O_RDWR)
    fcntl.flock(lock, fcntl.LOCK_SH)  # shared by every test on the server; a restart takes it whole
    _SERVER_LOCKS[variable] = lock
    name = f"tuner_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT", pool_pre_ping=True)  # survives a server restart
    with admin.connect() as conn:
        conn.execute(text(create.format(name=name)))
    try:
        yield make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        try:
            with admin.connect() as conn:
                conn.execute(text(drop.format(name=name)))
            admin.dispose()
        finally:
            del _SERVER_LOCKS[variable]
            os.close(lock)  # releases the lock


@pytest.fixture
def postgres_url():
    """A fresh PostgreSQL database (TUNER_TEST_POSTGRES_URL)."""
    yield from fresh_database("TUNER_TEST_POSTGRES_URL", 'CREATE DATABASE "{name}"',
                              'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def mysql_url():
    """A fresh MariaDB/MySQL database (TUNER_TEST_MYSQL_URL)."""
    yield from fresh_database("TUNER_TEST_MYSQL_URL", "CREATE DATABASE `{name}` CHARACTER SET utf8mb4",
                              "DROP DATABASE IF EXISTS `{name}`")


@pytest.fixture(params=["postgres", "mariadb"])
def server_url(request):
    """Each database server tuner supports besides SQLite."""
    return request.getfixturevalue("postgres_url" if request.param == "postgres" else "mysql_url")


@pytest.fixture(params=["sqlite", "postgres", "mariadb"])
def database(request, tmp_path):
    """A fresh database of every kind tuner supports: a SQLite file, then PostgreSQL and MariaDB."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/tuner-{request.node.name[:40].replace('/', '_')}.db"
    return request.getfixturevalue("postgres_url" if request.param == "postgres" else "mysql_url")
