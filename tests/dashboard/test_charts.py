"""The dashboard's pure summaries, on hand-made frames whose answers are known."""

import numpy as np
import pandas as pd
import pytest

from dashboard import charts


def test_spread_gives_median_and_band_per_group_and_step() -> None:
    runs = pd.DataFrame({
        "optimizer": ["adam"] * 8 + ["sgd"] * 2,
        "step": [0, 0, 0, 0, 1, 1, 1, 1, 0, 0],
        "seconds": [0.0, 0.0, 0.0, 0.0, 1.0, 2.0, 3.0, 4.0, 0.0, 0.0],
        "value": [1.0, 2.0, 3.0, 4.0, 0.5, 0.5, np.nan, 0.9, 7.0, 9.0],
    })
    iqr = charts.spread(runs, ["optimizer"], "step", "seconds", "inter-quartile").set_index(["optimizer", "step"])
    assert iqr.loc[("adam", 0), ["median", "lo", "hi", "n"]].tolist() == [2.5, 1.75, 3.25, 4]
    assert iqr.loc[("adam", 1), ["median", "n", "x"]].tolist() == [0.5, 3, 2.5]  # NaN (diverged) is left out
    full = charts.spread(runs, ["optimizer"], "step", "step", "min-max").set_index(["optimizer", "step"])
    assert full.loc[("sgd", 0), ["median", "lo", "hi"]].tolist() == [8.0, 7.0, 9.0]


def test_best_so_far_keeps_the_best_completed_objective_in_trial_order() -> None:
    trials = pd.DataFrame({
        "optimizer": "adam", "sampler": "tpe", "repeat": 0,
        "trial_number": [3, 0, 1, 2, 4],
        "state": ["COMPLETE", "DIVERGED", "COMPLETE", "PRUNED", "COMPLETE"],
        "objective": [0.2, None, 0.5, None, 0.3],
    })
    progress = charts.best_so_far(trials)
    assert progress["trial"].tolist() == [1, 2, 3, 4, 5]
    np.testing.assert_array_equal(progress["value"], [np.inf, 0.5, 0.5, 0.2, 0.2])


def test_a_repeat_without_a_result_yet_counts_as_the_worst_so_the_median_never_worsens() -> None:
    trials = pd.DataFrame({  # repeat 0's first trial was pruned; repeat 1 found a good one at once
        "optimizer": "adam", "sampler": "tpe", "repeat": [0, 0, 1, 1],
        "trial_number": [0, 1, 0, 1], "state": ["PRUNED", "COMPLETE", "COMPLETE", "COMPLETE"],
        "objective": [None, 0.5, 0.1, 0.3],
    })
    stats = charts.spread(charts.best_so_far(trials), ["optimizer", "sampler"], "trial", "trial", "min-max")
    assert np.isnan(stats["median"][0]) and stats["median"][1] == pytest.approx(0.3)  # not 0.1, then 0.3
    assert stats["lo"].tolist() == [0.1, 0.1] and np.isnan(stats["hi"][0]) and stats["hi"][1] == 0.5


def test_best_so_far_leaves_out_trials_past_the_budget_so_the_median_never_worsens() -> None:
    trials = pd.DataFrame({  # repeat 1 got an extra trial from a concurrent worker
        "optimizer": "adam", "sampler": "tpe", "repeat": [0, 0, 1, 1, 1],
        "trial_number": [0, 1, 0, 1, 2], "state": "COMPLETE", "objective": [0.2, 0.1, 0.5, 0.4, 0.3],
    })
    assert charts.best_so_far(trials)["trial"].max() == 3
    progress = charts.best_so_far(trials, budget=2)
    assert progress["trial"].max() == 2 and len(progress) == 4
    median = charts.spread(progress, ["optimizer", "sampler"], "trial", "trial", "min-max")["median"].tolist()
    assert median == sorted(median, reverse=True)


def test_trials_to_match_finds_the_first_trial_reaching_the_baselines_final_best() -> None:
    stats = pd.DataFrame({
        "optimizer": "adam",
        "sampler": ["random"] * 4 + ["tpe"] * 4 + ["qmc"] * 4,
        "trial": [1, 2, 3, 4] * 3,
        "median": [0.9, 0.6, 0.5, 0.4, 0.8, 0.4, 0.3, 0.3, 0.9, 0.9, 0.8, 0.7],
    })
    table = charts.trials_to_match(stats).set_index("sampler")
    assert table.loc["tpe", "trials to match"] == 2 and table.loc["tpe", "random final best"] == 0.4
    assert pd.isna(table.loc["qmc", "trials to match"])


@pytest.mark.parametrize("colour", [None, "beta1", "schedule"])
def test_lr_figure_marks_diverged_trials_on_the_top_edge(colour) -> None:
    trials = pd.DataFrame({
        "optimizer": ["adam"] * 4, "lr": [1e-4, 1e-3, 1e-2, 1.0], "beta1": [0.9, 0.8, 0.95, 0.9],
        "schedule": ["constant", "cosine", "cosine", "constant"],
        "state": ["COMPLETE", "COMPLETE", "COMPLETE", "DIVERGED"], "objective": [0.5, 0.2, 0.3, None],
        "diverged_at": [None, None, None, 12],
    })
    figure = charts.lr_figure(trials, colour=colour, log_y=True)
    (diverged,) = [t for t in figure.data if t.name == "adam diverged"]
    assert list(diverged.x) == [1.0] and list(diverged.y) == [0.5] and diverged.marker.symbol == "x"
    assert figure.layout.xaxis.type == "log"


def test_a_categorical_values_html_is_escaped_in_tick_labels_and_hover_text() -> None:
    """plotly reads <b> and <a href> in labels as HTML, and &lt; as '<': the value shows as typed."""
    trials = pd.DataFrame({
        "optimizer": ["adam"] * 2, "lr": [1e-3, 1e-2], "choice": ["<b>x</b>", "<a href='http://h'>y</a> & z"],
        "state": ["COMPLETE"] * 2, "objective": [0.5, 0.2], "diverged_at": [None, None],
    })
    escaped = ["&lt;b&gt;x&lt;/b&gt;", "&lt;a href='http://h'&gt;y&lt;/a&gt; &amp; z"]
    (dimension, _) = charts.parallel_figure(trials, ["choice"]).data[0].dimensions
    assert list(dimension.ticktext) == sorted(escaped)  # the categories, in order
    (points,) = charts.lr_figure(trials, colour="choice", log_y=True).data
    assert list(points.text) == escaped
