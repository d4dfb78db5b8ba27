"""How fast the dashboard draws a big experiment, measured in a real browser.

Builds (once, kept in --directory) an experiment of 5,000 finished trials with their curves by a
real `tuner launch` (quadratic, 5 optimizers x random + qmc x 500 trials, 400 steps each, 5
re-evaluation seeds per study), starts `tuner dashboard`, and opens the Convergence and Samplers
pages in headless Chromium --runs times each in three ways (see MODES), timing from the click or
navigation until plotly.js has drawn every chart. Before each load it waits out the dashboard's
query cache, so every load reads the database afresh. Prints the median per page and way
(target: under 2 s each).

    python bench/dashboard_load.py [--directory /tmp/tuner-dashboard-bench] [--runs 5]
"""

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml
from playwright.sync_api import sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout: its dashboard and test helpers
from dashboard.data import REFRESH_S  # noqa: E402
from tests.dashboard.test_browser import ARGS, CHROMIUM, DRAWN, serve, stop  # noqa: E402

STUDY = {
    "name": "dashboard-load",
    "task": {"name": "quadratic", "options": {"dim": 20}},
    "optimizers": ["sgd", "momentum", "nesterov", "rmsprop", "adam"],
    "samplers": ["random", "qmc"],
    "trials": 500,
    "budget": {"steps": 400, "eval_every": 20},
    "space": {"schedule": {"choices": ["constant", "cosine"]}},
    "objective": {"name": "final_train_loss"},
    "reevaluate": 5,
}
PAGES = {"convergence": 1, "samplers": 1}


def build(directory: Path) -> str:
    url = f"sqlite:///{directory}/tuner.db"
    study = directory / "dashboard-load.yaml"
    if (directory / "tuner.db").exists():
        print(f"reusing {url}")
        return url
    directory.mkdir(parents=True, exist_ok=True)
    study.write_text(yaml.safe_dump(STUDY))
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "tuner", "launch", str(study), "--workers", "2", "--storage", url],
                   check=True, stdout=subprocess.DEVNULL)
    print(f"built {url}: {STUDY['trials'] * 10} trials in {time.perf_counter() - start:.0f} s")
    return url


MODES = {
    "in-app": "a click in the open dashboard's sidebar (the page's data read afresh)",
    "new tab": "a new tab of a browser that has loaded the dashboard before (assets cached)",
    "fresh browser": "a new browser profile: Streamlit's and plotly's scripts downloaded and parsed first",
}
TITLES = {"convergence": "Convergence", "samplers": "Samplers"}


def measure(context, base: str, page_name: str, mode: str, sidebar) -> float:
    """Seconds from the request until plotly.js has drawn every chart of the page."""
    time.sleep(REFRESH_S + 0.5)  # the dashboard's query cache expires: a cold read
    if mode == "in-app":
        sidebar.get_by_role("link", name="Experiments").click()
        sidebar.get_by_role("heading", name="Experiments").wait_for()
        time.sleep(REFRESH_S + 0.5)
        start = time.perf_counter()
        sidebar.get_by_role("link", name=TITLES[page_name]).click()
        sidebar.wait_for_function(DRAWN, arg=PAGES[page_name], timeout=120_000)
        return time.perf_counter() - start
    page = (context() if mode == "fresh browser" else context).new_page()
    start = time.perf_counter()
    page.goto(f"{base}/{page_name}")
    page.wait_for_function(DRAWN, arg=PAGES[page_name], timeout=120_000)
    elapsed = time.perf_counter() - start
    page.context.close() if mode == "fresh browser" else page.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--directory", type=Path, default=Path("/tmp/tuner-dashboard-bench"))
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    url = build(args.directory)
    process, base = serve(url, args.directory)
    times = {(mode, page): [] for mode in MODES for page in PAGES}
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            warm = browser.new_context(viewport={"width": 1400, "height": 1000})
            sidebar = warm.new_page()
            sidebar.goto(base)
            for page_name in PAGES:  # load every script once, as a user who has looked around
                sidebar.goto(f"{base}/{page_name}")
                sidebar.wait_for_function(DRAWN, arg=PAGES[page_name], timeout=120_000)
            fresh = lambda: browser.new_context(viewport={"width": 1400, "height": 1000})  # noqa: E731
            for _ in range(args.runs):
                for mode in MODES:
                    for page_name in PAGES:
                        context = fresh if mode == "fresh browser" else warm
                        times[mode, page_name].append(measure(context, base, page_name, mode, sidebar))
            browser.close()
    finally:
        stop(process)
    for mode, meaning in MODES.items():
        print(f"{mode}: {meaning}")
        for page_name in PAGES:
            values = times[mode, page_name]
            median = statistics.median(values)
            print(f"  {page_name:12s} median {median:.2f} s over {len(values)} loads (min {min(values):.2f}, "
                  f"max {max(values):.2f}); target < 2 s: {'ok' if median < 2.0 else 'over'}")


if __name__ == "__main__":
    main()
