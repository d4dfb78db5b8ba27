"""Names that reach SQL are bound, never spliced: stored and shown verbatim, never executed; names
that look like Rich markup, Markdown, HTML or emoji codes are shown as typed, never interpreted."""

import json
from pathlib import Path

import pytest
import yaml
from markdown_it import MarkdownIt
from streamlit.testing.v1 import AppTest
from typer.testing import CliRunner

from dashboard.verbatim import code
from tests.dashboard.test_pages import PAGES, open_page
from tests.helpers import TINY, check_consistent, tuner
from tuner import cli
from tuner.cli import app
from tuner.spec import parse_experiment
from tuner.storage import queries
from tuner.storage.engine import reader_engine
from tuner.storage.store import Store
from tuner.worker import create_experiment, run_worker

NAMES = [
    "robert'); DROP TABLE tuner_runs; --",
    'quote " and \\ backslash; SELECT 1',
    "ünïcødé 名前 🚀 ½",
    "x" * 200,
]
MARKUP = [
    "mlp [baseline]",  # Rich markup: a style tag
    "sweep [/] v2",  # Rich markup: a closing tag without an opening one
    "[bold red]x[/]",
    "![x](http://127.0.0.1:9/p.png) :red[y] <b>z</b> `tick` :rocket: $x$ -> end",  # Markdown, Streamlit, HTML
]


@pytest.fixture
def wide(monkeypatch) -> None:
    """A terminal wide enough that no line the tests read is wrapped."""
    monkeypatch.setattr(cli.console, "width", 400)


def study_file(directory: Path, name: str) -> Path:
    """A small study of experiment ``name`` (which may hold a slash: not a file name)."""
    path = directory / "study.yaml"
    path.write_text(yaml.safe_dump({**TINY, "name": name, "trials": 2, "optimizers": ["sgd"], "samplers": ["random"],
                                    "reevaluate": 1}))
    return path


def run(*args: str) -> str:
    """The output of a command run in this process, which must succeed."""
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.mark.parametrize("name", NAMES + MARKUP,
                         ids=["injection", "quotes", "unicode", "long", "tag", "close", "styled", "markdown"])
def test_hostile_experiment_names_round_trip(tmp_path, wide, name: str) -> None:
    path = study_file(tmp_path, name)
    url = f"sqlite:///{tmp_path}/tuner.db"
    assert run("launch", str(path), "--workers", "0", "--storage", url).startswith(f"experiment {name}: 1 studies")
    store = Store.open(url, heartbeat=False)  # the workers, in this process (tuner launch's own: below)
    assert run_worker(store, name) == 2
    store.close()
    engine = reader_engine(url)
    check_consistent(engine, name)
    engine.dispose()
    best = json.loads(run("best", name, "--format", "json", "--storage", url))
    assert [b["experiment"] for b in best] == [name]
    assert run("best", name, "--storage", url).startswith(f"experiment {name}\n")
    assert f"│ {name} │" in run("list", "--storage", url)
    assert run("status", name, "--storage", url).startswith(f"experiment {name} on softmax; objective ")


@pytest.mark.e2e
def test_a_launch_with_workers_prints_a_markup_name_as_typed(tmp_path) -> None:
    """The whole of tuner launch, in its own process: progress, re-evaluation, winners and hints."""
    name = "sweep [/] v2"
    path = study_file(tmp_path, name)
    result = tuner("launch", str(path), "--workers", "1", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"experiment {name}\n" in result.stdout and "tuner best 'sweep [/] v2' --storage" in result.stdout


def markdown_bodies(app: AppTest) -> list[str]:
    """The Markdown of every element on the page that Streamlit renders as Markdown (text, alerts, headings)."""
    return [node.proto.body for node in (*app.main, *app.sidebar)
            if node.proto is not None and "body" in node.proto.DESCRIPTOR.fields_by_name]


def test_the_dashboard_shows_names_as_typed(monkeypatch, tmp_path) -> None:
    """Every page, before and after trials: a name is in the sidebar's choice as typed, and in Markdown
    only as a code span, so that no link, image, HTML or directive in it is read."""
    url = f"sqlite:///{tmp_path}/tuner.db"
    store = Store.open(url, heartbeat=False)
    for name in MARKUP:
        create_experiment(store, parse_experiment({**TINY, "name": name, "trials": 2, "samplers": ["random"],
                                                   "reevaluate": 0}))
    markdown = MarkdownIt("commonmark")
    for ran in (False, True):
        if ran:
            assert run_worker(store, MARKUP[-1]) == 4
        for name, page in [(name, page) for name in MARKUP for page in PAGES] if not ran else [
                (MARKUP[-1], page) for page in PAGES]:
            app = open_page(monkeypatch, url, page, name)
            assert app.sidebar.selectbox[0].options == MARKUP and app.sidebar.selectbox[0].value == name
            tokens = [t for body in markdown_bodies(app) for block in markdown.parse(body) for t in
                      [block, *(block.children or [])]]
            assert not [t for t in tokens if t.type in ("image", "link_open", "html_inline", "html_block")], page
            assert not [t for t in tokens if t.type == "text" and ("127.0.0.1" in t.content or "[/]" in t.content)]
            if page == "experiments" or not ran:  # its heading, or the note that it has no finished trial
                assert any(t.type == "code_inline" and t.content == name for t in tokens), (page, name)
                assert any(code(name) in body for body in markdown_bodies(app))
    store.close()


def test_hostile_names_on_a_server(server_url, monkeypatch) -> None:
    store = Store.open(server_url)
    for name in NAMES:  # in this process: the launch command itself is covered above
        spec = parse_experiment({**TINY, "name": name, "trials": 2, "optimizers": ["sgd"], "samplers": ["random"],
                                 "reevaluate": 0})
        create_experiment(store, spec)
        assert run_worker(store, name) == 2
    store.close()
    engine = reader_engine(server_url)
    assert [row["name"] for row in queries.experiments(engine)] == NAMES  # verbatim; no table was dropped
    for name in NAMES:
        check_consistent(engine, name)
        best = CliRunner().invoke(app, ["best", name, "--format", "json", "--storage", server_url])
        assert [b["experiment"] for b in json.loads(best.stdout)] == [name]
    engine.dispose()
    app_test = open_page(monkeypatch, server_url, "experiments", NAMES[0])
    assert app_test.sidebar.selectbox[0].options == NAMES and app_test.sidebar.selectbox[0].value == NAMES[0]
    from dashboard import data

    data.engine(server_url).dispose()


def test_names_that_differ_only_in_case_accents_or_trailing_spaces_are_other_experiments(database, tmp_path) -> None:
    """On every database, as on SQLite: 'OK' is not 'ok', 'é' is not 'e', 'ok ' is not 'ok', and each
    experiment has Optuna studies of its own (MariaDB's default collation would take them for the
    same: migration 0004)."""
    names = ["ok", "OK", "é", "e"]
    for name in names:
        launched = CliRunner().invoke(app, ["launch", str(study_file(tmp_path, name)), "--workers", "0",
                                            "--storage", database])
        assert launched.exit_code == 0, launched.output
    store = Store.open(database, heartbeat=False)
    for name in names:
        assert run_worker(store, name) == 2
    store.close()
    engine = reader_engine(database)
    assert queries.experiment_names(engine) == names
    for name in names:
        check_consistent(engine, name)
    engine.dispose()
    for name in ("ok ", "Ok", "E", "É"):
        result = CliRunner().invoke(app, ["status", name, "--storage", database])
        assert result.exit_code == 2 and result.stderr.startswith(f"error: experiment '{name}' is not in this "
                                                                  "storage"), result.output
