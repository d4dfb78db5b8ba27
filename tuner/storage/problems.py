"""Why a database cannot be used, as one line: the storage (password masked) and what to do.

``problem`` is the one translation of what opening or using a database raises (SQLAlchemy,
the drivers, SQLite, Optuna's storage) into a ConfigError; ``translated`` applies it to the
code that opens a database. ``Unreachable`` marks the one problem that may pass by itself: no
server answered. A worker waits for the server then (``tuner.worker``); every other command
answers at once.
"""

import re
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, NoSuchModuleError, OperationalError

from tuner import errors
from tuner.errors import ConfigError
from tuner.urls import DRIVERS, quoted, quoted_path, shown

MYSQL_UNREACHABLE = {1040, 1053, 2002, 2003, 2005, 2006, 2013, 2055}
"""MySQL/MariaDB error codes of a server that does not answer, is starting or stopping, or is full."""
MYSQL_NO_DATABASE = 1049
MYSQL_LOGIN_REFUSED = {1044, 1045, 1698}
POSTGRES_NETWORK = ("connection to server", "failed to resolve host", "could not translate host name",
                    "timeout expired")
"""Words of PostgreSQL's drivers in an error of the network (not of the URL's options)."""
POSTGRES_NOT_READY = ("the database system is", "sorry, too many clients", "remaining connection slots")
"""How PostgreSQL answers when it is starting, stopping, recovering or full."""
UNREACHABLE, NO_DATABASE, LOGIN_REFUSED = "unreachable", "no database", "login refused"


class Unreachable(ConfigError):
    """No database server answered at the URL's host and port (or it is starting, stopping or full)."""


@contextmanager
def translated(url: str) -> Iterator[None]:
    """Raise every error of the block as its one-line ConfigError (``problem``): the block opens
    the database of ``url``, so what fails there is the URL, the driver or the database. The
    original stays attached as the cause, for a programmer."""
    try:
        yield
    except ConfigError:
        raise
    except Exception as exc:
        raise problem(exc, url) from exc


def problem(exc: Exception, url: str) -> ConfigError:
    """The one-line ConfigError that explains ``exc``, raised while using the database of ``url``:
    an ``Unreachable`` server, a missing database (and how to create it), a refused login, a
    file that is not a SQLite database, a driver not installed, a character set (``charset=``)
    the driver does not know (PyMySQL fails on it with an AttributeError); else what the database
    or the driver said."""
    field = f"storage={quoted(url)}"
    parsed = make_url(url)
    if isinstance(exc, (NoSuchModuleError, ImportError)):
        return _driver_missing(field, parsed, exc)
    charset = parsed.query.get("charset")
    if charset is not None and isinstance(exc, (AttributeError, LookupError)):
        return ConfigError(f"{field}: the driver does not know the character set charset="
                           f"{errors.shown(str(charset))}; leave charset out (tuner's driver uses utf8mb4) or give "
                           "one it knows, e.g. utf8mb4")
    if not isinstance(exc, DBAPIError):
        return ConfigError(f"{field}: {type(exc).__name__}: {_first_line(exc)}; check the URL")
    if parsed.get_backend_name() == "sqlite":
        if getattr(exc.orig, "sqlite_errorname", None) == "SQLITE_NOTADB":
            return ConfigError(f"{field}: {quoted_path(parsed.database)} is not a SQLite database; give a database "
                               "file, e.g. sqlite:///tuner.db (a study file goes to tuner launch FILE)")
        return ConfigError(f"{field}: SQLite cannot use {quoted_path(parsed.database)}: {_first_line(exc.orig)}")
    kind, said = _server_answer(exc)
    where = f"{parsed.host or 'localhost'}{f':{parsed.port}' if parsed.port else ''}"
    if kind == UNREACHABLE:
        return Unreachable(f"{field}: no database server answers at {where} ({_last_clause(said)}); "
                           "start it, or correct the host and port")
    if kind == NO_DATABASE:
        name = parsed.database
        create = (f"createdb {name}, or in psql: CREATE DATABASE {name};" if parsed.get_backend_name() == "postgresql"
                  else f"in mariadb/mysql: CREATE DATABASE {name};")
        return ConfigError(f"{field}: the server at {where} has no database {name!r}; create it first ({create})")
    if kind == LOGIN_REFUSED:
        return ConfigError(f"{field}: the server at {where} refused the login ({said}); check the user and password")
    return ConfigError(f"{field}: {said}; check the URL")


def _server_answer(exc: DBAPIError) -> tuple[str | None, str]:
    """What kind of problem a server's error is (None: another), and the server's or driver's words."""
    orig = exc.orig
    code = orig.args[0] if orig.args and isinstance(orig.args[0], int) else None
    if code is not None:  # MySQL's drivers: (code, message)
        said = str(orig.args[1]) if len(orig.args) > 1 else _first_line(orig)
        if exc.connection_invalidated or code in MYSQL_UNREACHABLE:
            return UNREACHABLE, said
        if code == MYSQL_NO_DATABASE:
            return NO_DATABASE, said
        return (LOGIN_REFUSED if code in MYSQL_LOGIN_REFUSED else None), said
    text = str(orig)  # PostgreSQL's drivers: the server's own words follow "FATAL:" when it refused
    server = text.split("FATAL:", 1)[1].strip().splitlines()[0] if "FATAL:" in text else None
    said = server or _first_line(orig)
    network = any(words in text for words in POSTGRES_NETWORK)
    if exc.connection_invalidated or (isinstance(exc, OperationalError) and (
            (network and server is None) or (server or "").startswith(POSTGRES_NOT_READY))):
        return UNREACHABLE, said
    if server and re.fullmatch(r'database ".*" does not exist', server):
        return NO_DATABASE, said
    if server and ("authentication" in server or server.startswith("role ") or "pg_hba.conf" in server):
        return LOGIN_REFUSED, said
    return None, said


def _driver_missing(field: str, parsed: URL, exc: NoSuchModuleError | ImportError) -> ConfigError:
    """SQLAlchemy has no such driver, or its Python module is not installed: name the one tuner installs."""
    scheme, extra = DRIVERS[parsed.get_backend_name()]
    if isinstance(exc, NoSuchModuleError):
        missing = f"{parsed.drivername!r} is not a driver SQLAlchemy knows"
    else:
        missing = f"module {exc.name!r} is not installed" if exc.name else f"cannot be imported ({_first_line(exc)})"
    install = f"pip install -e '.[{extra}]' in tuner's checkout" if extra else "it comes with Python"
    if parsed.drivername == scheme:
        return ConfigError(f"{field}: its driver {missing}; {install}")
    instead = shown(parsed.set(drivername=scheme).render_as_string(hide_password=False))
    return ConfigError(f"{field}: its driver {missing}; use {instead} ({install})")


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _last_clause(text: str) -> str:
    """'connection to server at "h", port 1 failed: Connection refused' -> 'Connection refused';
    "Can't connect to MySQL server on 'h' ([Errno 111] Connection refused)" -> 'Connection refused'."""
    return re.split(r": |\] ", text)[-1].strip(" ()")
