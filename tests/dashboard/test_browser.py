"""The dashboard in a real browser: `tuner dashboard` on a free port, every page opened in headless
Chromium, charts drawn, no error shown. Screenshots go to $TUNER_SCREENSHOTS or a temporary directory."""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import REPO

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
PAGES = {"experiments": "", "convergence": "convergence", "samplers": "samplers", "sensitivity": "sensitivity",
         "best": "best"}
CHARTS = {"experiments": 0, "convergence": 1, "samplers": 1, "sensitivity": 4, "best": 0}
DRAWN = """n => {
    const plots = [...document.querySelectorAll('.js-plotly-plot')];
    return plots.length >= n && plots.every(p => p._fullData && p._fullData.length > 0 && p.querySelector('.main-svg'));
}"""
"""At least n plotly charts on the page, each laid out by plotly.js with its traces."""


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


def test_every_page_renders_its_charts_in_chromium(storage, tmp_path, shots) -> None:
    sync_playwright = browser()
    process, base = serve(storage, tmp_path)
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = chromium.new_page(viewport={"width": 1400, "height": 1000})
            console_errors: list[str] = []
            page.on("pageerror", lambda error: console_errors.append(str(error)))
            for name, path in PAGES.items():
                page.goto(f"{base}/{path}")
                page.get_by_role("heading", name={"experiments": "Experiments", "convergence": "Convergence",
                                                  "samplers": "Samplers", "sensitivity": "Sensitivity",
                                                  "best": "Best configurations"}[name]).wait_for(timeout=60_000)
                if CHARTS[name]:
                    page.wait_for_function(DRAWN, arg=CHARTS[name], timeout=60_000)
                else:
                    page.locator('[data-testid="stDataFrame"]').first.wait_for(timeout=60_000)
                page.wait_for_load_state("networkidle")
                assert page.locator('[data-testid="stException"]').count() == 0, name
                assert page.locator('[data-testid="stAlertContentError"]').count() == 0, name
                body = page.inner_text("body")
                assert "Traceback" not in body and "Error" not in body, name
                page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
            chromium.close()
        assert console_errors == []
    finally:
        stop(process)
    assert {p.name for p in shots.iterdir()} >= {f"{name}.png" for name in PAGES}
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
