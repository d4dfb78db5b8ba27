"""A database password is never printed: not by a command's output, nor by its errors, nor on a
command line (``ps``), nor on a dashboard page."""

import contextlib
import os
import shlex
import string
from urllib.parse import quote

import pytest
import yaml
from hypothesis import assume, example, given
from hypothesis import strategies as st
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from dashboard import data
from dashboard.verbatim import code
from tests.dashboard.test_pages import open_page
from tests.helpers import TINY, tuner
from tuner import cli, open_experiment
from tuner.errors import ConfigError
from tuner.spec import parse_experiment
from tuner.storage.store import Store
from tuner.urls import check_url, shown
from tuner.worker import create_experiment

SECRET = "S3cr3t-pw"


@pytest.fixture(params=["user info", "query"])
def secret_url(request, postgres_url) -> str:
    """A PostgreSQL URL with a password, after the user name or as a query parameter; the server
    trusts local connections, so it connects."""
    url = make_url(postgres_url)
    url = url.set(password=SECRET) if request.param == "user info" else url.update_query_dict({"password": SECRET})
    return url.render_as_string(hide_password=False)


@pytest.mark.parametrize("url", [f"redis://user:{SECRET}@host/0", f"postgres ql://user:{SECRET}@host/db",
                                 f"sqlite://user:{SECRET}@/:memory:"])
def test_url_errors_mask_the_password(url) -> None:
    with pytest.raises(ConfigError) as refused:
        check_url(url)
    assert SECRET not in str(refused.value) and "***" in str(refused.value)


def test_shown_masks_only_the_password() -> None:
    assert shown(f"postgresql+psycopg://tuner:{SECRET}@db:5432/tuner") == "postgresql+psycopg://tuner:***@db:5432/tuner"
    assert shown("sqlite:///tuner.db") == "sqlite:///tuner.db"
    assert shown("sqlite:///home/me@corp/tuner.db") == "sqlite:///home/me@corp/tuner.db"


@pytest.mark.parametrize("parameter", ["password", "passwd", "pwd", "sslpassword", "PASSWORD", "pass%77ord",
                                       "client_secret", "auth_token"])
def test_shown_masks_a_secret_in_the_query_string(parameter) -> None:
    url = f"postgresql+psycopg://u@h/db?application_name=me&{parameter}={SECRET}&connect_timeout=5"
    assert shown(url) == f"postgresql+psycopg://u@h/db?application_name=me&{parameter}=***&connect_timeout=5"


@pytest.mark.parametrize(("url", "masked"), [
    ("postgresql+psycopg://postgres:S3@CRETPW@127.0.0.1/x", "postgresql+psycopg://postgres:***@127.0.0.1/x"),
    ("mysql+pymysql://u:pa/ss?w#rd@h:3306/db", "mysql+pymysql://u:***@h:3306/db"),
    ("mysql+pymysql://u:S3CRETPW@127.0.0.1:notaport/db", "mysql+pymysql://u:***@127.0.0.1:notaport/db"),
    ("user:S3CRETPW@host/db", "user:***@host/db"),  # not a URL: still masked
])
def test_shown_masks_up_to_the_last_at(url, masked) -> None:
    assert shown(url) == masked


PASSWORD = st.text(string.ascii_letters + string.digits + "@:/?#%&=+ -_.!$'()[]é€", min_size=1, max_size=20)
NAME = st.text(string.ascii_letters + string.digits + "_-.", max_size=12)
PARAMETER = st.tuples(st.sampled_from(["application_name", "connect_timeout", "sslmode", "charset", "options"]), NAME)


@st.composite
def urls_with_a_password(draw) -> tuple[str, str]:
    """(a database URL, its password): the password after the user name, written as is or
    percent-encoded, or as a query parameter (percent-encoded, as it must be there). It starts
    with Zq9, which no message's own words hold."""
    password = "Zq9" + draw(PASSWORD)
    user, host, database = draw(NAME), draw(st.sampled_from(["db", "127.0.0.1", "[::1]", "h.example.com"])), draw(NAME)
    port = draw(st.sampled_from(["", ":5432", ":x1", ":"]))
    parameters = draw(st.lists(PARAMETER, max_size=3))
    where = draw(st.sampled_from(["user info", "query"]))
    if where == "user info":
        user += ":" + (quote(password, safe="") if draw(st.booleans()) else password)
    else:
        key = draw(st.sampled_from(["password", "passwd", "pwd", "sslpassword", "Password"]))
        parameters.insert(draw(st.integers(0, len(parameters))), (key, quote(password, safe="")))
    query = "&".join(f"{key}={value}" for key, value in parameters)
    scheme = draw(st.sampled_from(["postgresql+psycopg", "mysql+pymysql", "mariadb", "redis"]))
    url = f"{scheme}://{user}@{host}{port}/{database}{'?' if query else ''}{query}"
    assume(password not in url.replace(password, "", 1) and quote(password, safe="") not in url.replace(
        quote(password, safe=""), "", 1))  # the password is no part of the URL's other parts
    return url, password


