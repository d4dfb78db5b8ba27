"""Convergence rates: the empirical estimator, the iteration matrix, the quadratic's optima, the theory gap."""

import math

import numpy as np
import pytest
from scipy.optimize import minimize

from tests.helpers import tuner, write_study
from tuner.optim import make_optimizer
from tuner.report import theory_gap_table
from tuner.storage import queries
from tuner.storage.engine import reader_engine
from tuner.tasks import make_task
from tuner.theory import asymptotic_rate, convergence_rate, iteration_radius, theory_gap

EPS = float(np.finfo(np.float64).eps)


def geometric(rate: float, steps: int, start: float = 3.0) -> np.ndarray:
    """A loss whose error contracts by exactly ``rate`` per step."""
    return start * rate ** (2.0 * np.arange(steps))


@pytest.mark.parametrize("rate", [0.3, 0.9, 0.99, 1.0, 1.01])
def test_an_exact_geometric_curve_gives_its_rate(rate: float) -> None:
    assert convergence_rate(geometric(rate, 500), EPS) == pytest.approx(rate, rel=1e-9)


@pytest.mark.parametrize("plateau", ["jitter", "zeros", "nan"])
def test_the_float_floor_plateau_is_left_out(plateau: str) -> None:
    curve = geometric(0.8, 1000)  # under loss[0] * eps after ~81 steps, then a plateau
    floor = np.flatnonzero(curve <= curve[0] * EPS)[0]
    rng = np.random.default_rng(0)
    curve[floor:] = {"jitter": curve[0] * 1e-32 * rng.uniform(0.5, 2.0, 1000 - floor),
                     "zeros": 0.0, "nan": np.nan}[plateau]
    assert convergence_rate(curve, EPS) == pytest.approx(0.8, rel=1e-9)


def test_a_curve_that_reaches_the_floor_early_uses_the_part_before() -> None:
    curve = geometric(0.001, 1000)  # three points above the floor
    assert curve[3] <= curve[0] * EPS < curve[2]
    assert convergence_rate(curve, EPS) == pytest.approx(0.001, rel=1e-9)
    assert convergence_rate(np.array([5.0, 0.0, 0.0]), EPS) == math.sqrt(EPS)  # solved in one step: the bound
    assert convergence_rate(np.array([5.0]), EPS) == math.sqrt(EPS)


def test_the_fit_uses_the_tail_past_a_fast_transient() -> None:
    steps = np.arange(400)
    curve = 1e6 * 0.5 ** (2 * steps) + 0.9 ** (2 * steps)
    assert convergence_rate(curve, EPS) == pytest.approx(0.9, rel=1e-9)


def test_noise_on_the_curve_averages_out() -> None:
    rng = np.random.default_rng(1)
    curve = geometric(0.95, 1000) * rng.lognormal(0.0, 0.2, 1000)
    assert convergence_rate(curve, EPS) == pytest.approx(0.95, abs=1e-3)


def test_a_flat_or_noisy_plateau_gives_a_rate_near_one() -> None:
    rng = np.random.default_rng(2)
    assert convergence_rate(np.full(300, 7.0), EPS) == 1.0
    assert convergence_rate(1e-3 * rng.lognormal(0.0, 0.5, 300), EPS) == pytest.approx(1.0, abs=5e-3)


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "nesterov"])
def test_iteration_radius_is_the_optimizers_own_iteration_matrix(optimizer: str) -> None:
    """The 2x2 matrix built from tuner's SGD update on one eigenvalue (the images of the unit
    states (error, buffer)) has the spectral radius iteration_radius computes."""
    rng = np.random.default_rng(3)
    for _ in range(200):
        lr, h = rng.uniform(0.001, 2.0), rng.uniform(0.01, 3.0)
        momentum = 0.0 if optimizer == "sgd" else rng.uniform(0.01, 0.99)
        sgd = make_optimizer(optimizer, **({} if optimizer == "sgd" else {"momentum": momentum}))
        columns = []
        for e, b in ((1.0, 0.0), (0.0, 1.0)):
            params = np.array([e])
            state = sgd.init(params)
            rule = state.rule
            if rule.buf is not None:
                rule.buf[:] = b
            rule.t = 1  # past the first step, which copies the gradient into the buffer
            sgd.update(params, h * np.array([e]), lr, state)
            columns.append([params[0], b if rule.buf is None else rule.buf[0]])
        matrix = np.array(columns).T
        expected = np.abs(np.linalg.eigvals(matrix[:1, :1] if optimizer == "sgd" else matrix)).max()
        assert iteration_radius(optimizer, lr, momentum, np.array([h]))[0] == pytest.approx(expected, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize(("kappa", "mu", "spread"), [(10.0, 1.0, "linear"), (100.0, 1.0, "linear"),
                                                     (1000.0, 0.5, "geometric"), (100.0, 2.0, "extremes")])
@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "nesterov"])
def test_theory_optima_beat_brute_force(kappa: float, mu: float, spread: str, optimizer: str) -> None:
    """Quadratic.theory()'s optimum has the rate it states; no point of a fine grid over (lr,
    momentum) nor a Nelder-Mead polish of the grid's best beats it; the grid's best is near it.
    At heavy ball's and Nesterov's optimum the smallest eigenvalue has a double root, whose
    computed modulus is exact to about sqrt(eps) only: hence the 1e-7 tolerances."""
    task = make_task("quadratic", {"dim": 12, "condition_number": kappa, "mu": mu, "spread": spread})
    theory = task.theory()
    prefix = {"sgd": "gd", "momentum": "heavy_ball", "nesterov": "nesterov"}[optimizer]
    lr, momentum = theory[f"{prefix}_lr"], theory.get(f"{prefix}_momentum", 0.0)
    spectrum = task.eigenvalues
    best = theory[f"{prefix}_rate"]
    assert asymptotic_rate(optimizer, lr, momentum, spectrum) == pytest.approx(best, rel=1e-7)

    lrs = np.geomspace(0.05, 4.5, 3000 if optimizer == "sgd" else 400) / theory["L"]
    momenta = np.array([0.0]) if optimizer == "sgd" else np.linspace(0.0, 0.995, 400)
    grid_lr, grid_m = (a.ravel() for a in np.meshgrid(lrs, momenta, indexing="ij"))
    radius = np.max([iteration_radius(optimizer, grid_lr, grid_m, h) for h in spectrum], axis=0)
    found = int(radius.argmin())
    assert radius[found] >= best - 1e-7
    assert grid_lr[found] == pytest.approx(lr, rel=0.03)
    assert grid_m[found] == pytest.approx(momentum, abs=0.01)
    if optimizer != "sgd":
        polished = minimize(lambda x: asymptotic_rate(optimizer, x[0], x[1], spectrum), [grid_lr[found], grid_m[found]],
                            method="Nelder-Mead", options={"xatol": 1e-12, "fatol": 1e-14})
        assert polished.fun >= best - 1e-7


