"""How fast the dashboard draws a big experiment, measured in a real browser.

Builds (once, kept in --directory) an experiment of --trials finished trials with their curves
(quadratic, 5 optimizers x random + qmc, --trials / 10 trials each, 400 steps, 5 re-evaluation
seeds per study) by a real `tuner launch`, and prints how long the launch took. With
--synthetic-fill the experiment is instead written straight into the database by
tests/dashboard/synthetic.py: made-up outcomes and curves, no training, NOT a launch; for
developing the dashboard on 100,000 trials in a minute, labelled as such in every line printed.

Then starts `tuner dashboard` and opens the Convergence, Samplers and Sensitivity pages in
headless Chromium --runs times each in the ways of MODES, timing from the click or navigation
until plotly.js has drawn every chart of the page and Streamlit's script has ended. Before each
load it waits out the dashboard's query cache, so every load reads the database afresh. Prints
the median per page and way against TARGETS.

    python bench/dashboard_load.py [--trials 5000] [--synthetic-fill] [--runs 3]
        [--pages convergence samplers sensitivity] [--modes in-app "new tab" "fresh browser"]
        [--directory /tmp/tuner-dashboard-bench]
"""

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import streamlit.logger
import yaml
from playwright.sync_api import sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout: its dashboard and test helpers
streamlit.logger.set_log_level("error")  # the dashboard's modules imported outside a Streamlit run warn "No runtime"
from dashboard.charts import PARALLEL_AT_ONCE  # noqa: E402
from dashboard.data import REFRESH_S  # noqa: E402
from tests.dashboard.synthetic import fill  # noqa: E402
from tests.dashboard.test_browser import ARGS, CHROMIUM, DRAWN, IDLE, serve, stop  # noqa: E402
from tuner.spec import parse_experiment  # noqa: E402
from tuner.storage.store import Store  # noqa: E402

OPTIMIZERS = ["sgd", "momentum", "nesterov", "rmsprop", "adam"]
SAMPLERS = ["random", "qmc"]
STUDY = {
    "name": "dashboard-load",
    "task": {"name": "quadratic", "options": {"dim": 20}},
    "optimizers": OPTIMIZERS,
    "samplers": SAMPLERS,
    "budget": {"steps": 400, "eval_every": 20},
    "space": {"schedule": {"choices": ["constant", "cosine"]}},
    "objective": {"name": "final_train_loss"},
    "reevaluate": 5,
}
PAGES = {"convergence": 1, "samplers": 1, "sensitivity": 3}
"""The plotly charts each page draws for this experiment (Sensitivity: objective against learning
rate, the same coloured by a parameter, importances; parallel coordinates of more than
``charts.PARALLEL_AT_ONCE`` trials only when asked, and every optimizer here has more)."""
TITLES = {"convergence": "Convergence", "samplers": "Samplers", "sensitivity": "Sensitivity"}
MODES = {
    "in-app": "a click in the open dashboard's sidebar (the page's data read afresh)",
    "new tab": "a new tab of a browser that has loaded the dashboard before (assets cached)",
    "fresh browser": "a new browser profile: Streamlit's and plotly's scripts downloaded and parsed first",
}
TARGETS = {"in-app": 2.0, "new tab": 4.0}
"""Seconds, from the issue: <= 2 s in the app, <= 4 s in a fresh tab (a fresh browser has none)."""
READY = f"n => ({DRAWN})(n) && ({IDLE})()"
"""Every chart of the page drawn (DRAWN) and Streamlit's script ended, nothing stale left (IDLE)."""


