"""The dashboard's pure summaries, on hand-made frames whose answers are known."""

import itertools

import numpy as np
import pandas as pd
import pytest

from dashboard import charts
from tests.helpers import TINY
from tuner.objective import objective_value
from tuner.optim import OPTIMIZERS
from tuner.spec import parse_experiment
from tuner.storage.records import COMPLETE, DIVERGED, RunRecord, missed_final_loss, reached_target


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
    assert table.loc["tpe", "trials to match"] == "2" and table.loc["tpe", "random final best"] == "4.00e-01"
    assert table.loc["qmc", "trials to match"] == "-"  # not within its trials: "-", never "None"


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
    points = charts.lr_figure(trials, colour="choice", log_y=True).data  # one trace per category
    assert [t.name for t in points] == sorted(escaped) and [t.customdata[0] for t in points] == sorted(escaped)


def test_every_optimizer_has_a_style_of_its_own_the_same_on_every_page() -> None:
    assert list(charts.STYLES) == list(OPTIMIZERS)
    assert {name: look.colour for name, look in charts.STYLES.items()} == charts.PALETTE  # for figures that use dashes
    names = [f"optimizer{i}" for i in range(32)]  # issue 14 doubles the registry: room for 32
    looks = charts.styles(names)
    assert len({(s.colour, s.dash) for s in looks.values()}) == 32
    assert len({(s.colour, s.symbol) for s in looks.values()}) == 32
    for a, b in itertools.pairwise(names):  # neighbours differ in colour and in line style
        assert looks[a].colour != looks[b].colour and looks[a].dash != looks[b].dash
    assert not set(charts.REFERENCE_DASHES) & set(charts.DASHES)
    assert charts.style("gone") == charts.UNKNOWN


def test_log_axes_show_powers_of_ten_or_plain_numbers_and_no_minor_labels() -> None:
    wide = charts.log_axis([3e-9, 0.5, 2.0])
    assert wide["type"] == "log" and wide["exponentformat"] == "power" and wide["minor"] == {"ticks": "",
                                                                                            "showgrid": False}
    assert wide["dtick"] == 2  # 9.2 decades: a tick every 2, at most 8
    assert charts.log_axis([0.01, 0.5])["dtick"] == 1
    decade = charts.log_axis([0.15, 2.3])  # one power of ten: 1-2-5, as plain numbers
    assert decade["tickvals"] == [0.2, 0.5, 1.0, 2.0] and decade["ticktext"] == ["0.2", "0.5", "1", "2"]
    narrow = charts.log_axis([0.21, 0.62, np.nan, -1.0, np.inf])  # fewer than three 1-2-5 ticks: a linear step
    assert narrow["dtick"] == "L0.1" and "tickvals" not in narrow
    assert charts.log_axis([0.0301, 0.0312])["dtick"] == "L0.0002"
    assert charts.log_axis([250, 1900], ticks=4)["dtick"] == "L500"  # a small panel: fewer ticks
    assert "dtick" not in charts.log_axis([np.nan, 0.0])


def test_ema_follows_its_rule_step_by_step() -> None:
    values = np.random.default_rng(0).lognormal(size=50)
    for weight in (0.0, 0.5, 0.9, 0.99):
        expected = [values[0]]
        for x in values[1:]:
            expected.append(weight * expected[-1] + (1 - weight) * x)
        np.testing.assert_allclose(charts.ema(values, weight), expected, rtol=1e-12)
    assert np.isnan(charts.ema(np.array([1.0, 2.0, np.nan]), 0.5)[-1]) and len(charts.ema(np.array([]), 0.5)) == 0


def test_smooth_averages_each_run_on_its_own_in_step_order() -> None:
    curves = pd.DataFrame({"run_id": [2, 1, 1, 2, 1], "step": [1, 2, 0, 0, 1], "value": [4.0, 3.0, 1.0, 8.0, 2.0]})
    smoothed = charts.smooth(curves, 0.5).set_index(["run_id", "step"])["value"]
    assert smoothed[1].tolist() == [1.0, 1.5, 2.25] and smoothed[2].tolist() == [8.0, 6.0]


