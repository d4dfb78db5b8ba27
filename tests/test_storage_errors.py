"""Whatever storage a user gives, every command that opens a database answers in one line,
``error: storage='URL': what is wrong; what to do`` on stderr (the password shown as ***), exit 2,
at once, writing nothing, never a traceback (issue 11). A worker is the one that waits: for a
server that does not answer, as for a lost connection, until it answers, a stop, or the time is up.

The commands run in this process (typer's CliRunner) where they can; in their own process where a
signal or other file permissions are the point. Server cases use TUNER_TEST_POSTGRES_URL and
TUNER_TEST_MYSQL_URL (skipped without them, except under CI=true).
"""

import hashlib
import importlib.util
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from tests.helpers import REPO, write_study
from tuner import worker
from tuner.cli import app
from tuner.storage import engine as storage_engine
from tuner.storage.migrate import MIGRATIONS, VERSION_TABLE, known_revisions
from tuner.storage.problems import Unreachable
from tuner.storage.store import Store
from tuner.tasks import TASKS

SECRET = "s3cretpw"
READERS = (["list"], ["status", "tiny"], ["best", "tiny"], ["tunability", "tiny"], ["dashboard"])
WORKER = ["worker", "--experiment", "tiny"]
ANSWER_S = 15
"""A refusal takes at most this long: nothing waits for a server that will not do."""
NO_OVERRIDE = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search,-fowner", "--"]
"""Root without the capabilities that override file permissions: then they hold for root too."""


@pytest.fixture(autouse=True)
def in_this_process(monkeypatch):
    """The worker command installs its signal handlers, and ``tuner dashboard`` would replace this
    process with Streamlit's: keep pytest's handlers, and refuse the exec."""
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def exec_refused(*args) -> None:
        raise AssertionError(f"the command was not refused: it started {args[1][:4]}")

    monkeypatch.setattr(os, "execv", exec_refused)
    yield
    for sig, handler in handlers.items():
        signal.signal(sig, handler)


@pytest.fixture
def study(tmp_path) -> Path:
    return write_study(tmp_path)


def every_command(study: Path) -> list[list[str]]:
    """Every command that opens a database: the readers, then the two writers."""
    return [*READERS, ["launch", str(study), "--workers", "0"], WORKER]


def answered(args: list[str], env: dict[str, str] | None = None) -> list[str]:
    """Run ``tuner ARGS`` here: exit 2 within ANSWER_S, nothing on stdout, no traceback, no
    password; the lines on stderr, the last one the error."""
    start = time.monotonic()
    result = CliRunner().invoke(app, args, env=env)
    assert time.monotonic() - start < ANSWER_S, args
    assert result.exit_code == 2, (args, result.output, result.exception)
    assert result.stdout == "" and "Traceback" not in result.output and SECRET not in result.output, result.output
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: "), result.stderr
    return lines


def refused(args: list[str], env: dict[str, str] | None = None) -> str:
    """``answered``, in exactly one line: that line."""
    lines = answered(args, env)
    assert len(lines) == 1, lines
    return lines[0]


def every_command_refuses(study: Path, url: str, expected: str) -> None:
    """Every command (``every_command``) given ``--storage url`` answers with exactly ``expected``."""
    for command in every_command(study):
        assert refused([*command, "--storage", url]) == expected, command


