"""Every first-order optimizer, with every transform, updates in place without allocating arrays:
numpy reports its buffers to tracemalloc, so an array allocated in ``update`` shows in the peak."""

import tracemalloc

import numpy as np
import pytest

from tuner.optim import OPTIMIZERS, make_optimizer
from tuner.tasks import make_task

FIRST_ORDER = [name for name, entry in OPTIMIZERS.items() if not entry.full_batch]
TASK = make_task("mlp", {"hidden_sizes": [64]})  # weight matrices and biases: every branch of every rule
ARRAY_BYTES = TASK.dim * 8


@pytest.mark.parametrize("extras", [{}, {"clip_grad_norm": 1.0, "ema_decay": 0.9}, {"clip_grad_value": 0.1, "polyak_start": 1}],
                         ids=["plain", "norm-ema", "value-polyak"])
@pytest.mark.parametrize("name", FIRST_ORDER)
def test_update_allocates_no_array(name: str, extras: dict) -> None:
    if hasattr(make_optimizer(name).rule, "eval_params"):  # averages on its own: refuses averaging
        extras = {k: v for k, v in extras.items() if k.startswith("clip")}
    optimizer = make_optimizer(name, **extras).bind(TASK)
    rng = np.random.default_rng(0)
    params = TASK.init_params(0)
    grads = rng.standard_normal((4, TASK.dim))
    state = optimizer.init(params)
    optimizer.update(params, grads[0], 1e-3, state)  # first step: lazily sized buffers, if any, are made here
    optimizer.eval_params(params, state)
    tracemalloc.start()
    try:
        for g in grads[1:]:
            optimizer.update(params, g, 1e-3, state)
            optimizer.eval_params(params, state)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < ARRAY_BYTES / 4, f"{name} allocated {peak} bytes in update (one array is {ARRAY_BYTES})"