@pytest.mark.parametrize(("objective", "synthetic", "series"), [
    ("final_val_loss", False, "val_loss"), ("best_val_loss", False, "val_loss"),
    ("final_train_loss", False, "train_loss"), ("final_train_loss", True, "loss"),
    ("steps_to_target", True, "train_loss"), ("train_auc", False, "train_loss"),
])
def test_convergence_shows_the_series_the_objective_is_computed_from(objective, synthetic, series) -> None:
    assert charts.objective_series(objective, synthetic) == series


def convergence_stats() -> pd.DataFrame:
    runs = pd.DataFrame({"optimizer": ["sgd"] * 4 + ["adam"] * 4, "step": [0, 1, 2, 3] * 2,
                         "value": [1.0, 0.5, 0.2, 0.1, 1.0, 0.1, 0.01, 0.001]})
    return charts.spread(runs, ["optimizer"], "step", "step", "min-max")


def test_theory_references_are_clipped_to_the_real_curves_styled_apart_and_in_the_legend() -> None:
    k = np.arange(4)
    references = [("optimal heavy ball", k, 1.0 * 0.01 ** k), ("optimal gradient descent", k, 2.0 * 0.5 ** k)]
    figure = charts.convergence_figure(convergence_stats(), x_title="step", y_title="loss", log_y=True,
                                       references=references, target=0.05)
    heavy, descent = (next(t for t in figure.data if t.name == name) for name, _, _ in references)
    np.testing.assert_array_equal(heavy.y, [1.0, 0.01, np.nan, np.nan])  # under the curves' 0.001: cut
    np.testing.assert_array_equal(descent.y, [np.nan, 1.0, 0.5, 0.25])  # over their 1.0: cut
    assert heavy.line.dash != descent.line.dash and {heavy.line.dash, descent.line.dash} <= set(charts.REFERENCE_DASHES)
    assert heavy.showlegend is not False and heavy.legendgroup == "theory"
    medians = {t.name: t for t in figure.data if t.line.width == 2}
    assert {n: (t.line.color, t.line.dash) for n, t in medians.items()} == {
        n: (charts.STYLES[n].colour, charts.STYLES[n].dash) for n in ("sgd", "adam")}
    assert [t.name for t in figure.data if t.line.width == 2] == ["sgd", "adam"]  # OPTIMIZERS' order
    target = next(t for t in figure.data if t.name == "target 0.05")
    assert list(target.y) == [0.05, 0.05] and list(target.x) == [0, 3]
    assert figure.layout.yaxis.exponentformat == "power" and figure.layout.yaxis.dtick == 1
    assert figure.layout.yaxis.minor.ticks == ""


def steps_spec():
    return parse_experiment({**TINY, "task": {"name": "quadratic"}, "budget": {"steps": 100},
                             "objective": {"name": "steps_to_target", "target": 1e-3}})


def scored(final: float, train_loss: list[float]) -> float:
    record = RunRecord(kind="trial", seed=0, state=COMPLETE, params={}, wall_time=0.0, steps=100, samples=100,
                       final_train_loss=final)
    return objective_value(steps_spec(), record, np.array(train_loss), 100)


def test_a_miss_shows_as_not_reached_with_the_final_loss_its_score_was_made_from() -> None:
    miss = scored(0.05, [1.0] * 100)
    assert miss > 100 and missed_final_loss(miss, 1e-3, 100) == pytest.approx(0.05)
    assert charts.steps_to_target(miss, 100, 1e-3) == "not reached (final loss 5.00e-02)"
    assert charts.steps_to_target(miss, 100, 1e-3, final_loss=0.0493) == "not reached (final loss 4.93e-02)"
    hit = scored(1e-4, [1.0] * 7 + [1e-4] * 93)
    assert charts.steps_to_target(hit, 100, 1e-3) == "7"
    assert charts.steps_to_target(None, 100, 1e-3) == charts.steps_to_target(np.nan, 100, 1e-3) == "-"
    trials = pd.DataFrame({"state": [COMPLETE, DIVERGED, COMPLETE], "objective": [hit, np.nan, miss]}, index=[4, 5, 6])
    outcomes = charts.target_outcomes(trials, pd.Series(100, index=trials.index), 1e-3)
    assert outcomes.to_dict("index") == {4: {"reached": True, "text": "7"},
                                         6: {"reached": False, "text": "not reached (final loss 5.00e-02)"}}