def build(directory: Path, trials: int, synthetic: bool) -> tuple[str, str]:
    """The database's URL, and how it was made (for the printout)."""
    kind = "synthetic" if synthetic else "launched"
    url = f"sqlite:///{directory}/{kind}-{trials}.db"
    if (directory / f"{kind}-{trials}.db").exists():
        print(f"reusing {url}")
        return url, kind
    directory.mkdir(parents=True, exist_ok=True)
    study = {**STUDY, "trials": trials // (len(OPTIMIZERS) * len(SAMPLERS))}
    start = time.perf_counter()
    if synthetic:
        store = Store.open(url, heartbeat=False)
        try:
            written = fill(store, parse_experiment(study))
        finally:
            store.close()
        print(f"synthetic fill (NOT a launch: made-up outcomes, no training) of {url}: {written} trials in "
              f"{time.perf_counter() - start:.0f} s")
        return url, kind
    path = directory / f"dashboard-load-{trials}.yaml"
    path.write_text(yaml.safe_dump(study))
    subprocess.run([sys.executable, "-m", "tuner", "launch", str(path), "--workers", "2", "--storage", url],
                   check=True, stdout=subprocess.DEVNULL)
    print(f"launched {url}: {trials} trials and their re-evaluations by `tuner launch --workers 2` in "
          f"{time.perf_counter() - start:.0f} s")
    return url, kind


def measure(context, base: str, page_name: str, mode: str, sidebar) -> float:
    """Seconds from the request until plotly.js has drawn every chart of the page and its script ended."""
    time.sleep(REFRESH_S + 0.5)  # the dashboard's query cache expires: a cold read
    if mode == "in-app":
        sidebar.get_by_role("link", name="Experiments").click()
        sidebar.get_by_role("heading", name="Experiments").wait_for()
        time.sleep(REFRESH_S + 0.5)
        start = time.perf_counter()
        sidebar.get_by_role("link", name=TITLES[page_name]).click()
        sidebar.wait_for_function(READY, arg=PAGES[page_name], timeout=120_000)
        return time.perf_counter() - start
    page = (context() if mode == "fresh browser" else context).new_page()
    start = time.perf_counter()
    page.goto(f"{base}/{page_name}")
    page.wait_for_function(READY, arg=PAGES[page_name], timeout=120_000)
    elapsed = time.perf_counter() - start
    page.context.close() if mode == "fresh browser" else page.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5_000, help="a multiple of 10 (5 optimizers x 2 samplers)")
    parser.add_argument("--synthetic-fill", action="store_true",
                        help="write made-up trials straight into the database instead of launching (NOT a launch)")
    parser.add_argument("--directory", type=Path, default=Path("/tmp/tuner-dashboard-bench"))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--pages", nargs="+", choices=list(PAGES), default=list(PAGES))
    parser.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES))
    args = parser.parse_args()
    if args.trials <= 0 or args.trials % (len(OPTIMIZERS) * len(SAMPLERS)):
        parser.error("--trials: a positive multiple of 10")
    if args.trials // len(OPTIMIZERS) <= PARALLEL_AT_ONCE:
        parser.error(f"--trials: more than {PARALLEL_AT_ONCE * len(OPTIMIZERS)} (the pages' charts are counted for "
                     "an experiment whose parallel coordinates are drawn when asked)")
    url, kind = build(args.directory, args.trials, args.synthetic_fill)
    process, base = serve(url, args.directory)
    times = {(mode, page): [] for mode in args.modes for page in args.pages}
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            warm = browser.new_context(viewport={"width": 1400, "height": 1000})
            sidebar = warm.new_page()
            sidebar.goto(base)
            for page_name in args.pages:  # load every script once, as a user who has looked around
                sidebar.goto(f"{base}/{page_name}")
                sidebar.wait_for_function(READY, arg=PAGES[page_name], timeout=120_000)
            fresh = lambda: browser.new_context(viewport={"width": 1400, "height": 1000})  # noqa: E731
            for _ in range(args.runs):
                for mode in args.modes:
                    for page_name in args.pages:
                        context = fresh if mode == "fresh browser" else warm
                        times[mode, page_name].append(measure(context, base, page_name, mode, sidebar))
            browser.close()
    finally:
        stop(process)
    print(f"{args.trials} trials ({kind}{', NOT a launch' if kind == 'synthetic' else ''}), {args.runs} cold "
          "load(s) per page and way")
    for mode in args.modes:
        print(f"{mode}: {MODES[mode]}")
        for page_name in args.pages:
            values = times[mode, page_name]
            median = statistics.median(values)
            verdict = (f"; target <= {TARGETS[mode]:g} s: {'ok' if median <= TARGETS[mode] else 'over'}"
                       if mode in TARGETS else "")
            print(f"  {page_name:12s} median {median:.2f} s (min {min(values):.2f}, max {max(values):.2f}){verdict}")


if __name__ == "__main__":
    main()
