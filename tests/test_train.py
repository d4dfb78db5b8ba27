"""The training loop: every optimizer reaches the optimum; divergence and early stops are recorded."""

import math

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from tuner.optim import make_optimizer
from tuner.schedules import make_schedule
from tuner.tasks import make_task
from tuner.train import train

QUADRATIC = make_task("quadratic", {"dim": 20})
THEORY = QUADRATIC.theory()

# optimizer, options, lr on the quadratic, lr on Rosenbrock, schedule kind
SETTINGS = [
    ("sgd", {}, THEORY["gd_lr"], 1.5e-3, "constant"),
    ("momentum", {"momentum": 0.9}, THEORY["heavy_ball_lr"], 1e-3, "constant"),
    ("nesterov", {"momentum": 0.9}, THEORY["nesterov_lr"], 1e-3, "constant"),
    ("adagrad", {}, 1.0, 0.5, "constant"),
    ("rmsprop", {}, 0.01, 1e-3, "cosine"),
    ("adam", {}, 0.05, 0.02, "cosine"),
    ("adamw", {"weight_decay": 0.0}, 0.05, 0.02, "cosine"),
]


def schedule(kind: str, lr: float, steps: int):
    return make_schedule(kind, lr, **({"total_steps": steps} if kind == "cosine" else {}))


@pytest.mark.parametrize(("name", "options", "lr", "_", "kind"), SETTINGS, ids=lambda v: str(v))
def test_every_optimizer_solves_the_quadratic(name, options, lr, _, kind) -> None:
    steps = 3000
    run = train(QUADRATIC, make_optimizer(name, **options), schedule(kind, lr, steps), epochs=steps, eval_every=steps)
    assert run.evals["loss"][-1] < 1e-8 * run.train_loss[0]


@pytest.mark.parametrize(("name", "options", "_", "lr", "kind"), SETTINGS, ids=lambda v: str(v))
def test_every_optimizer_solves_rosenbrock(name, options, _, lr, kind) -> None:
    steps = 20_000
    task = make_task("rosenbrock", {})
    run = train(task, make_optimizer(name, **options), schedule(kind, lr, steps), epochs=steps, eval_every=steps)
    assert run.evals["loss"][-1] < 1e-3 and run.diverged_at is None


def test_lbfgs_solves_quadratic_and_rosenbrock() -> None:
    assert train(QUADRATIC, make_optimizer("lbfgs"), None, epochs=200).evals["loss"][-1] < 1e-12
    assert train(make_task("rosenbrock", {"dim": 10}), make_optimizer("lbfgs"), None, epochs=500).evals["loss"][-1] < 1e-12


def test_lbfgs_reaches_the_logistic_regression_optimum() -> None:
    l2 = 0.01
    task = make_task("logistic", {"l2": l2})
    run = train(task, make_optimizer("lbfgs", gtol=1e-10), None, epochs=1000)
    x, y = task.data.x_train, task.data.y_train
    # sklearn minimises C * sum(log loss) + |w|^2 / 2, i.e. mean(log loss) + |w|^2 / (2 C n)
    reference = LogisticRegression(C=1.0 / (l2 * len(y)), tol=1e-12, max_iter=10_000).fit(x, y)
    params = task.init_params(0)
    grad = np.empty_like(params)
    # rerun to get the final parameters: L-BFGS is deterministic
    make_optimizer("lbfgs", gtol=1e-10).minimize(
        lambda p: (task.loss_and_grad(p, task.full_batch(), grad), grad), params, max_iter=1000
    )
    np.testing.assert_allclose(params[:-1], reference.coef_[0], atol=1e-5)
    assert params[-1] == pytest.approx(reference.intercept_[0], abs=1e-5)
    task.loss_and_grad(params, task.full_batch(), grad)
    assert np.abs(grad).max() < 1e-8
    assert run.train_loss[-1] == pytest.approx(task.loss_and_grad(params, task.full_batch(), grad), rel=1e-12)


def test_huge_learning_rate_is_recorded_as_diverged() -> None:
    task = make_task("mlp", {"hidden_sizes": [16]})
    run = train(task, make_optimizer("sgd"), make_schedule("constant", 1e4), epochs=5, batch_size=32)
    assert run.diverged and run.diverged_at == run.steps
    assert len(run.train_loss) == run.steps + 1
    assert not (run.train_loss[-1] <= 100 * run.train_loss[0])


@pytest.mark.parametrize("bad", [math.inf, math.nan])
def test_non_finite_loss_is_divergence_even_at_the_first_step(monkeypatch, bad: float) -> None:
    from tuner.tasks.synthetic import Quadratic

    def broken(self, params, grad):
        grad[:] = 0.0
        return bad

    monkeypatch.setattr(Quadratic, "_loss_and_grad", broken)
    run = train(make_task("quadratic", {"dim": 3}), make_optimizer("sgd"), make_schedule("constant", 0.1), epochs=5)
    assert run.diverged_at == 0 and run.steps == 0 and len(run.train_loss) == 1


def test_loss_far_above_the_first_is_divergence() -> None:
    run = train(make_task("quadratic", {"dim": 3}), make_optimizer("sgd"), make_schedule("constant", 10.0), epochs=50)
    assert run.diverged_at is not None and run.diverged_at > 0
    assert run.train_loss[-1] > 100 * run.train_loss[0] and run.steps == run.diverged_at


def test_on_eval_can_stop_the_run_and_sees_every_evaluation() -> None:
    task = make_task("softmax", {})
    seen = []

    def on_eval(epoch, step, metrics):
        seen.append((epoch, step, metrics["val_accuracy"]))
        return epoch == 4

    run = train(task, make_optimizer("adam"), make_schedule("constant", 1e-2), epochs=10, batch_size=64,
                eval_every=2, on_eval=on_eval)
    per_epoch = task.steps_per_epoch(64)
    assert [(e, s) for e, s, _ in seen] == [(2, 2 * per_epoch), (4, 4 * per_epoch)]
    assert run.stopped_by_caller and run.steps == 4 * per_epoch and len(run.train_loss) == run.steps
    assert run.eval_steps == [2 * per_epoch, 4 * per_epoch]
    assert run.samples == 4 * len(task.data.y_train)