def best_row(**changes) -> dict:
    row = {"rank": "1", "optimizer": "adam", "sampler": "tpe", "reeval_mean": 0.1234, "reeval_std": 0.01,
           "reeval_min": 0.11, "reeval_max": 0.14, "reeval_count": 3, "reeval_diverged": 1, "reeval_reached": 3,
           "reeval_final_loss": 1e-4, "trial_objective": 8.56e-10, "trial_final_loss": 1e-4, "trial_number": 7}
    return {**row, **changes}


def test_best_scores_are_scientific_and_a_miss_is_never_shown_as_steps() -> None:
    (plain,) = charts.best_scores([best_row(reeval_std=None)]).to_dict("records")
    assert plain == {"rank": "1", "optimizer": "adam", "sampler": "tpe", "mean": "1.23e-01", "std": "-",
                     "min": "1.10e-01", "max": "1.40e-01", "seeds": 3, "diverged": 1,
                     "trial objective": "8.56e-10", "trial": 7}
    rows = [best_row(reeval_mean=40.0, reeval_min=30.0, reeval_max=50.0, trial_objective=35.0),  # every seed
            best_row(reeval_mean=100.0, reeval_min=20.0, reeval_max=200.0, reeval_reached=2, trial_objective=20.0),
            best_row(reeval_mean=250.0, reeval_min=200.0, reeval_max=300.0, reeval_reached=0, reeval_final_loss=0.02,
                     trial_objective=200.0, trial_final_loss=0.0101),
            best_row(reeval_mean=None, reeval_std=None, reeval_min=None, reeval_max=None, reeval_count=0,
                     reeval_reached=0, trial_objective=150.0, trial_final_loss=None)]
    table = charts.best_scores(rows, target=1e-3, budgets=[100, 100, 100, 100])
    assert table.columns.tolist() == ["rank", "optimizer", "sampler", "mean", "std", "reached", "diverged",
                                      "trial objective", "trial"]
    assert table[["mean", "std", "reached", "trial objective"]].values.tolist() == [
        ["40", "0.01", "3 of 3", "35"],
        ["2 of 3 reached, the best in 20", "-", "2 of 3", "20"],
        ["not reached (final loss 2.00e-02)", "-", "0 of 3", "not reached (final loss 1.01e-02)"],
        ["-", "-", "0 of 0", "not reached (final loss 3.16e-03)"],  # the final loss from the score
    ]


def test_best_parameters_fit_the_page_common_ones_in_columns_the_rest_together() -> None:
    rows = [{"optimizer": o, "sampler": "tpe"} for o in ("adam", "sgd", "lbfgs")]
    params = [{"lr": 1e-3, "batch_size": 16.0, "eps": 8.56e-10, "amsgrad": False},
              {"lr": 0.5, "batch_size": 32.0, "schedule": "cosine"}, {"history_size": 10}]
    table = charts.best_parameters(rows, params)
    assert table.columns.tolist() == ["configuration", "lr", "batch_size", "other parameters"]
    assert table.values.tolist() == [
        ["adam · tpe", "1.00e-03", "16", "eps=8.56e-10 amsgrad=False"],
        ["sgd · tpe", "5.00e-01", "32", "schedule=cosine"],
        ["lbfgs · tpe", "-", "-", "history_size=10"],
    ]
    assert "other parameters" not in charts.best_parameters(rows[:1], params[:1])
    assert "other parameters" not in charts.best_parameters(rows[:2], params[:2])  # all of them fit
    narrow = charts.best_parameters(rows[:2], params[:2], width=500)  # the most common ones, as many as fit
    assert narrow.columns.tolist() == ["configuration", "lr", "batch_size", "other parameters"]
    assert narrow["other parameters"].tolist() == ["eps=8.56e-10 amsgrad=False", "schedule=cosine"]
    assert sum(charts.column_widths(narrow).values()) <= 500
    squeezed = charts.best_parameters(rows[:2], params[:2], width=100)  # nothing fits: the narrowest, that one
    assert squeezed.columns.tolist() == narrow.columns.tolist()
    assert charts.column_widths(narrow)["lr"] == 7 * len("1.00e-03") + 24


