"""Early stopping: a run whose validation loss stops improving for ``patience`` evaluations ends,
complete, and is judged at its best evaluation (the objective, the final metrics)."""

import numpy as np
import pytest

from tuner.errors import ConfigError
from tuner.objective import Budget, run_config, summarize
from tuner.optim import make_optimizer
from tuner.schedules import make_schedule
from tuner.spec import parse_experiment
from tuner.tasks import make_task
from tuner.tasks.base import Task
from tuner.train import train


class ScriptedTask(Task):
    """A data-style task whose n-th evaluation returns the n-th scripted validation loss."""

    name, dim, dtype, metrics = "scripted", 2, np.dtype("float64"), ("val_loss", "val_accuracy")

    def __init__(self, val_losses: list[float]) -> None:
        self.val_losses = val_losses
        self.calls = 0

    def init_params(self, seed: int) -> np.ndarray:
        return np.ones(2)

    def batches(self, batch_size, rng):
        yield from range(3)

    def steps_per_epoch(self, batch_size: int) -> int:
        return 3

    def full_batch(self):
        return 0

    def loss_and_grad(self, params, batch, grad) -> float:
        grad[:] = params
        return float(params @ params)

    def evaluate(self, params) -> dict[str, float]:
        self.calls += 1
        return {"val_loss": self.val_losses[self.calls - 1], "val_accuracy": 0.5}


SCRIPT = [5.0, 4.0, 3.0, 3.5, 3.2, 2.9, 3.0, 3.1, 3.3, 3.4, 3.5, 3.6]


@pytest.mark.parametrize(("patience", "evaluations", "best"), [(1, 4, 2), (2, 5, 2), (3, 9, 5), (None, 12, 5)])
def test_a_run_stops_after_patience_evaluations_without_a_new_best(patience, evaluations, best) -> None:
    run = train(ScriptedTask(SCRIPT), make_optimizer("sgd"), make_schedule("constant", 0.01), epochs=12,
                patience=patience)
    assert len(run.evals["val_loss"]) == evaluations
    assert run.steps == 3 * evaluations and len(run.train_loss) == run.steps
    assert run.early_stopped == (patience is not None) and not run.diverged and not run.stopped_by_caller
    assert run.best_eval == best
    assert run.summary_eval == (best if patience is not None else -1)


def test_a_stopped_run_is_complete_and_judged_at_its_best_evaluation() -> None:
    spec = parse_experiment({"name": "x", "task": {"name": "softmax"}, "optimizers": ["adam"], "samplers": ["random"],
                             "trials": 1, "budget": {"epochs": 12, "patience": 2}})
    task = ScriptedTask(SCRIPT)
    config = {"optimizer": "sgd", "lr": 0.01, "batch_size": 3, "schedule": {"kind": "constant"}}
    result = train(task, make_optimizer("sgd"), make_schedule("constant", 0.01), epochs=12, patience=2)
    record = summarize(spec, task, result, config, 0, "trial")
    assert record.state == "COMPLETE"
    assert record.objective == record.final_val_loss == 3.0  # the best evaluation's, not the last (3.2)
    assert record.steps == 15


def test_patience_reaches_a_real_run_through_the_budget() -> None:
    base = {"name": "x", "task": {"name": "softmax"}, "optimizers": ["adam"], "samplers": ["random"], "trials": 1}
    config = {"optimizer": "sgd", "lr": 3.0, "batch_size": 16, "schedule": {"kind": "constant"}}  # noisy: val loss wanders
    spec = parse_experiment({**base, "budget": {"epochs": 30, "patience": 1}})
    task = make_task("softmax")
    assert Budget.of(spec).patience == 1
    stopped = run_config(task, config, Budget.of(spec), seed=0)
    full = run_config(task, config, Budget.of(parse_experiment({**base, "budget": {"epochs": 30}})), seed=0)
    assert stopped.early_stopped and len(stopped.evals["val_loss"]) < 30
    n = len(stopped.evals["val_loss"])
    np.testing.assert_array_equal(stopped.evals["val_loss"], full.evals["val_loss"][:n])  # the same run, cut short
    assert stopped.evals["val_loss"][-1] >= min(stopped.evals["val_loss"]) == stopped.evals["val_loss"][stopped.best_eval]


@pytest.mark.parametrize("patience", [0, -1, 1.5, "3", True])
def test_bad_patience_is_refused(patience) -> None:
    with pytest.raises(ConfigError, match="budget.patience"):
        parse_experiment({"name": "x", "task": {"name": "softmax"}, "optimizers": ["adam"], "samplers": ["random"],
                          "trials": 1, "budget": {"epochs": 3, "patience": patience}})


def test_lbfgs_stops_early_too_and_is_judged_at_its_best_evaluation() -> None:
    spec = parse_experiment({"name": "x", "task": {"name": "mlp", "options": {"hidden_sizes": [32]}},
                             "optimizers": ["lbfgs"], "samplers": ["random"], "trials": 1,
                             "budget": {"epochs": 200, "patience": 2}})
    task = make_task("mlp", {"hidden_sizes": [32]})
    config = {"optimizer": "lbfgs"}
    result = run_config(task, config, Budget.of(spec), seed=0)
    assert result.early_stopped and result.steps < 200  # full batch on 1437 images: it overfits soon
    record = summarize(spec, task, result, config, 0, "trial")
    best = result.best_eval
    assert record.state == "COMPLETE" and record.final_val_loss == result.evals["val_loss"][best] == record.best_val_loss
    assert record.final_train_loss == result.train_loss[result.eval_steps[best]]