@given(urls_with_a_password())
@example(("postgresql+psycopg://postgres:S3@CRETPW@127.0.0.1/x", "S3@CRETPW"))
@example(("postgresql+psycopg://u@h/db?a=1&password=S3CRETPW", "S3CRETPW"))
def test_shown_never_shows_the_password(url_and_password) -> None:
    """Whatever the password holds, written as is or encoded, in any URL: shown() masks it, and so
    does every message check_url gives about that URL."""
    url, password = url_and_password
    for secret in (password, quote(password, safe="")):
        assert secret not in shown(url), url
        try:
            check_url(url)
        except ConfigError as refused:
            assert secret not in str(refused), url


@given(st.text())
def test_shown_never_raises_and_check_url_refuses_only_with_a_config_error(text) -> None:
    assert isinstance(shown(text), str)
    with contextlib.suppress(ConfigError):
        check_url(text)


def test_no_command_prints_the_password(secret_url, tmp_path) -> None:
    """Each command in its own process, as a user runs it: its output, errors and logs."""
    study = tmp_path / "s.yaml"
    study.write_text(yaml.safe_dump({**TINY, "name": "secret", "trials": 2, "optimizers": ["sgd"],
                                     "samplers": ["random"], "reevaluate": 1}))
    masked = shown(secret_url)
    created = tuner("launch", str(study), "--workers", "0", "--storage", secret_url, cwd=tmp_path)
    assert created.returncode == 0 and f"storage {masked}" in created.stdout, created.stdout + created.stderr
    for command in (["worker", "--experiment", "secret", "--max-trials", "1"],  # one trial, then launch the rest
                    ["launch", str(study), "--workers", "1"], ["status", "secret"], ["best", "secret"], ["best"],
                    ["best", "nope"], ["list"]):
        result = tuner(*command, "--storage", secret_url, cwd=tmp_path)
        assert result.returncode == (2 if command == ["best", "nope"] else 0), (command, result.stderr)
        assert SECRET not in result.stdout + result.stderr, command
        if command[0] == "launch":  # the closing hints
            assert f"tuner dashboard --storage {shlex.quote(masked)}" in result.stdout and "***" in masked


def test_an_unreachable_servers_error_hides_the_password(tmp_path) -> None:
    url = f"postgresql+psycopg://tuner:{SECRET}@127.0.0.1:9/tuner"  # nothing listens on port 9 (a worker would wait)
    for command in (["list"], ["status", "x"], ["best"]):
        result = tuner(*command, "--storage", url, cwd=tmp_path)
        assert result.returncode != 0 and SECRET not in result.stdout + result.stderr, command
        assert "Traceback" not in result.stderr, (command, result.stderr)


def test_the_dashboard_gets_the_url_through_its_environment_not_its_command_line(monkeypatch, secret_url) -> None:
    """``ps`` shows every user the exec'd process's arguments; its environment only to its owner."""
    url = secret_url
    Store.open(url, heartbeat=False).close()  # tuner's tables: the command checks it can read them
    monkeypatch.setenv("TUNER_STORAGE", "sqlite:///elsewhere.db")  # restored after the command replaces it
    executed = []
    monkeypatch.setattr(os, "execv", lambda path, argv: executed.append(argv))
    result = CliRunner().invoke(cli.app, ["dashboard", "--storage", url, "--port", "8600"])
    assert result.exit_code == 0, result.output
    (argv,) = executed
    assert argv[1:4] == ["-m", "streamlit", "run"] and not any(SECRET in arg or "--storage" in arg for arg in argv)
    assert os.environ["TUNER_STORAGE"] == url
    assert result.stderr == f"dashboard of {shown(url)} on http://127.0.0.1:8600\n" and SECRET not in result.output


def test_the_dashboard_pages_never_show_the_password(monkeypatch, secret_url) -> None:
    store = Store.open(secret_url, heartbeat=False)
    create_experiment(store, parse_experiment({**TINY, "name": "secret"}))
    store.close()
    for page in ("experiments", "best"):
        app = open_page(monkeypatch, secret_url, page, "secret")
        assert app.sidebar.caption[0].value == f"storage: {code(shown(secret_url))}" and "***" in shown(secret_url)
        assert not [node for node in (*app.main, *app.sidebar) if SECRET in str(node.proto)]
    data.engine(secret_url).dispose()


def test_a_stored_experiments_repr_hides_the_password(secret_url) -> None:
    store = Store.open(secret_url, heartbeat=False)
    create_experiment(store, parse_experiment({**TINY, "name": "secret"}))
    store.close()
    with open_experiment("secret", storage=secret_url) as experiment:
        assert repr(experiment) == f"StoredExperiment('secret', {shown(secret_url)!r})" and SECRET not in repr(experiment)
