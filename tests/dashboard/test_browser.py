"""The dashboard in a real browser: `tuner dashboard` on a free port, and for every experiment of
the storage every page of dashboard/app.py's PAGES opened in headless Chromium, its charts drawn,
no error shown. A full-page screenshot of each lands in $TUNER_SCREENSHOTS (else a temporary
directory) as EXPERIMENT-PAGE.png, PAGE the page's file name (``views/best.py``: best)."""

import ast
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import REPO, tuner, write_study
from tuner.optim import OPTIMIZERS

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
VIEWPORT = {"width": 1400, "height": 1000}
CHARTS = {"convergence": 1, "samplers": 1, "sensitivity": 2}
"""The plotly charts a page of this storage's experiments draws at least (0 for the pages not listed)."""
DRAWN = """n => {
    const plots = [...document.querySelectorAll('.js-plotly-plot')];
    return plots.length >= n && plots.every(p => p._fullData && p._fullData.length > 0 && p.querySelector('.main-svg'));
}"""
"""At least n plotly charts on the page, each laid out by plotly.js with its traces."""
IDLE = """() => document.querySelector('[data-testid="stApp"]').dataset.testScriptState === 'notRunning'
    && !document.querySelector('[data-stale="true"]')"""
"""Streamlit's script has run to its end, and no element of an earlier run is left."""
HEIGHT = """() => Math.max(document.body.scrollHeight,
    ...[...document.querySelectorAll('[data-testid="stMain"], [data-testid="stAppViewContainer"]')]
        .map(e => e.scrollHeight))"""
"""The page's full height: Streamlit scrolls its main area inside a viewport-high container."""


def app_pages() -> list[tuple[str, str]]:
    """(file name, title) of each ``st.Page`` in dashboard/app.py's PAGES, in navigation order; a
    page's ``st.title`` is its title."""
    tree = ast.parse((REPO / "dashboard" / "app.py").read_text())
    (pages,) = [node.value for node in tree.body if isinstance(node, ast.Assign)
                and [getattr(t, "id", None) for t in node.targets] == ["PAGES"]]
    found = []
    for call in pages.elts:
        keywords = {k.arg: k.value.value for k in call.keywords if isinstance(k.value, ast.Constant)}
        found.append((Path(call.args[0].value).stem, keywords["title"]))
    return found


def browser():
    """Playwright's sync API and Chromium, or a skip (never under CI=true, where both are installed)."""
    if os.environ.get("CI") == "true":
        from playwright.sync_api import sync_playwright
    else:
        sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
        if not shutil.which(CHROMIUM):
            pytest.skip("Chromium is not installed (apt-get install chromium)")
    return sync_playwright


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(storage: str, directory: Path) -> tuple[subprocess.Popen, str]:
    """Start `tuner dashboard` as a user would and wait until Streamlit answers its health check."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "tuner", "dashboard", "--storage", storage, "--port", str(port)],
                               cwd=directory, env={**os.environ, "PYTHONPATH": str(REPO)},
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return process, base
        except OSError:
            time.sleep(0.3)
    process.kill()
    raise AssertionError("tuner dashboard did not start: " + (process.stdout.read() if process.stdout else ""))


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    directory = Path(os.environ.get("TUNER_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    directory.mkdir(parents=True, exist_ok=True)
    return directory


@pytest.fixture(scope="module")
def showcase(storage, tmp_path_factory) -> str:
    """A copy of the dashboard tests' storage (``tiny``, ``quad``) with a third experiment,
    ``target``: the quadratic with every optimizer, scored by steps_to_target, which some reach
    within the budget and gradient descent misses (its rate needs about 450 steps)."""
    directory = tmp_path_factory.mktemp("showcase")
    source, copy = sqlite3.connect(storage.removeprefix("sqlite:///")), sqlite3.connect(directory / "tuner.db")
    with source, copy:
        source.backup(copy)
    source.close()
    copy.close()
    url = f"sqlite:///{directory}/tuner.db"
    study = write_study(directory, name="target", task={"name": "quadratic", "options": {"dim": 10}},
                        optimizers=list(OPTIMIZERS), space={"schedule": "constant"}, trials=6,
                        budget={"steps": 300, "eval_every": 20}, objective={"name": "steps_to_target", "target": 1e-6})
    result = tuner("launch", str(study), "--workers", "2", "--storage", url, cwd=directory)
    assert result.returncode == 0, result.stdout + result.stderr
    return url


def test_every_page_renders_its_charts_in_chromium(showcase, tmp_path, shots) -> None:
    sync_playwright = browser()
    pages = app_pages()
    process, base = serve(showcase, tmp_path)
    taken = []
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = chromium.new_page(viewport=VIEWPORT)
            console_errors: list[str] = []
            page.on("pageerror", lambda error: console_errors.append(str(error)))
            page.goto(base)

            def settle(heading: str) -> None:
                """Wait for a heading of the run to come, then for that run to end."""
                page.get_by_role("heading", name=heading, exact=True).wait_for(timeout=60_000)
                page.wait_for_function(IDLE, timeout=60_000)

            home = current = pages[0][1]
            settle(home)
            for experiment in ("tiny", "quad", "target"):
                if current != home:
                    page.get_by_test_id("stSidebarNav").get_by_text(home, exact=True).click()
                    settle(current := home)
                page.get_by_test_id("stSidebar").get_by_test_id("stSelectbox").click()
                page.get_by_role("option", name=experiment, exact=True).click()
                settle(experiment)  # the Experiments page shows the chosen experiment's name as a heading
                for name, title in pages:
                    if title != current:
                        page.get_by_test_id("stSidebarNav").get_by_text(title, exact=True).click()
                        current = title
                    settle(title)  # each page's title is its heading
                    page.wait_for_function(DRAWN, arg=CHARTS.get(name, 0), timeout=60_000)
                    where = f"{experiment}: {name}"
                    assert page.get_by_test_id("stException").count() == 0, where
                    assert page.get_by_test_id("stAlertContentError").count() == 0, where
                    body = page.inner_text("body")
                    assert "Traceback" not in body and "Error" not in body, where
                    page.set_viewport_size({**VIEWPORT, "height": max(VIEWPORT["height"], page.evaluate(HEIGHT))})
                    page.wait_for_function(DRAWN, arg=CHARTS.get(name, 0), timeout=60_000)
                    path = shots / f"{experiment}-{name}.png"
                    page.screenshot(path=str(path), full_page=True)
                    page.set_viewport_size(VIEWPORT)
                    taken.append(path.name)
            chromium.close()
        assert console_errors == []
    finally:
        stop(process)
    assert len(taken) == 3 * len(pages) and {p.name for p in shots.iterdir()} >= set(taken)
    print(f"screenshots: {shots}")


def test_the_dashboard_listens_on_localhost_only_by_default(storage, tmp_path) -> None:
    process, base = serve(storage, tmp_path)
    try:
        assert base.startswith("http://127.0.0.1:")
        port = int(base.rsplit(":", 1)[1])
        addresses = {info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)}
        for address in addresses - {"127.0.0.1"}:
            with socket.socket() as s:
                s.settimeout(1)
                assert s.connect_ex((address, port)) != 0, f"reachable on {address}"
    finally:
        stop(process)
