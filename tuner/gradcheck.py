"""Compare a task's analytic gradient with central differences."""

from dataclasses import dataclass
from typing import Any

import numpy as np

from tuner.errors import ConfigError, shown
from tuner.tasks import make_task


@dataclass(frozen=True)
class GradcheckResult:
    """relative_error = |g_analytic - g_numeric| / (|g_analytic| + |g_numeric|) over the checked coordinates."""

    task: str
    checked: int
    dim: int
    relative_error: float
    max_abs_error: float

    def passed(self, tolerance: float = 1e-6) -> bool:
        return self.relative_error < tolerance


def gradcheck(
    name: str,
    options: dict[str, Any] | None = None,
    *,
    seed: int = 0,
    step: float = 1e-6,
    max_coords: int = 1000,
    batch_size: int = 16,
) -> GradcheckResult:
    """Check task ``name`` in float64 at its seeded initial point on one minibatch.

    Synthetic tasks are checked without gradient noise. At most ``max_coords`` coordinates,
    drawn at random, are differenced (all of them for smaller tasks). ConfigError for a ``dtype``
    option other than float64 (central differences need it).
    """
    dtype = (options or {}).get("dtype", "float64")
    if dtype != "float64":
        raise ConfigError(f"task.options.dtype={shown(dtype)} is not allowed; allowed: float64 "
                          "(gradcheck differences in float64)", allowed="float64")
    task = make_task(name, {**(options or {}), "dtype": "float64"})
    rng = np.random.default_rng(seed)
    params = task.init_params(seed)
    batch = task.full_batch() if task.metrics == ("loss",) else next(task.batches(batch_size, rng))
    analytic = np.empty_like(params)
    task.loss_and_grad(params, batch, analytic)
    scratch = np.empty_like(params)
    coords = np.arange(task.dim) if task.dim <= max_coords else rng.choice(task.dim, max_coords, replace=False)
    numeric = np.empty(len(coords))
    for j, i in enumerate(coords):
        saved = params[i]
        params[i] = saved + step
        up = task.loss_and_grad(params, batch, scratch)
        params[i] = saved - step
        down = task.loss_and_grad(params, batch, scratch)
        params[i] = saved
        numeric[j] = (up - down) / (2.0 * step)
    diff = analytic[coords] - numeric
    scale = np.linalg.norm(analytic[coords]) + np.linalg.norm(numeric)
    return GradcheckResult(
        task=name,
        checked=len(coords),
        dim=task.dim,
        relative_error=float(np.linalg.norm(diff) / scale) if scale > 0 else 0.0,
        max_abs_error=float(np.abs(diff).max()),
    )
