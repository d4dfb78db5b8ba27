"""The Suites page, run with Streamlit's AppTest on a suite launched for real."""

import numpy as np
import pytest
import yaml
from streamlit.testing.v1 import AppTest

from dashboard.verbatim import code
from tests.dashboard.test_pages import APP, array, figures, widget
from tests.helpers import TINY, tuner
from tests.test_suite import FAST
from tuner.profiles import profile_steps
from tuner.spec import parse_experiment
from tuner.storage.engine import reader_engine
from tuner.storage.store import Store
from tuner.suite_scores import scores
from tuner.worker import create_experiment


@pytest.fixture(scope="module")
def suite_storage(tmp_path_factory) -> str:
    """SQLite URL of a database holding suite FAST, launched for real."""
    directory = tmp_path_factory.mktemp("suite")
    path = directory / "fast.yaml"
    path.write_text(yaml.safe_dump(FAST))
    url = f"sqlite:///{directory}/tuner.db"
    result = tuner("launch", str(path), "--workers", "2", "--storage", url, cwd=directory)
    assert result.returncode == 0, result.stdout + result.stderr
    return url


def open_suites(monkeypatch, url: str, experiment: str) -> AppTest:
    monkeypatch.setenv("TUNER_STORAGE", url)
    app = AppTest.from_file(APP, default_timeout=120)
    app.session_state["experiment"] = experiment
    app.run()
    app.switch_page("views/suites.py").run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def test_suites_draws_the_profiles_the_scores_and_each_tasks_ratios(monkeypatch, suite_storage) -> None:
    app = open_suites(monkeypatch, suite_storage, "fast/soft")
    assert app.title[0].value == "Suites"
    assert widget(app.selectbox, "suite").value == "fast"
    engine = reader_engine(suite_storage)
    for unit in ("steps", "seconds"):
        widget(app.radio, "time to target in").set_value(unit).run()
        expected = scores(engine, "fast", unit)
        (figure,) = figures(app)
        assert len(figure["data"]) == len(expected.solvers)
        for trace, i in zip(figure["data"], expected.order, strict=True):
            taus, rho = profile_steps(expected.ratios[i])
            assert trace["name"] == f"{expected.solvers[i][0]} (B = {expected.scores[i]:.3f})"
            assert trace["line"]["shape"] == "hv"
            np.testing.assert_allclose(array(trace, "x"), taus)
            np.testing.assert_allclose(array(trace, "y"), rho)
        table, ratios, times = (frame.value for frame in app.dataframe)
        assert list(table["optimizer"]) == [expected.solvers[i][0] for i in expected.order]
        np.testing.assert_allclose(table["score"], expected.scores[expected.order])
        assert list(ratios["task"]) == ["quad", "soft"] and list(ratios["target"]) == ["loss <= 0.05",
                                                                                          "val_loss <= 0.8"]
        for i in expected.order:
            optimizer = expected.solvers[i][0]
            np.testing.assert_allclose(ratios[optimizer], np.where(np.isfinite(expected.ratios[i]),
                                                                   expected.ratios[i], np.nan))
            np.testing.assert_allclose(times[optimizer], np.where(np.isfinite(expected.times[i]),
                                                                  expected.times[i], np.nan))
    engine.dispose()


def test_suites_explains_a_suite_not_finished(monkeypatch, tmp_path) -> None:
    path = tmp_path / "fast.yaml"
    path.write_text(yaml.safe_dump(FAST))
    url = f"sqlite:///{tmp_path}/tuner.db"
    assert tuner("launch", str(path), "--workers", "0", "--storage", url, cwd=tmp_path).returncode == 0
    app = open_suites(monkeypatch, url, "fast/quad")
    assert app.info[0].value == code(
        "suite 'fast' has experiments still running or stopped before their budget (trials finished: fast/quad 0 of "
        "8, fast/soft 0 of 8); finish them: tuner launch SUITE_FILE (the suite file whose suite: is 'fast')")
    assert not app.get("plotly_chart")


def test_suites_explains_a_storage_without_one(monkeypatch, tmp_path) -> None:
    url = f"sqlite:///{tmp_path}/tuner.db"
    store = Store.open(url, heartbeat=False)
    create_experiment(store, parse_experiment(TINY))
    store.close()
    app = open_suites(monkeypatch, url, "tiny")
    assert app.info[0].value == (f"{code('tiny')} is not a task of a suite, and this storage has no suite yet. Run "
                                 "one with `tuner launch suites/algoperf_small.yaml`.")
