"""Population methods of every task: ``loss_and_grad_many`` and ``evaluate_many`` give, row by row,
what the lone methods give on the same batch (the synthetic tasks' noise drawn once per step, as one
lone step draws it), for float64 and float32, any population size, shrinking and growing; the
hot path allocates no population-sized array after its first call."""

import copy
import tracemalloc

import numpy as np
import pytest

from tuner.tasks import TASKS, make_task

SMALL = {
    "quadratic": {"dim": 20, "noise": 0.1},
    "rosenbrock": {"dim": 7, "noise": 0.1},
    "saddle": {"dim": 6, "negative_dims": 2, "noise": 0.1},
    "logistic": {"l2": 0.01},
    "softmax": {"l2": 0.01},
    "svm": {"l2": 0.01},
    "mlp": {"hidden_sizes": [16, 8], "l2": 0.01},
    "cnn": {"channels": [2, 3], "l2": 0.01},
    "autoencoder": {"hidden_sizes": [8, 4, 8], "activation": "tanh", "l2": 0.01},
    "rnn_adding": {"sequence_length": 5, "n_train": 60, "n_val": 30, "hidden_size": 4, "l2": 0.01},
}
"""Small options of each task, with gradient noise (synthetic) or an L2 penalty (data tasks)."""
CASES = [(name, options) for name, options in SMALL.items()] + [
    ("quadratic", {"dim": 20, "rotate": False, "noise": 0.1}),
    ("quadratic", {"dim": 20}),
    ("mlp", {"hidden_sizes": [16]}),
    ("softmax", {"dataset": "synthetic", "n_classes": 20, "n_features": 16}),  # beyond heads.FEW_CLASSES
]
BATCH = {"logistic": 200, "rnn_adding": 24}
"""Batch sizes that leave a short last batch: 455 breast_cancer and 60 rnn_adding training rows;
500 on digits' 1437."""
RTOL = {"float64": 1e-12, "float32": 1e-5}


def test_every_task_has_a_case() -> None:
    assert set(SMALL) == set(TASKS)


def _population(task, members: int) -> np.ndarray:
    """Different parameter vectors: each member's init, perturbed by a relative 1%."""
    rng = np.random.default_rng(123)
    params = np.stack([task.init_params(seed) for seed in range(members)])
    params *= 1.0 + 0.01 * rng.standard_normal(params.shape)
    return params.astype(task.dtype)


def _assert_rows_close(many: np.ndarray, lone: np.ndarray, rtol: float) -> None:
    """Agreement to ``rtol`` of the row's largest entry (a coordinate near 0 by cancellation is
    judged on the row's scale)."""
    np.testing.assert_allclose(many, lone, rtol=rtol, atol=rtol * float(np.max(np.abs(lone))))


def _check_steps(task, params: np.ndarray, batches, steps: int) -> None:
    """``loss_and_grad_many`` against ``loss_and_grad`` of each row on ``steps`` shared batches."""
    rtol = RTOL[task.dtype.name]
    members = len(params)
    grad = np.full_like(params, np.nan)
    losses = np.full(members, np.nan)
    lone_grad = np.empty(task.dim, task.dtype)
    for _, batch in zip(range(steps), batches, strict=False):
        drawn = isinstance(batch, np.random.Generator)
        before = copy.deepcopy(batch.bit_generator.state) if drawn else None
        task.loss_and_grad_many(params, batch, grad, losses)
        after = copy.deepcopy(batch.bit_generator.state) if drawn else None
        for k in range(members):
            if drawn:
                batch.bit_generator.state = copy.deepcopy(before)
            lone_grad.fill(np.nan)
            loss = task.loss_and_grad(params[k], batch, lone_grad)
            if drawn:  # the population drew the step's noise once, as one lone step does
                assert batch.bit_generator.state == after
            assert losses[k] == pytest.approx(loss, rel=rtol, abs=0.0)
            _assert_rows_close(grad[k], lone_grad, rtol)


def _check_evaluate(task, params: np.ndarray) -> None:
    rtol = RTOL[task.dtype.name]
    metrics = task.evaluate_many(params)
    assert set(metrics) == set(task.metrics)
    for k in range(len(params)):
        for key, value in task.evaluate(params[k]).items():
            assert metrics[key].shape == (len(params),)
            assert metrics[key][k] == pytest.approx(value, rel=rtol, abs=0.0), key


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("members", [1, 5])
@pytest.mark.parametrize(("name", "options"), CASES)
def test_population_agrees_with_lone_runs_row_by_row(name: str, options: dict, members: int, dtype: str) -> None:
    task = make_task(name, {**options, "dtype": dtype})
    params = _population(task, members)
    batch_size = BATCH.get(name, 500)
    for epoch in range(2):  # a data task's every batch, the short last one too; three synthetic steps
        batches = task.batches(batch_size, np.random.default_rng([epoch, 1]))
        _check_steps(task, params, batches, steps=3)
    _check_evaluate(task, params)


@pytest.mark.parametrize(("name", "options"), [("quadratic", {"dim": 20, "noise": 0.1}), ("mlp", {"hidden_sizes": [16]}),
                                               ("logistic", {}), ("rosenbrock", {"dim": 7})])
def test_population_that_shrinks_and_grows_still_agrees(name: str, options: dict) -> None:
    """Members compacted out (a prefix of the population's rows) and a larger population again."""
    task = make_task(name, options)
    params = _population(task, 8)
    for members in (6, 3, 6, 1, 8):
        rows = np.ascontiguousarray(params[:members])
        _check_steps(task, rows, task.batches(64, np.random.default_rng(members)), steps=1)
        _check_evaluate(task, rows)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(
    ("name", "options", "members", "batch_size", "smallest"),
    [
        ("quadratic", {"dim": 50, "noise": 0.1}, 2048, 1, 50),
        ("rosenbrock", {"dim": 50, "noise": 0.1}, 2048, 1, 49),
        ("saddle", {"dim": 50, "negative_dims": 25}, 2048, 1, 25),
        ("logistic", {"l2": 0.1}, 256, 256, 1),
        ("mlp", {"hidden_sizes": [32, 16], "l2": 0.1}, 64, 256, 16),
    ],
)
def test_population_hot_path_allocates_no_population_sized_array(
    name: str, options: dict, members: int, batch_size: int, smallest: int, dtype: str
) -> None:
    """After the first call (and the first at a smaller size), repeated steps allocate less than half
    of the smallest population-sized work array (``smallest`` values per member, or per member and
    example); what they allocate is numpy's fixed-size ufunc buffers."""
    task = make_task(name, {**options, "dtype": dtype})
    params = _population(task, members)
    grad, losses = np.empty_like(params), np.empty(members)
    batch = next(task.batches(batch_size, np.random.default_rng(0)))
    half = members // 2
    task.loss_and_grad_many(params, batch, grad, losses)
    task.loss_and_grad_many(params[:half], batch, grad[:half], losses[:half])
    tracemalloc.start()
    try:
        for _ in range(3):
            task.loss_and_grad_many(params, batch, grad, losses)
            task.loss_and_grad_many(params[:half], batch, grad[:half], losses[:half])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    rows = 1 if task.name in ("quadratic", "rosenbrock", "saddle") else batch_size
    assert peak < members * rows * smallest * task.dtype.itemsize / 2