def test_batch_size_is_coloured_by_category_and_misses_are_hollow() -> None:
    trials = pd.DataFrame({
        "optimizer": "adam", "lr": [1e-4, 1e-3, 1e-2, 1e-1], "batch_size": [16.0, 64.0, 16.0, 32.0],
        "state": COMPLETE, "objective": [50.0, 250.0, 20.0, 30.0], "diverged_at": None,
    })
    outcomes = charts.target_outcomes(trials, pd.Series(100, index=trials.index), 1e-3)
    figure = charts.lr_figure(trials, colour="batch_size", log_y=True, outcomes=outcomes)
    assert [t.name for t in figure.data] == ["16", "32", "64"] and figure.layout.legend.title.text == "batch_size"
    assert not any(t.marker.showscale for t in figure.data)
    sixteen, _, sixty_four = figure.data
    assert list(sixteen.text) == ["50", "20"] and sixty_four.marker.symbol == ("circle-open",)
    assert list(sixty_four.text) == ["not reached (final loss 3.16e-02)"]
    assert sixty_four.marker.line.color == sixty_four.marker.color and sixty_four.marker.line.width > 0  # WebGL
    assert figure.layout.xaxis.exponentformat == "power" and figure.layout.xaxis.dtick == 1
    plain = charts.lr_figure(trials, log_y=True)
    (adam,) = plain.data
    assert adam.marker.color == charts.STYLES["adam"].colour and adam.marker.symbol == charts.STYLES["adam"].symbol
    batch, lr, objective = charts.parallel_figure(trials, ["batch_size", "lr"]).data[0].dimensions
    assert list(batch.ticktext) == ["16", "32", "64"] and list(batch.values) == [0, 2, 0, 1]
    assert lr.label == "lr" and list(lr.tickvals) == [-4, -3, -2, -1] and lr.ticktext[0] == "1e-4"
    assert objective.label == "objective" and list(objective.values) == pytest.approx(np.log10([50, 250, 20, 30]))


def test_sampler_panels_have_y_titles_and_a_step_budget_line() -> None:
    stats = pd.DataFrame({"optimizer": ["sgd"] * 2 + ["adam"] * 2 + ["lbfgs"] * 2, "sampler": "random",
                          "trial": [1, 2] * 3, "x": [1, 2] * 3, "median": [300.0, 80.0] * 3, "lo": [200.0, 50.0] * 3,
                          "hi": [400.0, 90.0] * 3, "n": 2})
    figure = charts.sampler_figure(stats, log_y=True, y_title="best steps_to_target so far", budget=100)
    assert figure.layout.yaxis.title.text == figure.layout.yaxis3.title.text == "best steps_to_target so far"
    assert figure.layout.yaxis2.title.text is None  # the second column shares the row's title
    budgets = [t for t in figure.data if t.name.startswith("step budget")]
    assert [list(t.y) for t in budgets] == [[100, 100]] * 3 and [t.showlegend for t in budgets] == [True, False, False]
    assert [a.text for a in figure.layout.annotations] == ["sgd", "adam", "lbfgs"]  # panels in OPTIMIZERS' order
    assert figure.layout.yaxis.type == "log" and figure.layout.yaxis.exponentformat == "power"


def test_spread_equals_pandas_quantiles_per_group_with_missing_and_infinite_values() -> None:
    """The vectorised bands against pandas' groupby quantiles (the brute force), on random groups
    of 1 to 60 rows holding NaN (left out) and +inf (a repeat without a result: the worst)."""
    rng = np.random.default_rng(1)
    for _ in range(200):
        n = int(rng.integers(1, 60))
        runs = pd.DataFrame({"g": rng.integers(0, 4, n), "step": rng.integers(0, 5, n), "seconds": rng.uniform(0, 1, n),
                             "value": rng.choice([0.1, 0.5, 1.0, 2.0, np.inf, np.nan, 3.0], n) * rng.uniform(0.5, 2, n)})
        for band, (low, high) in charts.BANDS.items():
            grouped = runs.groupby(["g", "step"])
            expected = pd.DataFrame({"median": grouped["value"].median(), "lo": grouped["value"].quantile(low),
                                     "hi": grouped["value"].quantile(high), "n": grouped["value"].count(),
                                     "x": grouped["seconds"].median()}).reset_index()
            expected[["median", "lo", "hi"]] = expected[["median", "lo", "hi"]].replace(np.inf, np.nan)
            found = charts.spread(runs, ["g"], "step", "seconds", band)
            pd.testing.assert_frame_equal(found[expected.columns], expected, check_dtype=False)