def files(directory: Path) -> dict[str, str]:
    """What a directory holds, by content. SQLite's shared-memory index and an empty WAL (which a
    read-only connection may leave) hold no data and are left out."""
    found = {}
    for path in sorted(directory.rglob("*")):
        if path.is_file() and not path.name.endswith("-shm") and not (path.name.endswith("-wal")
                                                                       and not path.stat().st_size):
            found[str(path.relative_to(directory))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def server(variable: str) -> str:
    """The base URL of a test server, as tests/conftest.py finds it."""
    base = os.environ.get(variable)
    if not base:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{variable} must be set under CI")
        pytest.skip(f"set {variable} to run these tests")
    return base


@pytest.mark.parametrize("url", [f"postgresql+psycopg://postgres:{SECRET}@127.0.0.1:1/tuner",
                                 f"mysql+pymysql://root:{SECRET}@127.0.0.1:1/tuner",
                                 f"postgresql+psycopg://postgres@127.0.0.1:1/tuner?password={SECRET}"])
def test_a_server_that_does_not_answer_is_named_at_once(url, study) -> None:
    for command in every_command(study)[:-1]:  # the worker waits for it: see below
        line = refused([*command, "--storage", url])
        assert line == (f"error: storage='{url.replace(SECRET, '***')}': no database server answers at "
                        "127.0.0.1:1 (Connection refused); start it, or correct the host and port"), command


def test_a_server_that_hangs_is_given_up_after_the_connect_timeout(monkeypatch) -> None:
    """A server that accepts the connection and says nothing (here a socket nobody serves)."""
    monkeypatch.setattr(storage_engine, "CONNECT_TIMEOUT_S", 2)
    silent = socket.create_server(("127.0.0.1", 0))
    url = f"postgresql+psycopg://postgres:{SECRET}@127.0.0.1:{silent.getsockname()[1]}/tuner"
    lines: list[str] = []
    thread = threading.Thread(target=lambda: lines.append(refused(["list", "--storage", url])), daemon=True)
    thread.start()
    thread.join(ANSWER_S)
    silent.close()
    assert not thread.is_alive(), "tuner list waited for a silent server"
    assert "no database server answers at 127.0.0.1" in lines[0] and "timeout expired" in lines[0]


def test_a_worker_waits_for_the_server_then_gives_up_with_the_same_answer(monkeypatch) -> None:
    monkeypatch.setattr(worker, "RETRY_FOR_S", 0)
    url = f"postgresql+psycopg://postgres:{SECRET}@127.0.0.1:1/tuner"
    *_, last = answered([*WORKER, "--storage", url])
    assert last == ("error: storage='postgresql+psycopg://postgres:***@127.0.0.1:1/tuner': no database server "
                    "answers at 127.0.0.1:1 (Connection refused); start it, or correct the host and port; "
                    "gave up after waiting 0 s")


def test_a_worker_goes_on_once_the_server_answers(monkeypatch) -> None:
    tries = []

    def server_up_on_the_second_try(url: str, *, create: bool) -> str:
        tries.append(create)
        if len(tries) == 1:
            raise Unreachable("no database server answers")
        return "store"

    monkeypatch.setattr(worker.Store, "open", server_up_on_the_second_try)
    assert worker.open_store("postgresql+psycopg://u@h/db", lambda: False) == "store"
    assert tries == [False, False], "a worker never creates the database"


@pytest.mark.e2e  # a worker in its own process, stopped by a signal
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("url", [f"mysql+pymysql://root:{SECRET}@127.0.0.1:1/tuner",
                                 f"postgresql+psycopg://postgres@127.0.0.1:1/tuner?sslpassword=x&password={SECRET}"],
                         ids=["user info", "query"])
def test_a_worker_waiting_for_the_server_stops_at_once(stop, url, tmp_path) -> None:
    process = subprocess.Popen([sys.executable, "-m", "tuner", *WORKER, "--storage", url], cwd=tmp_path,
                               env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    first = process.stderr.readline()
    assert first.endswith("start it, or correct the host and port; retrying in 0.5 s\n"), first
    time.sleep(1)  # into a longer wait
    process.send_signal(stop)
    start = time.monotonic()
    out, err = process.communicate(timeout=ANSWER_S)
    assert time.monotonic() - start < 2, "the stop waited for the back-off"
    assert process.returncode == 128 + stop, out + err
    assert out == (f"worker stopped by {stop.name} after 0 trial(s); its trial in flight runs again later: start a "
                   "worker again to go on\n"), out + err
    assert "Traceback" not in err and SECRET not in first + err


@pytest.mark.parametrize("variable", ["TUNER_TEST_POSTGRES_URL", "TUNER_TEST_MYSQL_URL"])
def test_a_database_that_does_not_exist_is_named_with_how_to_create_it(variable, study) -> None:
    base = make_url(server(variable))
    name = f"tuner_errs_{uuid.uuid4().hex[:8]}"
    postgres = base.get_backend_name() == "postgresql"
    # the PostgreSQL test server trusts local connections, so the password is never checked
    url = base.set(database=name, password=SECRET if postgres else base.password)
    where = f"{base.host}:{base.port}" if base.port else base.host
    how = f"createdb {name}, or in psql: CREATE DATABASE {name};" if postgres else (
        f"in mariadb/mysql: CREATE DATABASE {name};")
    every_command_refuses(study, url.render_as_string(hide_password=False),
                          f"error: storage='{url.render_as_string()}': the server at {where} has no database "
                          f"'{name}'; create it first ({how})")
    admin = create_engine(base)
    with admin.connect() as conn:
        listed = "SELECT datname FROM pg_database" if postgres else "SHOW DATABASES"
        assert name not in conn.execute(text(listed)).scalars().all()
    admin.dispose()


def test_a_refused_login_is_named(study) -> None:
    base = make_url(server("TUNER_TEST_MYSQL_URL"))
    url = base.set(password=SECRET).render_as_string(hide_password=False)
    for command in every_command(study):
        line = refused([*command, "--storage", url])
        assert f"refused the login (Access denied for user '{base.username}'" in line, line
        assert line.endswith("; check the user and password")


def test_a_database_without_tuner_tables_is_refused_by_readers_and_workers(database, tmp_path) -> None:
    url = make_url(database)
    if url.get_backend_name() == "sqlite":
        sqlite3.connect(url.database).close()  # an empty file: a database without tables
    elif url.get_backend_name() == "postgresql":
        url = url.set(password=SECRET)
    given = url.render_as_string(hide_password=False)
    for command in [*READERS, WORKER]:
        line = refused([*command, "--storage", given])
        assert line == (f"error: storage='{url.render_as_string()}': no tuner experiments in this database "
                        "(it has no tuner tables); create one first: tuner launch STUDY_FILE --storage URL")
    engine = create_engine(database)
    assert inspect(engine).get_table_names() == []
    engine.dispose()


def test_tables_of_a_newer_tuner_are_refused_by_every_command(tmp_path, study) -> None:
    url = f"sqlite:///{tmp_path}/newer.db"
    Store.open(url, heartbeat=False).close()
    with sqlite3.connect(tmp_path / "newer.db") as conn:
        conn.execute(f"UPDATE {VERSION_TABLE} SET version_num = '9999'")
    conn.close()
    before = files(tmp_path)
    every_command_refuses(study, url, f"error: storage='{url}': tuner's tables there are at revision '9999', "
                          "which this tuner does not know (a newer tuner migrated them); upgrade tuner")
    assert files(tmp_path) == before


def test_the_revisions_tuner_knows_are_alembic_s() -> None:
    """Readers check the revision without Alembic, by the migration files' names."""
    assert known_revisions() == {script.revision for script in ScriptDirectory(str(MIGRATIONS)).walk_revisions()}


def test_a_file_that_is_not_a_database_is_named(tmp_path, study) -> None:
    url = f"sqlite:///{study}"
    before = files(tmp_path)
    every_command_refuses(study, url, f"error: storage='{url}': '{study}' is not a SQLite database; give a "
                          "database file, e.g. sqlite:///tuner.db (a study file goes to tuner launch FILE)")
    assert files(tmp_path) == before


def test_sqlite_paths_that_cannot_be_used_are_named(tmp_path, study) -> None:
    missing = tmp_path / "missing.db"
    for command in [*READERS, WORKER]:  # a worker joins an experiment: it never creates the file
        assert refused([*command, "--storage", f"sqlite:///{missing}"]) == (
            f"error: storage='sqlite:///{missing}': no such database file '{missing}'; correct the path, "
            "or create it with tuner launch STUDY_FILE --storage URL")
    launch = ["launch", str(study), "--workers", "0", "--storage"]
    assert refused([*launch, f"sqlite:///{tmp_path}/no/dir/t.db"]) == (
        f"error: storage='sqlite:///{tmp_path}/no/dir/t.db': no such directory '{tmp_path}/no/dir'; create it "
        f"(mkdir -p {tmp_path}/no/dir) or give another path")
    assert refused([*launch, f"sqlite:///{tmp_path}"]) == (
        f"error: storage='sqlite:///{tmp_path}': '{tmp_path}' is a directory; give a database file in it, "
        f"e.g. sqlite:///{tmp_path}/tuner.db")
    assert refused([*launch, f"sqlite:///{tmp_path}/t.db?timeout=abc"]) == (
        f"error: storage='sqlite:///{tmp_path}/t.db?timeout=abc': tuner sets SQLite's connection options itself; "
        f"give the file alone, e.g. sqlite:///{tmp_path}/t.db")
    assert sorted(p.name for p in tmp_path.iterdir()) == [study.name]


@pytest.mark.parametrize(("url", "module", "instead"), [
    (f"mysql://root:{SECRET}@127.0.0.1:1/tuner", "MySQLdb", "mysql+pymysql://root:***@127.0.0.1:1/tuner"),
    (f"postgresql+psycopg2://postgres:{SECRET}@127.0.0.1:1/tuner", "psycopg2",
     "postgresql+psycopg://postgres:***@127.0.0.1:1/tuner"),
])
def test_a_driver_that_is_not_installed_is_named_with_the_one_to_use(url, module, instead, study) -> None:
    if importlib.util.find_spec(module):
        pytest.skip(f"{module} is installed here")
    extra = "mysql" if module == "MySQLdb" else "postgres"
    every_command_refuses(study, url, f"error: storage='{url.replace(SECRET, '***')}': its driver module "
                          f"'{module}' is not installed; use {instead} (pip install -e '.[{extra}]' in tuner's checkout)")


def test_a_driver_sqlalchemy_does_not_know_is_named(study) -> None:
    line = refused(["list", "--storage", f"postgresql+nosuch://postgres:{SECRET}@127.0.0.1:1/tuner"])
    assert line == ("error: storage='postgresql+nosuch://postgres:***@127.0.0.1:1/tuner': its driver "
                    "'postgresql+nosuch' is not a driver SQLAlchemy knows; use "
                    "postgresql+psycopg://postgres:***@127.0.0.1:1/tuner (pip install -e '.[postgres]' in "
                    "tuner's checkout)")


NOT_A_PORT = ("is not a database URL: its port must be a number; allowed: e.g. postgresql+psycopg://user@host:5432/db "
              "(an IPv6 host in brackets: [::1]:5432; an @ in the password written %40)")


@pytest.mark.parametrize(("url", "shown", "problem"), [
    (f"mysql+pymysql://u:{SECRET}@127.0.0.1:notaport/db", "mysql+pymysql://u:***@127.0.0.1:notaport/db", NOT_A_PORT),
    ("postgresql+psycopg://postgres@[::1/tuner", "postgresql+psycopg://postgres@[::1/tuner", NOT_A_PORT),
    (f"postgresql+psycopg://postgres:{SECRET[:3]}@{SECRET[3:]}@127.0.0.1/tuner",
     "postgresql+psycopg://postgres:***@127.0.0.1/tuner", "is not a database URL: its password holds an @; write it as %40"),
], ids=["port", "ipv6", "at"])
def test_a_url_that_does_not_parse_is_named_by_every_command(url, shown, problem, tmp_path) -> None:
    """Given with --storage, in TUNER_STORAGE or as the study file's storage: one line, the password masked."""
    expected = f"error: storage='{shown}' {problem}"
    in_file = write_study(tmp_path, storage=url)
    for command in every_command(in_file):
        assert refused([*command, "--storage", url]) == expected, command
        assert refused(command, env={"TUNER_STORAGE": url}) == expected, command
    assert refused(["launch", str(in_file), "--workers", "0"]) == expected


def test_a_character_set_the_driver_does_not_know_is_named(study) -> None:
    url = make_url(server("TUNER_TEST_MYSQL_URL")).update_query_dict({"charset": "nonexistent"})
    every_command_refuses(study, url.render_as_string(hide_password=False), (
        f"error: storage='{url.render_as_string()}': the driver does not know the character set "
        "charset='nonexistent'; leave charset out (tuner's driver uses utf8mb4) or give one it knows, e.g. utf8mb4"))


def test_a_long_storage_is_shortened(tmp_path, study) -> None:
    path = f"{tmp_path}/{'x' * 300}.db"
    cut = f"... ({len(path) + 12} characters): "  # the URL, sqlite:/// and its quotes
    for command in every_command(study):
        line = refused([*command, "--storage", f"sqlite:///{path}"])
        assert cut in line and f"... ({len(path) + 2} characters)" in line and len(line) < 500, line


@pytest.mark.parametrize(("variable", "value", "allowed"), [
    ("TUNER_HEARTBEAT_INTERVAL", "abc", "a whole number of seconds from 1 to 86400"),
    ("TUNER_HEARTBEAT_INTERVAL", "0", "a whole number of seconds from 1 to 86400"),
    ("TUNER_HEARTBEAT_INTERVAL", "2.5", "a whole number of seconds from 1 to 86400"),
    ("TUNER_GRACE_PERIOD", "-3", "a whole number of seconds from 1 to 86400"),
    ("TUNER_GRACE_PERIOD", "9" * 200, "a whole number of seconds from 1 to 86400"),
    ("TUNER_GRACE_PERIOD", "5", "more than TUNER_HEARTBEAT_INTERVAL=5 seconds"),
])
def test_heartbeat_settings_are_whole_seconds_and_the_grace_period_the_longer(variable, value, allowed, tmp_path,
                                                                              study) -> None:
    url = f"sqlite:///{tmp_path}/t.db"
    for command in (["launch", str(study), "--workers", "0"], WORKER):
        line = refused([*command, "--storage", url], env={variable: value})
        assert line.startswith(f"error: {variable}=") and line.endswith(f" is not allowed; allowed: {allowed}")
        assert len(line) < 200, "a long value is shortened"
    assert not (tmp_path / "t.db").exists()


@pytest.mark.parametrize("args", [["nosuch"], ["quadratic", "--seed", "-1"], ["quadratic", "--tolerance", "nan"],
                                  ["quadratic", "--tolerance", "0"], ["quadratic", "--tolerance", "inf"],
                                  ["mlp", "-o", "dtype=garbage"], ["cnn", "-o", "dtype=float32"]])
def test_gradcheck_refuses_what_it_cannot_check(args) -> None:
    assert refused(["gradcheck", *args]).endswith(
        f"allowed: {', '.join(TASKS)}" if args == ["nosuch"]
        else "in [0, inf)" if "--seed" in args else "(gradcheck differences in float64)" if "-o" in args
        else "a finite number in (0, inf)")


@pytest.fixture
def read_only(tmp_path, study):
    """A launched experiment in a directory this test's processes cannot write (chmod 555; for root,
    without the capabilities that override permissions); the command prefix that runs them so."""
    prefix = []
    if os.geteuid() == 0:
        if subprocess.run([*NO_OVERRIDE, "true"], capture_output=True).returncode != 0:
            pytest.skip("root cannot drop the capabilities that override file permissions here (setpriv)")
        prefix = NO_OVERRIDE
    directory = tmp_path / "results"
    directory.mkdir()
    url = f"sqlite:///{directory}/tuner.db"
    assert CliRunner().invoke(app, ["launch", str(study), "--workers", "0", "--storage", url]).exit_code == 0
    (directory / "tuner.db").chmod(0o444)
    directory.chmod(0o555)
    yield directory, url, prefix
    directory.chmod(0o755)


def in_own_process(prefix: list[str], *args: str, cwd: Path, storage: str = "") -> subprocess.CompletedProcess:
    """``python ARGS`` run after ``prefix``, with this checkout and TUNER_STORAGE=``storage``."""
    return subprocess.run([*prefix, sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200", "TUNER_STORAGE": storage})


def test_readers_read_a_database_in_a_directory_they_cannot_write(read_only, tmp_path, study) -> None:
    directory, url, prefix = read_only
    before = files(directory)
    note = (f"note: storage '{url}' is in a directory you cannot write: it is read as it is now; to follow "
            "running workers live, give it a writable directory")
    listed = in_own_process(prefix, "-m", "tuner", "list", "--storage", url, cwd=tmp_path)
    assert listed.returncode == 0 and "tiny" in listed.stdout and listed.stderr == note + "\n", listed
    for command in (["launch", str(study), "--workers", "0"], WORKER):
        written = in_own_process(prefix, "-m", "tuner", *command, "--storage", url, cwd=tmp_path)
        assert written.returncode == 2 and written.stderr == (
            f"error: storage='{url}': cannot write in directory '{directory}', where SQLite keeps its journal beside "
            "the database; give a directory you can write\n"), written
    page = ("import json, sys\nfrom streamlit.testing.v1 import AppTest\n"
            "app = AppTest.from_file(sys.argv[1], default_timeout=120)\napp.run()\n"
            "print(json.dumps({'captions': [c.value for c in app.sidebar.caption], 'problems': "
            "[e.value for e in (*app.exception, *app.error, *app.info)], 'tables': len(app.dataframe)}))")
    shown = in_own_process(prefix, "-c", page, str(REPO / "dashboard" / "app.py"), cwd=tmp_path, storage=url)
    assert shown.returncode == 0, shown.stderr
    dashboard = json.loads(shown.stdout.splitlines()[-1])
    assert dashboard["problems"] == [] and dashboard["tables"] >= 1, dashboard
    assert any(note.removeprefix("note: ") in caption for caption in dashboard["captions"]), dashboard
    assert files(directory) == before
