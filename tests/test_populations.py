"""Population training: every member of a population trains as it would alone.

The oracle is tuner's own lone training loop (``train.train``), itself held to torch.optim: each
member's per-step training loss, evaluations, divergence step, stop and final parameters equal the
lone run of its configuration to 1e-12 relative in float64.
"""

import numpy as np
import optuna
import pytest

from tuner.objective import Budget, configure
from tuner.optim import OPTIMIZERS
from tuner.space import instantiate, suggest
from tuner.spec import parse_experiment
from tuner.tasks import TASKS, is_synthetic, make_task
from tuner.train import train, train_population

FIRST_ORDER = [name for name, entry in OPTIMIZERS.items() if not entry.full_batch]
OPTIONS = {
    "quadratic": {"dim": 12, "noise": 0.1}, "rosenbrock": {"dim": 6, "noise": 0.1}, "saddle": {"noise": 0.1},
    "logistic": {}, "softmax": {}, "svm": {}, "mlp": {"hidden_sizes": [16, 8]},
    "cnn": {"channels": [2], "n_samples": 300},
    "autoencoder": {"hidden_sizes": [8], "n_samples": 300},
    "rnn_adding": {"sequence_length": 6, "n_train": 256, "n_val": 64, "hidden_size": 6},
}
"""Small but complete versions of every task (float64, the default dtype)."""
SLOW = ("cnn", "autoencoder", "rnn_adding")
"""Tasks whose population is a loop over lone calls: every optimizer on them would add minutes."""
RTOL = 1e-12


def population_configs(task_name: str, optimizer: str, size: int, seed: int) -> tuple[list[dict], Budget]:
    """``size`` configurations of ``optimizer`` drawn from its default search space at one batch
    size; the first with a learning rate that diverges."""
    synthetic = is_synthetic(task_name)
    budget = {"steps": 40, "eval_every": 8} if synthetic else {"epochs": 3, "eval_every": 1}
    objective = "final_train_loss" if synthetic else "final_val_loss"
    spec = parse_experiment({
        "name": "population", "task": {"name": task_name, "options": OPTIONS[task_name]},
        "optimizers": [optimizer], "samplers": ["random"], "trials": size, "budget": budget,
        "objective": objective, "space": {} if synthetic else {"batch_size": 64},
    })
    task = make_task(task_name, OPTIONS[task_name])
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    configs = []
    for member in range(size):
        values = suggest(study.ask(), spec.search_space(optimizer))
        if member == 0:
            values["lr"] = 1e4
        configs.append(configure(optimizer, values, task, Budget.of(spec)))
    return configs, Budget.of(spec)


def assert_same_run(alone, member, label: str) -> None:
    assert member.diverged_at == alone.diverged_at, label
    assert member.steps == alone.steps, label
    assert member.samples == alone.samples, label
    assert member.stopped_by_caller == alone.stopped_by_caller, label
    assert member.early_stopped == alone.early_stopped and member.best_eval == alone.best_eval, label
    assert member.eval_steps == alone.eval_steps, label
    np.testing.assert_allclose(member.train_loss, alone.train_loss, rtol=RTOL, atol=0, err_msg=label)
    assert member.evals.keys() == alone.evals.keys(), label
    for key in alone.evals:
        np.testing.assert_allclose(member.evals[key], alone.evals[key], rtol=RTOL, atol=0, err_msg=f"{label} {key}")
    np.testing.assert_allclose(member.final_params, alone.final_params, rtol=RTOL, atol=1e-300, err_msg=label)


def check_population(task_name: str, optimizer: str, *, size: int = 4, seed: int = 0, patience: int | None = None,
                     stop: dict[int, int] | None = None) -> list:
    """Train a population and each member alone; assert they agree. ``stop``: member -> the
    evaluation at which ``on_eval`` stops it (a pruned trial)."""
    configs, budget = population_configs(task_name, optimizer, size, seed)
    task = make_task(task_name, OPTIONS[task_name])
    stop = stop or {}
    batch_size = configs[0].get("batch_size", 1)
    common = dict(epochs=budget.epochs, batch_size=batch_size, seed=3, eval_every=budget.eval_every,
                  patience=patience)

    def lone_stopper(member: int):
        seen = [0]

        def on_eval(epoch: int, step: int, metrics: dict) -> bool:
            seen[0] += 1
            return seen[0] == stop.get(member)
        return on_eval

    alone = []
    for member, config in enumerate(configs):
        optimizer_, schedule = instantiate(config)
        alone.append(train(task, optimizer_, schedule, on_eval=lone_stopper(member), **common))
    seen = [0] * size

    def on_eval(member: int, epoch: int, step: int, metrics: dict) -> bool:
        seen[member] += 1
        return seen[member] == stop.get(member)

    built = [instantiate(config) for config in configs]
    together = train_population(task, [o for o, _ in built], [s for _, s in built], on_eval=on_eval, **common)
    for member, (one, many) in enumerate(zip(alone, together, strict=True)):
        assert_same_run(one, many, f"{task_name} {optimizer} member {member}: {configs[member]}")
    return together


@pytest.mark.parametrize("optimizer", FIRST_ORDER)
@pytest.mark.parametrize("task_name", [name for name in TASKS if name not in SLOW])
def test_every_member_trains_as_it_would_alone(task_name: str, optimizer: str) -> None:
    together = check_population(task_name, optimizer, stop={2: 2})
    assert together[2].stopped_by_caller or together[2].diverged
    if optimizer in ("sgd", "momentum", "adam"):
        assert together[0].diverged, "the member with lr 1e4 should diverge"


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "muon", "adafactor", "schedule_free_adamw", "lion"])
@pytest.mark.parametrize("task_name", SLOW)
def test_every_member_of_a_looped_task_trains_as_it_would_alone(task_name: str, optimizer: str) -> None:
    check_population(task_name, optimizer, size=3, stop={1: 2})


@pytest.mark.parametrize("task_name", ["quadratic", "mlp"])
def test_early_stopping_ends_each_member_at_its_own_evaluation(task_name: str) -> None:
    check_population(task_name, "adam", size=6, seed=5, patience=1)


def test_members_of_different_structure_train_in_cohorts() -> None:
    """AMSGrad on and off cannot share one update: they train as two populations, each exact."""
    task = make_task("quadratic", OPTIONS["quadratic"])
    configs, budget = population_configs("quadratic", "adam", 4, 1)
    configs[1]["amsgrad"] = configs[3]["amsgrad"] = True
    built = [instantiate(config) for config in configs]
    together = train_population(task, [o for o, _ in built], [s for _, s in built], epochs=budget.epochs,
                                eval_every=budget.eval_every, seed=3)
    for member, (optimizer, schedule) in enumerate(built):
        alone = train(task, optimizer, schedule, epochs=budget.epochs, eval_every=budget.eval_every, seed=3)
        assert_same_run(alone, together[member], f"member {member}")


def test_lbfgs_is_refused() -> None:
    task = make_task("quadratic", OPTIONS["quadratic"])
    optimizer, _ = instantiate({"optimizer": "lbfgs"})
    with pytest.raises(ValueError, match="L-BFGS"):
        train_population(task, [optimizer], [None], epochs=3)
