"""Task contracts: determinism from seeds, batches, options validation, the quadratic's theory."""

import math

import numpy as np
import pytest

from tuner import ConfigError
from tuner.optim import make_optimizer
from tuner.schedules import make_schedule
from tuner.tasks import TASKS, make_task
from tuner.train import train


@pytest.mark.parametrize("name", list(TASKS))
def test_same_seed_gives_bit_identical_runs(name: str) -> None:
    options = {"noise": 0.1} if name in ("quadratic", "rosenbrock", "saddle") else {}
    runs = [
        train(make_task(name, options), make_optimizer("adam"), make_schedule("constant", 1e-3),
              epochs=3, batch_size=64, seed=7)
        for _ in range(2)
    ]
    np.testing.assert_array_equal(runs[0].train_loss, runs[1].train_loss)
    assert runs[0].evals == runs[1].evals
    other = train(make_task(name, options), make_optimizer("adam"), make_schedule("constant", 1e-3),
                  epochs=3, batch_size=64, seed=8)
    assert not np.array_equal(other.train_loss, runs[0].train_loss)


def test_data_task_epoch_visits_every_example_once() -> None:
    task = make_task("softmax", {})
    rng = np.random.default_rng(0)
    n = len(task.data.y_train)
    sizes, rows = [], []
    for x, t in task.batches(100, rng):
        sizes.append(len(x))
        rows.append(np.c_[x, t].copy())
    assert sum(sizes) == n and len(sizes) == task.steps_per_epoch(100) == -(-n // 100)
    seen = np.concatenate(rows)
    full = np.c_[task.full_batch()]
    assert sorted(map(tuple, seen)) == sorted(map(tuple, full))


def test_split_is_deterministic_per_split_seed_and_standardised() -> None:
    a, b = make_task("softmax", {}), make_task("softmax", {})
    c = make_task("softmax", {"split_seed": 1})
    np.testing.assert_array_equal(a.data.x_val, b.data.x_val)
    assert not np.array_equal(a.data.x_val, c.data.x_val)
    assert len(a.data.y_val) == math.ceil(0.2 * 1797)  # sklearn rounds the test share up
    np.testing.assert_allclose(a.data.x_train.mean(axis=0), 0.0, atol=1e-12)


def test_float32_task_computes_in_float32() -> None:
    task = make_task("mlp", {"dtype": "float32"})
    params = task.init_params(0)
    grad = np.empty_like(params)
    task.loss_and_grad(params, next(task.batches(32, np.random.default_rng(0))), grad)
    assert params.dtype == grad.dtype == np.float32 and task.dim == 64 * 128 + 128 + 128 * 10 + 10


def test_quadratic_exposes_its_theoretical_optimum() -> None:
    task = make_task("quadratic", {"condition_number": 100.0, "mu": 1.0})
    theory = task.theory()
    assert theory["kappa"] == pytest.approx(100.0)
    assert theory["gd_lr"] == pytest.approx(2 / 101)
    assert theory["gd_rate"] == pytest.approx(99 / 101)
    assert theory["heavy_ball_lr"] == pytest.approx(4 / 121)
    assert theory["heavy_ball_momentum"] == pytest.approx((9 / 11) ** 2)
    assert theory["heavy_ball_rate"] == pytest.approx(9 / 11)
    evals = np.linalg.eigvalsh(task.hessian)
    assert evals.min() == pytest.approx(1.0) and evals.max() == pytest.approx(100.0)


@pytest.mark.parametrize(
    ("method", "theory_lr", "theory_rate", "options"),
    [
        ("sgd", "gd_lr", "gd_rate", {}),
        ("momentum", "heavy_ball_lr", "heavy_ball_rate", {"momentum": "heavy_ball_momentum"}),
    ],
)
def test_measured_rate_matches_theory(method: str, theory_lr: str, theory_rate: str, options: dict) -> None:
    task = make_task("quadratic", {"dim": 40, "spread": "extremes"})
    theory = task.theory()
    optimizer = make_optimizer(method, **{k: theory[v] for k, v in options.items()})
    run = train(task, optimizer, make_schedule("constant", theory[theory_lr]), epochs=400, eval_every=1)
    error = np.sqrt(np.array(run.evals["loss"]))  # loss ~ error^2
    error = error[error > 1e-10 * error[0]]  # above the floating-point floor
    half = len(error) // 2  # heavy ball has a transient: measure over the second half
    rate = (error[-1] / error[half]) ** (1 / (len(error) - 1 - half))
    assert rate == pytest.approx(theory[theory_rate], abs=0.01)


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("quadratic", {"condition_number": 0.5}, r"task.options.condition_number=0.5: .*greater than or equal to 1"),
        ("quadratic", {"spred": "linear"}, r"task.options.spred: unknown field"),
        ("rosenbrock", {"dim": 1}, r"task.options.dim=1"),
        ("saddle", {"dim": 3, "negative_dims": 3}, r"negative_dims=3 .*1 to dim - 1 = 2"),
        ("softmax", {"dataset": "iris"}, r"task.options.dataset='iris': .*'breast_cancer', 'digits' or 'synthetic'"),
        ("logistic", {"dataset": "digits"}, r"logistic regression needs two classes"),
        ("mlp", {"hidden_sizes": [0]}, r"hidden_sizes=\[0\]: each must be in \[1, 100000\]"),
        ("mlp", {"dtype": "float16"}, r"task.options.dtype='float16'"),
        ("softmax", {"val_fraction": 1.0}, r"task.options.val_fraction=1.0"),
        ("mlp", {"dataset": "synthetic", "n_features": 2, "n_classes": 10}, r"n_classes=10 is too many"),
        ("resnet", {}, r"task='resnet' is unknown; allowed: quadratic, rosenbrock, saddle, logistic"),
    ],
)
def test_bad_task_options_are_rejected(name: str, options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_task(name, options)


@pytest.mark.parametrize("name", list(TASKS))
def test_every_task_declares_a_layout_that_tiles_its_parameters(name: str) -> None:
    from tuner.tensors import tensor_layout

    task = make_task(name)
    layout = tensor_layout(task.matrices, task.dim, task.vectors)  # raises on a gap or an overlap
    covered = sum(m.rows * m.cols for m in layout.matrices) + sum(v.stop - v.start for v in layout.vectors)
    assert covered == task.dim
    assert len(layout.tensors) == (len(task.vectors) if task.vectors else min(1, len(layout.vectors)))


@pytest.mark.parametrize(("matrices", "vectors", "message"), [
    ([(0, 2, 3)], [(5, 5)], "overlap at parameter 5"),
    ([(0, 2, 3)], [(7, 3)], r"parameters 6-6 are in no declared matrix or vector"),
    ([(0, 2, 3)], [(6, 3)], r"parameters 9-9 are in no declared matrix or vector"),
    ([(8, 1, 3)], [], r"does not lie inside the 10 parameters"),
    ([], [(0, 0)], r"does not lie inside"),
])
def test_a_layout_with_a_gap_or_an_overlap_is_refused(matrices, vectors, message) -> None:
    from tuner.tensors import Matrix, tensor_layout

    with pytest.raises(ValueError, match=message):
        tensor_layout(tuple(Matrix(*m) for m in matrices), 10, tuple(vectors))
