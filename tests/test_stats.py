"""The comparison statistics against scipy, brute-force enumeration and values worked by hand."""

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import bootstrap, mannwhitneyu

from tuner.stats import (
    Estimate,
    best_of_k_curve,
    best_of_k_weights,
    bootstrap_interval,
    probability_of_improvement,
    tied_ranks,
    tunability,
)

OBJECTIVES = st.lists(st.one_of(st.sampled_from([0.1, 0.5, 1.0, 2.0, math.inf]),
                                st.floats(0, 10, allow_nan=False)), min_size=1, max_size=5)


@settings(max_examples=200, deadline=None)
@given(objectives=OBJECTIVES, k=st.integers(1, 4))
def test_expected_best_is_the_mean_minimum_over_every_draw_of_k_trials(objectives: list[float], k: int) -> None:
    """Enumerate all K^k equally likely ordered draws with replacement: the formula is exact, for
    the mean best over the draws that found a finite value and for the share that did not."""
    draws = [min(draw) for draw in itertools.product(objectives, repeat=k)]
    found = [best for best in draws if best != math.inf]
    expected, all_failed = best_of_k_curve(np.array(objectives), np.array([k]))
    assert all_failed[0] == pytest.approx((len(draws) - len(found)) / len(draws), rel=1e-12, abs=1e-15)
    if found:
        assert expected[0] == pytest.approx(sum(found) / len(found), rel=1e-12, abs=1e-12)
    else:
        assert np.isnan(expected[0])


def test_the_curve_of_many_resamples_is_each_resamples_curve() -> None:
    rng = np.random.default_rng(3)
    samples = rng.random((4, 6))
    samples[1, 2] = np.inf
    ks = np.arange(1, 7)
    together, failed = best_of_k_curve(samples, ks)
    for row in range(4):
        alone, alone_failed = best_of_k_curve(samples[row], ks)
        np.testing.assert_allclose(together[row], alone, rtol=1e-14)
        np.testing.assert_allclose(failed[row], alone_failed, rtol=1e-14)


@pytest.mark.parametrize(("trials", "k"), [(1, 1), (3, 1), (5, 2), (7, 7), (10, 30)])
def test_the_best_of_k_weights_are_a_distribution(trials: int, k: int) -> None:
    weights = best_of_k_weights(trials, np.array([k]))[:, 0]
    assert (weights >= 0).all() and weights.sum() == pytest.approx(1.0)
    assert (np.diff(weights) <= 1e-15).all(), "the smallest value is the likeliest best"


def test_one_trial_expects_the_mean_and_many_trials_the_minimum() -> None:
    expected, _ = best_of_k_curve(np.array([3.0, 1.0, 2.0, 6.0]), np.array([1, 500]))
    assert expected == pytest.approx([3.0, 1.0])


def test_tunability_by_hand() -> None:
    """K = 2 values 1 and 2: E[best_1] = 1.5; E[best_2] = 1 * 3/4 + 2 * 1/4 = 1.25."""
    curve, _ = best_of_k_curve(np.array([2.0, 1.0]), np.array([1, 2]))
    omega = tunability(curve)
    assert (omega.one_shot, omega.peak) == (1.5, 1.25)
    assert omega.cpe == pytest.approx((2 * 1.5 + 1 * 1.25) / 3)
    assert omega.cpu == pytest.approx((1.5 + 1.25) / 2)
    assert omega.cpl == pytest.approx((1 * 1.5 + 2 * 1.25) / 3)


@settings(max_examples=100, deadline=None)
@given(a=st.lists(st.sampled_from([0.1, 0.2, 0.3, 0.4]), min_size=1, max_size=6),
       b=st.lists(st.sampled_from([0.1, 0.2, 0.3, 0.4]), min_size=1, max_size=6))
def test_probability_of_improvement_is_the_mann_whitney_statistic(a: list[float], b: list[float]) -> None:
    expected = mannwhitneyu(b, a).statistic / (len(a) * len(b))  # pairs with b above a, ties one half
    brute = sum(1.0 if x < y else 0.5 if x == y else 0.0 for x in a for y in b) / (len(a) * len(b))
    estimate = probability_of_improvement(a, b, resamples=200)
    assert estimate.value == pytest.approx(expected) == pytest.approx(brute)
    assert estimate.low <= estimate.value <= estimate.high


def test_probability_of_improvement_of_separated_samples_is_certain() -> None:
    assert probability_of_improvement([1.0, 1.1, 1.2], [2.0, 2.1, 2.2]) == Estimate(1.0, 1.0, 1.0)
    assert probability_of_improvement([2.0, 2.1], [1.0, 1.1]).value == 0.0


def test_one_stratum_is_scipys_percentile_bootstrap() -> None:
    sample = np.random.default_rng(3).normal(size=12)
    ours = bootstrap_interval([sample], np.median, resamples=500, seed=7)
    theirs = bootstrap((sample,), np.median, vectorized=False, confidence_level=0.95, n_resamples=500,
                       method="percentile", random_state=np.random.default_rng(7)).confidence_interval
    assert (ours.value, ours.low, ours.high) == (np.median(sample), theirs.low, theirs.high)


def test_strata_are_resampled_each_with_its_own_size() -> None:
    """Two repeats, each constant: every stratified resample has the same mean, a pooled one would not."""
    assert bootstrap_interval([[0.0] * 4, [1.0] * 4]) == Estimate(0.5, 0.5, 0.5)
    pooled = bootstrap_interval([[0.0] * 4 + [1.0] * 4])
    assert pooled.low < 0.5 < pooled.high


def test_a_sample_with_nothing_to_resample_has_a_point_interval() -> None:
    assert bootstrap_interval([[2.0]]) == Estimate(2.0, 2.0, 2.0)
    assert bootstrap_interval([[1.0, math.inf]]).value == math.inf


def test_tied_ranks_group_overlapping_intervals_with_the_best_of_their_group() -> None:
    estimates = [Estimate(3.0, 2.5, 3.5), Estimate(1.0, 0.9, 1.1), Estimate(1.05, 0.95, 1.3),
                 Estimate(2.0, 1.9, 2.1), Estimate(2.6, 2.05, 3.0), Estimate(5.0, 5.0, 5.0)]
    assert tied_ranks(estimates) == ["5", "1-2", "1-2", "3-4", "3-4", "6"]
    assert tied_ranks([Estimate(1.0, 0.0, 9.0), Estimate(2.0, 0.0, 9.0), Estimate(3.0, 0.0, 9.0)]) == ["1-3"] * 3
