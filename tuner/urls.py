"""Database URLs tuner accepts: a leaf module, used by the study file's validation and by storage."""

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from tuner.errors import ConfigError

DIALECTS = ("sqlite", "postgresql", "mysql", "mariadb")


def check_url(url: str) -> str:
    """Return ``url`` if SQLAlchemy can parse it and tuner supports its database."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(
            f"storage={url!r} is not a database URL; allowed: e.g. sqlite:///tuner.db, "
            "postgresql+psycopg://user@host/db, mysql+pymysql://user@host/db"
        ) from None
    if parsed.get_backend_name() not in DIALECTS:
        raise ConfigError(
            f"storage={url!r}: database {parsed.get_backend_name()!r} is not supported; allowed: {', '.join(DIALECTS)}"
        )
    if parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:"):
        raise ConfigError(f"storage={url!r}: an in-memory SQLite database cannot be shared by workers; give a file")
    return url