QUADRATIC = {"dim": 20, "condition_number": 100.0}


def test_theory_gap_rows() -> None:
    theory = make_task("quadratic", QUADRATIC).theory()
    constant = {"kind": "constant"}
    rows = [
        {"optimizer": "momentum", "sampler": "cmaes", "reeval_mean": 0.83, "trial_objective": 0.82,
         "params": {"optimizer": "momentum", "lr": 0.9 * theory["heavy_ball_lr"],
                    "momentum": theory["heavy_ball_momentum"], "weight_decay": 0.0, "schedule": constant}},
        {"optimizer": "adam", "sampler": "cmaes", "reeval_mean": 0.9, "trial_objective": 0.9,
         "params": {"optimizer": "adam", "lr": 0.1, "schedule": constant}},
        {"optimizer": "sgd", "sampler": "random", "reeval_mean": None, "trial_objective": 0.981,
         "params": {"optimizer": "sgd", "lr": theory["gd_lr"], "schedule": constant}},
        {"optimizer": "nesterov", "reeval_mean": 0.9, "trial_objective": 0.9,
         "params": {"optimizer": "nesterov", "lr": theory["nesterov_lr"], "momentum": theory["nesterov_momentum"],
                    "schedule": {"kind": "cosine", "total_steps": 100, "lr_min": 0.0}}},
    ]
    gap = theory_gap("quadratic", QUADRATIC, rows, "rate")
    assert [g["optimizer"] for g in gap] == ["momentum", "sgd", "nesterov"]  # adam has no theory; order kept
    heavy, sgd, nesterov = gap
    assert heavy["lr_ratio"] == pytest.approx(0.9) and heavy["momentum_ratio"] == pytest.approx(1.0)
    assert heavy["optimal_lr"] == theory["heavy_ball_lr"] and heavy["optimal_rate"] == theory["heavy_ball_rate"]
    assert heavy["measured_rate"] == 0.83 and heavy["sampler"] == "cmaes"  # the re-evaluation mean
    assert heavy["asymptotic_rate"] > theory["heavy_ball_rate"] + 0.01  # off the optimum: slower
    assert sgd["momentum"] is sgd["optimal_momentum"] is sgd["momentum_ratio"] is None
    assert sgd["lr_ratio"] == 1.0 and sgd["measured_rate"] == 0.981  # not re-evaluated: the trial's
    assert sgd["asymptotic_rate"] == pytest.approx(theory["gd_rate"])
    assert nesterov["asymptotic_rate"] is None and nesterov["sampler"] is None  # a cosine schedule has no one rate
    assert all(g["measured_rate"] is None for g in theory_gap("quadratic", QUADRATIC, rows, "steps_to_target"))
    assert theory_gap("rosenbrock", {}, rows, "rate") == []
    decayed = {**rows[2], "params": {**rows[2]["params"], "weight_decay": 1.0}}  # spectrum [2, 101]
    shifted = theory_gap("quadratic", QUADRATIC, [decayed], "rate")[0]["asymptotic_rate"]
    assert shifted == pytest.approx(max(abs(1 - theory["gd_lr"] * 2.0), abs(1 - theory["gd_lr"] * 101.0)))
    table = theory_gap_table(gap)
    assert table.row_count == 3 and len(table.columns) == 7


@pytest.mark.e2e
def test_a_small_quadratic_study_tunes_the_rate(tmp_path) -> None:
    study = write_study(tmp_path, name="rate", task={"name": "quadratic", "options": {"dim": 10}},
                        optimizers=[{"name": "sgd", "space": {"schedule": "constant"}},
                                    {"name": "momentum", "space": {"schedule": "constant"}}],
                        samplers=["cmaes"], trials=6, budget={"steps": 200, "eval_every": 50},
                        objective="rate", reevaluate=1, space={})
    result = tuner("launch", str(study), "--workers", "1", cwd=tmp_path, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    engine = reader_engine(f"sqlite:///{tmp_path}/tuner.db")
    rows = queries.best_configs(engine, "rate", per_optimizer=True)
    assert {r["optimizer"] for r in rows} == {"sgd", "momentum"}
    assert all(0.0 < r["reeval_mean"] < 1.0 for r in rows)  # the best of 6 converges
    gap = theory_gap("quadratic", {"dim": 10}, rows, "rate")
    assert [g["measured_rate"] for g in gap] == [r["reeval_mean"] for r in rows]
    assert all(g["asymptotic_rate"] >= g["optimal_rate"] - 1e-12 for g in gap)