def test_thinned_lines_pass_through_every_point_of_the_full_lines() -> None:
    """Best-so-far medians are steps: the thinned rows, joined by straight lines, give every row's value."""
    rng = np.random.default_rng(2)
    trial = np.tile(np.arange(1, 501), 2)
    median = np.concatenate([np.minimum.accumulate(rng.choice([np.inf, 5.0, 3.0, 2.0, 1.0], 500, p=[.1, .6, .2, .08,
                                                                                                   .02]))
                             for _ in range(2)])
    stats = pd.DataFrame({"optimizer": "adam", "sampler": np.repeat(["qmc", "random"], 500), "trial": trial,
                          "median": np.where(np.isinf(median), np.nan, median), "lo": median / 2, "hi": median * 2})
    drawn = charts.thinned(stats, ["optimizer", "sampler"], "trial")
    assert len(drawn) < len(stats) / 10
    for sampler, full in stats.groupby("sampler"):
        kept = drawn[drawn["sampler"] == sampler]
        assert kept["trial"].iloc[0] == 1 and kept["trial"].iloc[-1] == 500
        for column in ("median", "lo", "hi"):
            np.testing.assert_array_equal(np.interp(full["trial"], kept["trial"], kept[column]), full[column])
    assert len(charts.thinned(stats, ["optimizer", "sampler"], "trial", limit=3)) == 6  # first, middle, last each


def test_target_outcomes_say_what_steps_to_target_says_of_each_trial() -> None:
    rng = np.random.default_rng(3)
    trials = pd.DataFrame({"state": rng.choice([COMPLETE, DIVERGED], 300, p=[0.9, 0.1]),
                           "objective": rng.choice([np.nan, 1.0], 300, p=[0.05, 0.95]) * rng.uniform(1, 200, 300)})
    budgets = pd.Series(rng.choice([50, 100], 300), index=trials.index)
    found = charts.target_outcomes(trials, budgets, 1e-3)
    done = trials[trials["state"] == COMPLETE]
    assert list(found.index) == list(done.index)
    assert list(found["reached"]) == [reached_target(v, int(b)) for v, b in zip(done["objective"], budgets[done.index],
                                                                               strict=True)]
    assert list(found["text"]) == [charts.steps_to_target(v, int(b), 1e-3)
                                   for v, b in zip(done["objective"], budgets[done.index], strict=True)]


def test_density_shares_each_columns_points_over_value_bins() -> None:
    curves = pd.DataFrame({"run_id": np.repeat([1, 2, 3, 4], 3), "x": [0, 10, 20] * 4,
                           "value": [1.0, 0.05, 0.002, 1.0, 0.05, 0.05, 1.0, 1.0, np.nan, 1.0, -1.0, 0.001]})
    x, y, share = charts.density(curves, log_y=True, bins=(10, 3))
    assert list(x) == [0, 10, 20] and share.shape == (3, 3)
    np.testing.assert_allclose(np.log10(y), [-2.5, -1.5, -0.5])  # three rows over log10 values -3 .. 0
    np.testing.assert_allclose(np.nansum(share, axis=0), 1.0)
    np.testing.assert_array_equal(share[:, 0], [np.nan, np.nan, 1.0])  # every curve starts at 1
    np.testing.assert_allclose(share[:, 1], [np.nan, 2 / 3, 1 / 3])  # -1 is not drawable on a log axis
    np.testing.assert_allclose(share[:, 2], [2 / 3, 1 / 3, np.nan])  # 0.002 and 0.001; 0.05
    wide = charts.density(curves.assign(x=curves["x"] + np.arange(12) / 100), log_y=False, bins=(4, 2))
    assert len(wide[0]) == 4 and np.isclose(wide[0][0], 0 + (20.11 / 4) / 2)  # more distinct x than columns
