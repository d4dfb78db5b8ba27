"""A database password is never printed: not by a command's output, nor by its errors, nor on a
command line (``ps``), nor on a dashboard page."""

import os

import pytest
import yaml
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from dashboard import data
from dashboard.verbatim import code
from tests.dashboard.test_pages import open_page
from tests.helpers import TINY, tuner
from tuner import cli
from tuner.errors import ConfigError
from tuner.spec import parse_experiment
from tuner.storage.store import Store
from tuner.urls import check_url, shown
from tuner.worker import create_experiment

SECRET = "S3cr3t-pw"


@pytest.fixture
def secret_url(postgres_url) -> str:
    """A PostgreSQL URL with a password; the server trusts local connections, so it connects."""
    return make_url(postgres_url).set(password=SECRET).render_as_string(hide_password=False)


@pytest.mark.parametrize("url", [f"redis://user:{SECRET}@host/0", f"postgres ql://user:{SECRET}@host/db",
                                 f"sqlite://user:{SECRET}@/:memory:"])
def test_url_errors_mask_the_password(url) -> None:
    with pytest.raises(ConfigError) as refused:
        check_url(url)
    assert SECRET not in str(refused.value) and "***" in str(refused.value)


def test_shown_masks_only_the_password() -> None:
    assert shown(f"postgresql+psycopg://tuner:{SECRET}@db:5432/tuner") == "postgresql+psycopg://tuner:***@db:5432/tuner"
    assert shown("sqlite:///tuner.db") == "sqlite:///tuner.db"


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
            assert f"tuner dashboard --storage {masked}" in result.stdout and "***" in masked


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
