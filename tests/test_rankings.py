"""Rankings with their uncertainty and tunability, on experiments run for real: every number checked
against its definition recomputed from the stored runs (tuner.stats is checked against scipy and
brute force in tests/test_stats.py)."""

import csv
import datetime as dt
import io
import json

import numpy as np
import pytest
from click.testing import Result
from sqlalchemy import func, select, update
from typer.testing import CliRunner

from tests.helpers import run_rows
from tuner import cli, rankings, report, stats
from tuner.errors import ConfigError
from tuner.rankings import best_ranked
from tuner.spec import parse_experiment
from tuner.storage import queries, schema
from tuner.storage.records import COMPLETE, DIVERGED, reached_target
from tuner.storage.store import Store
from tuner.tunability import Curve, expected_curve, observed_curve, tunability, winners
from tuner.worker import create_experiment, run_worker

QUADRATIC = {"name": "quad", "task": {"name": "quadratic", "options": {"dim": 10, "condition_number": 100}},
             "optimizers": ["sgd", "momentum", "adam"], "samplers": ["random", "tpe"], "trials": 8, "repeats": 2,
             "space": {"schedule": "constant"}, "budget": {"steps": 150, "eval_every": 50},
             "objective": {"name": "steps_to_target", "target": 1e-6}, "reevaluate": 4}


