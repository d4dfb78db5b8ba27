"""Database URLs tuner accepts: a leaf module, used by the study file's validation and by storage."""

import re
from urllib.parse import unquote_plus

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from tuner import errors
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


SECRET_PARAMETERS = ("pass", "pwd", "secret", "token")
"""A query parameter whose name holds one of these words, in any case, carries a secret (password,
passwd, pwd, sslpassword, passphrase, client_secret, auth_token, ...): its value is masked."""
SHOWN_URL_CHARACTERS = 160
"""Longer URLs are cut in messages (``quoted``)."""
_PASSWORD = re.compile(r"^((?:[^/:]*://|(?!.*://))[^/:]*:).*@", re.DOTALL)
"""``scheme://user:`` (or ``user:`` without a scheme), then the password up to the last ``@``."""
_PARAMETER = re.compile(r"(?<=[?&])([^=&]*)=[^&]*")
"""A query parameter, ``name=value``."""


def shown(url: str) -> str:
    """``url`` as tuner prints it: as given, with its secrets masked (``***``), whether it parses or
    not. The password is everything from ``user:`` to the URL's last ``@``: it may hold an
    unencoded ``@``, ``:``, ``/``, ``?`` or ``#`` (a URL with an ``@`` after its host then shows
    less than it could, never the password). A query parameter's value is masked when its name
    holds one of SECRET_PARAMETERS."""
    return _PARAMETER.sub(_masked_parameter, _PASSWORD.sub(r"\1***@", url, count=1))


def _masked_parameter(parameter: re.Match[str]) -> str:
    """The ``name=value`` of ``_PARAMETER``, its value masked if the name, decoded as SQLAlchemy
    decodes it, holds one of SECRET_PARAMETERS."""
    name = unquote_plus(parameter[1]).lower()
    return f"{parameter[1]}=***" if any(word in name for word in SECRET_PARAMETERS) else parameter[0]


def quoted(url: str) -> str:
    """``url`` as a message quotes it: masked (``shown``), in single quotes, escaped and cut to
    SHOWN_URL_CHARACTERS (``tuner.errors.shown``)."""
    return errors.shown(shown(url), SHOWN_URL_CHARACTERS)


def quoted_path(path: str) -> str:
    """A SQLite file's path as a message quotes it: in single quotes, escaped and cut to
    SHOWN_URL_CHARACTERS (``tuner.errors.shown``)."""
    return errors.shown(path, SHOWN_URL_CHARACTERS)


EXAMPLE_PASSWORD = "change-me"
"""The placeholder of ``.env.example``: a database left with it is open to anyone who read the file."""


def check_url(url: str) -> str:
    """Return ``url`` if SQLAlchemy can parse it (with a numeric port, and no ``@`` left in its
    host: an ``@`` of the password must be written ``%40``), tuner supports its database, and a
    SQLite URL names a file and nothing else (tuner sets the connection options: ``storage.engine``)."""
    field = f"storage={quoted(url)}"
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(
            f"{field} is not a database URL; allowed: e.g. sqlite:///tuner.db, "
            "postgresql+psycopg://user@host/db, mysql+pymysql://user@host/db"
        ) from None
    except ValueError:  # SQLAlchemy read a port that is not a number
        raise ConfigError(
            f"{field} is not a database URL: its port must be a number; allowed: e.g. "
            "postgresql+psycopg://user@host:5432/db (an IPv6 host in brackets: [::1]:5432; an @ in the "
            "password written %40)"
        ) from None
    if "@" in (parsed.host or ""):
        raise ConfigError(f"{field} is not a database URL: its password holds an @; write it as %40")
    if parsed.get_backend_name() not in DIALECTS:
        raise ConfigError(f"{field}: database {errors.shown(parsed.get_backend_name())} is not supported; "
                          f"allowed: {', '.join(DIALECTS)}")
    if parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:"):
        raise ConfigError(f"{field}: an in-memory SQLite database cannot be shared by workers; give a file")
    if EXAMPLE_PASSWORD in (parsed.password, *(v for k, v in parsed.query.items() if "pass" in k.lower())):
        raise ConfigError(f"{field}: its password is the example's placeholder {EXAMPLE_PASSWORD!r}; set a password "
                          "of your own (for docker compose: POSTGRES_PASSWORD in .env)")
    if parsed.get_backend_name() == "sqlite" and parsed.query:
        raise ConfigError(f"{field}: tuner sets SQLite's connection options itself; give the file alone, "
                          f"e.g. sqlite:///{parsed.database}")
    return url
