"""Time to target, ratios, performance profiles and the AlgoPerf score, against values worked by hand
and a brute-force integral."""

import math

import numpy as np
import pytest

from tuner.profiles import (
    R_MAX,
    TimeToTarget,
    algoperf_score,
    performance_profile,
    performance_ratios,
    profile_steps,
    protocol_time,
    time_to_target,
)

INF = math.inf

TIMES = np.array([[10.0, INF, 4.0, INF],
                  [20.0, 5.0, 4.0, INF],
                  [40.0, 10.0, INF, INF]])
"""Three solvers on four tasks: a clear winner on task 0, one solver missing task 1, a tie on
task 2 (and a miss), and task 3 reached by nobody."""
RATIOS = np.array([[1.0, INF, 1.0, INF],
                   [2.0, 1.0, 1.0, INF],
                   [4.0, 2.0, INF, INF]])


def test_time_to_target_is_the_first_evaluation_at_or_under_the_target() -> None:
    steps, seconds, values = [10, 20, 30, 40], [0.1, 0.2, 0.3, 0.4], [5.0, 1.0, 0.5, 2.0]
    assert time_to_target(steps, seconds, values, 1.0) == TimeToTarget(20, 0.2)  # <=: equal reaches it
    assert time_to_target(steps, seconds, values, 0.7) == TimeToTarget(30, 0.3)
    assert time_to_target(steps, seconds, values, 9.0) == TimeToTarget(10, 0.1)
    assert time_to_target(steps, seconds, values, 0.1) == TimeToTarget(INF, INF)
    assert time_to_target([], [], [], 1.0) == TimeToTarget(INF, INF)  # diverged before its first evaluation


def test_a_value_that_was_not_finite_never_reaches_the_target() -> None:
    assert time_to_target([10, 20], [1.0, 2.0], [math.nan, 0.5], 1.0) == TimeToTarget(20, 2.0)
    assert time_to_target([10], [1.0], [math.nan], 1.0) == TimeToTarget(INF, INF)


@pytest.mark.parametrize(("studies", "expected"), [
    ([[3.0, 5.0], [INF, 2.0], [INF, INF]], 3.0),   # fastest per study 3, 2, inf: the median is 3
    ([[7.0]], 7.0),
    ([[1.0], [3.0]], 2.0),                           # two studies: the mean of both
    ([[1.0], [INF]], INF),                          # ... +inf when one of them missed
    ([[INF], [INF], [INF]], INF),
    ([[], [1.0], [2.0]], 2.0),                      # a study without a trial missed
    ([[4.0, 1.0, 9.0], [2.0, 8.0], [6.0, 5.0], [INF], [3.0, INF]], 3.0),  # 1, 2, 5, inf, 3: sorted, 3 is middle
])
def test_protocol_time_is_the_median_over_studies_of_the_fastest_trial(studies, expected) -> None:
    assert protocol_time(studies) == expected


def test_protocol_time_needs_a_study() -> None:
    with pytest.raises(ValueError, match="no studies"):
        protocol_time([])


def test_ratios_worked_by_hand() -> None:
    """Per task, over the fastest: ties are both 1, a miss is +inf, and a task nobody reached is
    +inf for everyone (nobody to compare with, never NaN)."""
    np.testing.assert_array_equal(performance_ratios(TIMES), RATIOS)
    assert not np.isnan(performance_ratios(TIMES)).any()


@pytest.mark.parametrize("bad", [0.0, -1.0, math.nan])
def test_ratios_refuse_a_time_that_is_not_positive(bad) -> None:
    with pytest.raises(ValueError, match="positive"):
        performance_ratios(np.array([[1.0, bad]]))


def test_profile_worked_by_hand() -> None:
    taus = [1.0, 1.5, 2.0, 3.99, 4.0, 100.0]
    np.testing.assert_allclose(performance_profile(RATIOS, taus), np.array([
        [2, 2, 2, 2, 2, 2],
        [2, 2, 3, 3, 3, 3],
        [0, 0, 1, 1, 2, 2],
    ]) / 4)


def test_scores_worked_by_hand() -> None:
    """r_max = 4: a task at ratio r earns (4 - r) / 3 of a task, a miss or r >= 4 nothing; mean over 4 tasks."""
    np.testing.assert_allclose(algoperf_score(RATIOS), [(1 + 0 + 1 + 0) / 4, (2 / 3 + 1 + 1 + 0) / 4,
                                                        (0 + 2 / 3 + 0 + 0) / 4])
    np.testing.assert_allclose(algoperf_score(np.array([[1.0, 1.0], [5.0, INF], [2.5, 1.0]])),
                               [1.0, 0.0, (0.5 + 1.0) / 2])
    np.testing.assert_allclose(algoperf_score(np.array([[3.0]]), r_max=5.0), [0.5])


def brute_force_score(ratios: np.ndarray, r_max: float, points: int = 400_000) -> np.ndarray:
    """The definition, integrated numerically: the profile at the midpoints of a fine grid on [1, r_max]."""
    width = (r_max - 1) / points
    taus = 1 + width * (np.arange(points) + 0.5)
    return performance_profile(ratios, taus).sum(axis=1) * width / (r_max - 1)


@pytest.mark.parametrize("seed", range(5))
def test_the_exact_score_is_the_integral_of_the_profile(seed) -> None:
    rng = np.random.default_rng(seed)
    times = np.exp(rng.uniform(0, 2, size=(6, 9)))
    times[rng.random(times.shape) < 0.2] = INF  # misses
    times[:, 0] = INF  # a task nobody reached
    times[1, 1:] = times[0, 1:]  # ties
    ratios = performance_ratios(times)
    for r_max in (R_MAX, 2.5):
        np.testing.assert_allclose(algoperf_score(ratios, r_max), brute_force_score(ratios, r_max), atol=1e-4)


def test_profile_steps_draw_the_profile_exactly() -> None:
    taus, rho = profile_steps([1.5, 3.0, 5.0, INF, 1.5])
    np.testing.assert_array_equal(taus, [1.0, 1.5, 3.0, 4.0])
    np.testing.assert_allclose(rho, [0.0, 0.4, 0.6, 0.6])
    grid = np.linspace(1, R_MAX, 1001)
    drawn = rho[np.searchsorted(taus, grid, side="right") - 1]  # horizontal, then vertical
    np.testing.assert_allclose(drawn, performance_profile(np.array([[1.5, 3.0, 5.0, INF, 1.5]]), grid)[0])


def test_a_solver_fastest_everywhere_scores_one_and_one_that_missed_everything_zero() -> None:
    ratios = performance_ratios(np.array([[1.0, 2.0, 3.0], [INF, INF, INF]]))
    np.testing.assert_array_equal(algoperf_score(ratios), [1.0, 0.0])
    np.testing.assert_array_equal(performance_profile(ratios, [1.0])[:, 0], [1.0, 0.0])
