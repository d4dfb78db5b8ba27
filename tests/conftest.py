import os

import pytest


def optional_torch():
    """torch is an optional test reference: skip without it, except under CI where it is installed."""
    if os.environ.get("CI") == "true":
        import torch
    else:
        torch = pytest.importorskip("torch")
    torch.set_default_dtype(torch.float64)
    return torch


@pytest.fixture
def postgres_url():
    """A fresh PostgreSQL database for one test, dropped afterwards.

    Reads the server from TUNER_TEST_POSTGRES_URL; skips without it, except under CI=true.
    """
    import uuid

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    base = os.environ.get("TUNER_TEST_POSTGRES_URL")
    if not base:
        if os.environ.get("CI") == "true":
            pytest.fail("TUNER_TEST_POSTGRES_URL must be set under CI")
        pytest.skip("set TUNER_TEST_POSTGRES_URL to run the PostgreSQL tests")
    name = f"tuner_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT", pool_pre_ping=True)  # survives a server restart
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def mysql_url():
    """A fresh MariaDB/MySQL database for one test (TUNER_TEST_MYSQL_URL; skipped without it, except under CI)."""
    import uuid

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    base = os.environ.get("TUNER_TEST_MYSQL_URL")
    if not base:
        if os.environ.get("CI") == "true":
            pytest.fail("TUNER_TEST_MYSQL_URL must be set under CI")
        pytest.skip("set TUNER_TEST_MYSQL_URL to run the MariaDB tests")
    name = f"tuner_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
    try:
        yield make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        admin.dispose()


@pytest.fixture(params=["postgres", "mariadb"])
def server_url(request):
    """Each database server tuner supports besides SQLite."""
    return request.getfixturevalue("postgres_url" if request.param == "postgres" else "mysql_url")