@pytest.fixture(scope="module")
def quad(tmp_path_factory) -> Store:
    """A finished, re-evaluated experiment on SQLite (steps_to_target: gradient descent, whose rate on
    kappa = 100 is at best 0.98, cannot reach 1e-6 in 150 steps; heavy ball can)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('rankings')}/r.db"
    store = Store.open(url, heartbeat=False)
    create_experiment(store, parse_experiment(QUADRATIC))
    run_worker(store, "quad")
    yield store
    store.close()


def reevaluations(store: Store) -> dict[tuple[str, str], list[dict]]:
    """Re-evaluation runs by (optimizer, sampler), read from the runs table directly."""
    rows = [{**r, "repeat": int(r["study_name"].rsplit("/", 1)[1])} for r in run_rows(store.engine, "quad")]
    best = {}  # per study: the trial re-evaluated (the lowest trial objective, then run id)
    for row in sorted((r for r in rows if r["kind"] == "trial" and r["state"] == COMPLETE),
                      key=lambda r: (r["objective"], r["id"])):
        best.setdefault(row["study_id"], row["id"])
    out: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        if row["kind"] == "reevaluation" and row["source_run_id"] == best.get(row["study_id"]):
            out.setdefault((row["optimizer"], row["sampler"]), []).append(row)
    return out


def test_each_row_has_its_reevaluations_mean_and_median_with_stratified_intervals(quad) -> None:
    rows, ranking = best_ranked(quad.engine, "quad")
    runs = reevaluations(quad)
    assert len(rows) == 6 and ranking.note is None
    for row in rows:
        mine = runs[row["optimizer"], row["sampler"]]
        strata = [[r["objective"] for r in mine if r["repeat"] == repeat and r["state"] == COMPLETE]
                  for repeat in (0, 1)]
        strata = [s for s in strata if s]
        assert row["runs"] == sum(map(len, strata)) and row["reeval_diverged"] == sum(
            r["state"] == DIVERGED for r in mine)
        expected = stats.bootstrap_interval(strata)
        assert (row["mean"], row["mean_low"], row["mean_high"]) == (expected.value, expected.low, expected.high)
        assert row["mean"] == pytest.approx(np.mean([v for s in strata for v in s]))
        assert row["median"] == pytest.approx(np.median([v for s in strata for v in s]))
        assert row["reeval_reached"] <= row["runs"]


def test_ranks_are_tied_where_intervals_overlap_and_pairs_are_mann_whitney(quad) -> None:
    rows, ranking = best_ranked(quad.engine, "quad")
    assert [r["rank"] for r in rows] == stats.tied_ranks([stats.Estimate(r["mean"], r["mean_low"], r["mean_high"])
                                                          for r in rows])
    by_label = {r.label: r for r in ranking.rows}
    assert len(ranking.improvements) == len(rows) * (len(rows) - 1)
    for pair in ranking.improvements:
        a, b = by_label[pair.a].outcomes, by_label[pair.b].outcomes
        wins = sum((x < y) + 0.5 * (x == y) for x in a for y in b)
        assert pair.probability.value == pytest.approx(wins / (len(a) * len(b)))
        assert pair.probability.low <= pair.probability.value <= pair.probability.high
        mirror = ranking.improvement(pair.b, pair.a)
        assert mirror.value == pytest.approx(1 - pair.probability.value)
    for row, following in zip(rows, rows[1:], strict=False):
        expected = ranking.improvement(f"{row['optimizer']}/{row['sampler']}",
                                       f"{following['optimizer']}/{following['sampler']}")
        assert row["beats_next"] == expected
    assert rows[-1]["beats_next"] is None


def test_the_worker_that_finishes_stores_the_ranking_for_plain_sql(quad) -> None:
    rows, ranking = best_ranked(quad.engine, "quad")
    with quad.engine.connect() as conn:
        stored = {(r.optimizer, r.sampler): r for r in conn.execute(select(schema.rankings))}
        pairs = conn.execute(select(schema.improvements)).all()
    assert set(stored) == {(r["optimizer"], r["sampler"]) for r in rows}
    for row in rows:
        kept = stored[row["optimizer"], row["sampler"]]
        assert (kept.rank, kept.runs, kept.mean, kept.mean_low, kept.median_high) == (
            row["rank"], row["runs"], row["mean"], row["mean_low"], row["median_high"])
    assert len(pairs) == len(ranking.improvements)


def tuner(*args: str) -> Result:
    """The tuner command, in this process, on a wide terminal."""
    return CliRunner().invoke(cli.app, list(args), env={"COLUMNS": "250"})


@pytest.fixture(autouse=True)
def wide_console(monkeypatch) -> None:
    monkeypatch.setattr(cli.console, "width", 250)


def test_best_prints_intervals_ties_and_misses_in_every_format(quad) -> None:
    url = quad.url
    table = tuner("best", "quad", "--storage", url)
    assert table.exit_code == 0, table.stderr
    assert "mean [95% CI]" in table.stdout and "P(beats next)" in table.stdout and "configurations" in table.stdout
    rows, _ = best_ranked(quad.engine, "quad")
    for row in rows:
        assert row["rank"] in table.stdout
    missed = [row for row in rows if row["runs"] and not row["reeval_reached"]]
    assert missed, "the fixture's budget is meant to leave some optimizer short of the target"
    for row in missed:
        assert report.not_reached(row["reeval_final_loss"]) in table.stdout
    as_csv = list(csv.DictReader(io.StringIO(tuner("best", "quad", "--storage", url, "--format", "csv").stdout)))
    assert [(r["optimizer"], r["rank"]) for r in as_csv] == [(r["optimizer"], r["rank"]) for r in rows]
    assert float(as_csv[0]["mean_low"]) == rows[0]["mean_low"]
    as_json = json.loads(tuner("best", "quad", "--storage", url, "--format", "json").stdout)
    assert as_json[0]["ranking"]["mean"]["ci"] == [rows[0]["mean_low"], rows[0]["mean_high"]]
    assert as_json[0]["ranking"]["beats_next"]["value"] == rows[0]["beats_next"].value


def test_a_run_that_missed_its_target_is_never_shown_as_steps() -> None:
    """A miss scores more than its steps (objective.objective_value); reaching at the last step does not."""
    assert reached_target(0.0, 150) and reached_target(150.0, 150)
    assert not reached_target(150.0 * (1 + np.log10(2.0)), 150) and not reached_target(None, 150)


def test_too_few_reevaluations_say_so(tmp_path) -> None:
    store = Store.open(f"sqlite:///{tmp_path}/few.db", heartbeat=False)
    create_experiment(store, parse_experiment({**QUADRATIC, "name": "few", "reevaluate": 2, "repeats": 1,
                                               "samplers": ["random"], "trials": 3}))
    run_worker(store, "few")
    result = tuner("best", "few", "--storage", store.url)
    store.close()
    assert result.exit_code == 0
    assert "note: too few re-evaluation runs to separate anything" in result.stderr


def test_expected_best_of_k_is_computed_from_every_repeats_trials(quad) -> None:
    result = tunability(quad.engine, "quad")
    trials = [{**r, "repeat": int(r["study_name"].rsplit("/", 1)[1])}
              for r in run_rows(quad.engine, "quad") if r["kind"] == "trial"]
    for curve in result.curves:
        mine = sorted((r for r in trials if (r["optimizer"], r["sampler"]) == (curve.optimizer, curve.sampler)),
                      key=lambda r: (r["repeat"], r["trial_number"]))
        scores = np.array([r["objective"] if r["state"] == COMPLETE else np.inf for r in mine])
        if curve.sampler == "random":
            assert curve.kind == "expected"
            value, failed = stats.best_of_k_curve(scores, curve.k)
            np.testing.assert_allclose(curve.value, value, rtol=1e-12)
            np.testing.assert_allclose(curve.failed, failed, rtol=1e-12)
            assert (curve.low <= curve.value + 1e-9).all() and (curve.value <= curve.high + 1e-9).all()
        else:
            assert curve.kind == "observed"
            paths = [np.minimum.accumulate(scores[[r["repeat"] == repeat for r in mine]]) for repeat in (0, 1)]
            np.testing.assert_allclose(curve.value, np.median(paths, axis=0))
    assert set(result.omega) == {(o, "random") for o in ("sgd", "momentum", "adam")
                                 if np.isfinite(next(c.value for c in result.curves
                                                     if (c.optimizer, c.sampler) == (o, "random"))).all()}


def test_observed_curves_band_from_best_to_worst_repeat() -> None:
    curve = observed_curve("sgd", "tpe", [np.array([3.0, np.inf, 1.0]), np.array([np.inf, 2.0, 2.0])])
    np.testing.assert_array_equal(curve.value, [np.inf, 2.5, 1.5])
    np.testing.assert_array_equal(curve.low, [3.0, 2.0, 1.0])
    np.testing.assert_array_equal(curve.high, [np.inf, 3.0, 2.0])
    np.testing.assert_array_equal(curve.failed, [0.5, 0.0, 0.0])


def test_winners_change_at_the_crossovers() -> None:
    def expected(optimizer: str, values: list[float]) -> Curve:
        v = np.array(values)
        return Curve(optimizer, "random", "expected", v, v, v, v * 0)

    found = winners([expected("adam", [1.0, 0.9, 0.8, 0.7]), expected("sgd", [2.0, 0.8, 0.5, np.nan]),
                     expected("lbfgs", [np.nan] * 4)])
    assert [(w.first, w.last, w.optimizer) for w in found] == [(1, 1, "adam"), (2, 3, "sgd"), (4, 4, "adam")]


def test_ranking_rows_keep_infinite_ends_out_of_sql() -> None:
    estimate = stats.Estimate(np.inf, 1.0, np.inf)
    ranked = rankings.Ranked("sgd", "random", "1", 0, 3, estimate, estimate, [])
    (row,), pairs = rankings.stored_rows(rankings.Ranking([ranked], [], None))
    assert (row["mean"], row["mean_low"], row["mean_high"]) == (None, 1.0, None) and pairs == []


def test_tunability_prints_omega_winners_and_curves_in_every_format(quad) -> None:
    result = tunability(quad.engine, "quad")
    table = tuner("tunability", "quad", "--storage", quad.url)
    assert table.exit_code == 0, table.stderr
    assert "omega summaries" in table.stdout and "the winner at each budget" in table.stdout
    as_json = json.loads(tuner("tunability", "quad", "--storage", quad.url, "--format", "json").stdout)
    assert [(c["optimizer"], c["sampler"], c["kind"]) for c in as_json["curves"]] == [
        (c.optimizer, c.sampler, c.kind) for c in result.curves]
    first = result.curves[0]
    assert as_json["curves"][0]["value"] == [float(v) if np.isfinite(v) else None for v in first.value]
    assert [(w["first"], w["last"], w["optimizer"]) for w in as_json["winners"]] == [
        (w.first, w.last, w.optimizer) for w in result.winners]
    rows = list(csv.DictReader(io.StringIO(tuner("tunability", "quad", "--storage", quad.url, "--format", "csv").stdout)))
    assert len(rows) == sum(len(c.value) for c in result.curves)


def test_a_stored_ranking_is_computed_again_only_after_a_new_run(quad, monkeypatch) -> None:
    experiment_id = queries.experiment(quad.engine, "quad")[0]
    assert queries.ranking_is_current(quad.engine, experiment_id)
    computed = []
    monkeypatch.setattr(rankings, "best_ranked", lambda *a, **k: computed.append(a) or ([], rankings.Ranking([], [], None)))
    rankings.save(quad, "quad")
    assert computed == []
    with quad.engine.begin() as conn:  # a newer run: the stored ranking is out of date
        conn.execute(update(schema.runs).where(schema.runs.c.id == select(func.max(schema.runs.c.id))
                                                .scalar_subquery()).values(created_at=dt.datetime.now(dt.UTC)))
    assert not queries.ranking_is_current(quad.engine, experiment_id)
    rankings.save(quad, "quad")
    assert len(computed) == 1


def test_a_band_survives_resamples_in_which_every_trial_diverged() -> None:
    scores = [np.array([0.0239, np.inf, 0.0697, 33.7, np.inf, 2.666])]
    curve = expected_curve("sgd", "random", scores)
    assert (curve.low < curve.value).any() and (curve.value < curve.high).any()
    assert np.isfinite(curve.low).all() and np.isfinite(curve.high).all()


def test_a_configuration_whose_runs_all_diverged_ranks_last_and_says_so() -> None:
    row = {"optimizer": "sgd", "sampler": "random", "trial_objective": 0.001}
    runs = [{"optimizer": "sgd", "sampler": "random", "repeat": 0, "state": DIVERGED, "objective": None}] * 3
    ranked = rankings._ranked(row, runs)
    assert ranked.mean.value == np.inf and ranked.n == 0 and ranked.outcomes == [np.inf] * 3
    shown = {"runs": 0, "reeval_diverged": 3, "mean": np.inf}
    assert report._statistic(shown, "final_train_loss", "mean") == "all 3 runs diverged"


def test_a_filter_shows_rows_with_the_ranks_they_have_among_all(quad) -> None:
    every, _ = best_ranked(quad.engine, "quad")
    adam, _ = best_ranked(quad.engine, "quad", optimizer="adam")
    assert [(r["sampler"], r["rank"]) for r in adam] == [(r["sampler"], r["rank"]) for r in every
                                                          if r["optimizer"] == "adam"]


def test_the_launchs_best_so_far_shows_a_miss_as_not_reached() -> None:
    miss = {"trial_objective": 160.0, "trial_steps": 150, "trial_final_loss": 2e-6}
    assert report.trial_objective(miss, "steps_to_target") == report.not_reached(2e-6)
    assert report.trial_objective({**miss, "trial_objective": 42.0}, "steps_to_target") == "42"
    assert report.trial_objective(miss, "final_train_loss") == "160"


def test_a_study_file_cannot_claim_a_place_in_a_suite() -> None:
    with pytest.raises(ConfigError, match="in_suite is not allowed in a study file"):
        parse_experiment({**QUADRATIC, "in_suite": {"suite": "s9", "tasks": ["quad"], "target": 0.1}})
