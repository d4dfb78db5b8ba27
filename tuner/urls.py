"""Database URLs tuner accepts: a leaf module, used by the study file's validation and by storage."""

import re

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from tuner.errors import ConfigError

DRIVERS = {
    "sqlite": ("sqlite", None),
    "postgresql": ("postgresql+psycopg", "postgres"),
    "mysql": ("mysql+pymysql", "mysql"),
    "mariadb": ("mariadb+pymysql", "mysql"),
}
"""The databases tuner supports, each with the URL scheme of the driver tuner installs and the
extra of pyproject.toml that installs it (SQLite's comes with Python). Other drivers SQLAlchemy
knows work when installed."""
DIALECTS = tuple(DRIVERS)


def shown(url: str) -> str:
    """``url`` as tuner prints it: the password masked (``***``), even in a URL that does not parse."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return re.sub(r"(?<=://)[^/@]*(?=@)", "***", url)


def check_url(url: str) -> str:
    """Return ``url`` if SQLAlchemy can parse it, tuner supports its database, and a SQLite URL
    names a file and nothing else (tuner sets the connection options: ``storage.engine``)."""
    field = f"storage={shown(url)!r}"
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(
            f"{field} is not a database URL; allowed: e.g. sqlite:///tuner.db, "
            "postgresql+psycopg://user@host/db, mysql+pymysql://user@host/db"
        ) from None
    if parsed.get_backend_name() not in DIALECTS:
        raise ConfigError(
            f"{field}: database {parsed.get_backend_name()!r} is not supported; allowed: {', '.join(DIALECTS)}"
        )
    if parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:"):
        raise ConfigError(f"{field}: an in-memory SQLite database cannot be shared by workers; give a file")
    if parsed.get_backend_name() == "sqlite" and parsed.query:
        raise ConfigError(f"{field}: tuner sets SQLite's connection options itself; give the file alone, "
                          f"e.g. sqlite:///{parsed.database}")
    return url
