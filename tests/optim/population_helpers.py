"""The oracle of the population tests (tests/optim/test_population*.py): a population stacked by
``tuner.optim.population`` must leave every member's parameters and evaluation point, after every
step, equal bit for bit to that member's configuration trained alone (``lone_run``) on the same
deterministic gradient field (``Field``) with the same learning rates (``learning_rates``, one
column a member, changing every step), in float64 and in float32 (``Field``'s dtype: the
parameters' and gradients'; a lone run takes each lr as a Python float, a population as a (K, 1)
float64 array, as ``tuner.train`` passes them).

Also here: the seeded generators (``rng_for``) and the draws of configurations the test files
share (``sample``, ``technique_options``, ``grouped``, ``one_population``), and the memory a
population's updates trace (``traced_peak``). Every draw depends only on its labels, so a test
draws the same on every run and every xdist worker.
"""

import tracemalloc
import zlib
from collections.abc import Callable, Iterable

import numpy as np

from tuner.optim import OPTIMIZERS
from tuner.optim.population import population_key, select, stack
from tuner.optim.transforms import Optimizer, OptimizerState
from tuner.params import Param

STEPS = 100


def rng_for(*labels: object) -> np.random.Generator:
    """A generator seeded by the labels: the same draws on every run and every xdist worker."""
    return np.random.default_rng([zlib.crc32(str(label).encode()) for label in labels])


def sample(param: Param, rng: np.random.Generator) -> object:
    """A value of ``param`` over its whole range, searched or not (its choices; an integer, the
    warm-up steps, none or ten so that a population shares it; else its range on its scale,
    1 - value on a log scale for decay rates)."""
    if param.choices is not None:
        return param.choices[int(rng.integers(len(param.choices)))]
    if param.integer:
        return int(rng.choice([0, 10]))
    if param.one_minus:
        return float(1.0 - np.exp(rng.uniform(np.log(1.0 - param.high), np.log(1.0 - param.low))))
    if param.log:
        return float(np.exp(rng.uniform(np.log(param.low), np.log(param.high))))
    return float(rng.uniform(param.low, param.high))


def technique_options(technique: str, rng: np.random.Generator) -> dict:
    """The option of ``technique`` drawn at random (none for ``plain``): clipping thresholds that
    bind on some steps only, EMA weights on both sides of lerp's switch at 0.5, Polyak averaging
    from the start or from step 37."""
    if technique == "clip_grad_norm":
        return {technique: float(10 ** rng.uniform(-1.0, 1.5))}
    if technique == "clip_grad_value":
        return {technique: float(10 ** rng.uniform(-2.0, 0.5))}
    if technique == "ema_decay":
        return {technique: float(1.0 - 10 ** rng.uniform(-3.0, -0.5)) if rng.random() < 0.5 else float(rng.uniform(0.0, 0.7))}
    if technique == "polyak_start":
        return {technique: int(rng.choice([0, 37]))}
    return {}


def grouped(optimizers: Iterable[Optimizer]) -> list[list[Optimizer]]:
    """``optimizers`` grouped into populations by ``population_key``, in the order first met."""
    groups: dict = {}
    for optimizer in optimizers:
        groups.setdefault(population_key(optimizer), []).append(optimizer)
    return list(groups.values())


def one_population(draw: Callable[[], Optimizer], size: int) -> list[Optimizer]:
    """The first optimizer ``draw`` returns and the next ones of its population, ``size`` in all."""
    first = draw()
    members = [first]
    while len(members) < size:
        candidate = draw()
        if population_key(candidate) == population_key(first):
            members.append(candidate)
    return members


class Field:
    """The gradient at p, of ``dim`` parameters: A p + b + noise_k at step k (A symmetric positive
    definite; noise whose scale changes every step, so that clipping binds on some steps only),
    in ``dtype``, as the initial point ``p0``. A population's gradient is computed row by row with
    the lone run's operations."""

    def __init__(self, seed: str, dim: int, dtype: type = np.float64) -> None:
        rng = rng_for("field", seed)
        q, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
        self.a = ((q * rng.uniform(0.05, 1.0, dim)) @ q.T).astype(dtype)
        self.b = rng.standard_normal(dim).astype(dtype)
        self.noise = (rng.standard_normal((STEPS, dim)) * np.exp(rng.uniform(-3.0, 3.0, (STEPS, 1)))).astype(dtype)
        self.p0 = rng.standard_normal(dim).astype(dtype)

    def grad(self, params: np.ndarray, step: int) -> np.ndarray:
        if params.ndim == 2:
            return np.stack([self.grad(row, step) for row in params])
        g = self.a @ params
        g += self.b
        g += self.noise[step]
        return g


def learning_rates(name: str, size: int, seed: str) -> np.ndarray:
    """(STEPS, size): each member's base lr from the registry's range, changing every step."""
    rng = rng_for("lr", seed)
    lr = next(p for p in OPTIMIZERS[name].space if p.name == "lr")
    base = np.exp(rng.uniform(np.log(lr.low), np.log(lr.high), size))
    phase = rng.uniform(0.0, 6.0, size)
    return base * (1.5 + np.sin(np.arange(STEPS)[:, None] / 7.0 + phase)) / 2.5


def lone_run(optimizer: Optimizer, field: Field, lrs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Parameters and evaluation point after every step, (STEPS, P) each, trained alone."""
    params = field.p0.copy()
    state = optimizer.init(params)
    trained, evaluated = np.empty((STEPS, params.size)), np.empty((STEPS, params.size))
    for step in range(STEPS):
        optimizer.update(params, field.grad(params, step), float(lrs[step]), state)
        trained[step], evaluated[step] = params, optimizer.eval_params(params, state)
    return trained, evaluated


def population_run(optimizer: Optimizer, size: int, field: Field, lrs: np.ndarray, drop_at: int | None = None,
                   keep: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(STEPS, K, P) parameters and evaluation points of the stacked ``optimizer`` (NaN for
    members dropped by ``select(..., keep)`` before step ``drop_at``); each update must leave its
    gradient unchanged."""
    params = np.tile(field.p0, (size, 1))
    state = optimizer.init(params)
    members = np.arange(size)
    trained, evaluated = np.full((STEPS, *params.shape), np.nan), np.full((STEPS, *params.shape), np.nan)
    for step in range(STEPS):
        if step == drop_at:
            optimizer, state = select(optimizer, state, keep)
            params, members = params[keep], members[keep]
        grad = field.grad(params, step)
        before = grad.copy()
        optimizer.update(params, grad, lrs[step, members][:, None], state)
        np.testing.assert_array_equal(grad, before, err_msg="the gradient is left unchanged")
        trained[step, members], evaluated[step, members] = params, optimizer.eval_params(params, state)
    return trained, evaluated


def assert_members_match(name: str, optimizers: list[Optimizer], field: Field, lrs: np.ndarray,
                         trained: np.ndarray, evaluated: np.ndarray, members: range | np.ndarray) -> None:
    """Each of ``members`` trained and evaluated in the population exactly as its lone run."""
    for k in members:
        lone_trained, lone_evaluated = lone_run(optimizers[k], field, lrs[:, k])
        np.testing.assert_array_equal(trained[:, k], lone_trained, err_msg=f"{name} member {k}: {optimizers[k]}")
        np.testing.assert_array_equal(evaluated[:, k], lone_evaluated, err_msg=f"{name} member {k} evaluated")


def traced_peak(optimizer: Optimizer, params: np.ndarray, state: OptimizerState, grads: np.ndarray, lrs: np.ndarray) -> int:
    """The most memory traced during one update and one evaluation for each of ``grads`` and
    ``lrs`` (the arrays themselves allocated before tracing starts)."""
    tracemalloc.start()
    try:
        for g, lr in zip(grads, lrs, strict=True):
            optimizer.update(params, g, lr, state)
            optimizer.eval_params(params, state)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def assert_trains_as_lone_runs(name: str, optimizers: list[Optimizer], seed: str, dim: int,
                               dtype: type = np.float64) -> None:
    """``optimizers`` stacked and trained as one population on ``Field(seed, dim, dtype)`` with
    ``learning_rates(name, K, seed)``: its parameters stay finite and every member equals its lone run."""
    field, lrs = Field(seed, dim, dtype), learning_rates(name, len(optimizers), seed)
    trained, evaluated = population_run(stack(optimizers), len(optimizers), field, lrs)
    assert np.isfinite(trained).all()
    assert_members_match(name, optimizers, field, lrs, trained, evaluated, range(len(optimizers)))


def assert_kept_continue_as_lone_runs(name: str, optimizers: list[Optimizer], seed: str, dim: int,
                                      dtype: type = np.float64) -> None:
    """``optimizers`` (four at least) trained as one population as ``assert_trains_as_lone_runs``,
    which drops its first member and every other one at step 40: the dropped rows hold no values
    from then on, and every kept member equals its lone run."""
    assert len(optimizers) >= 4
    keep = np.arange(len(optimizers))[1::2]
    field, lrs = Field(seed, dim, dtype), learning_rates(name, len(optimizers), seed)
    trained, evaluated = population_run(stack(optimizers), len(optimizers), field, lrs, drop_at=40, keep=keep)
    assert np.isnan(trained[40:, 0]).all()
    assert_members_match(name, optimizers, field, lrs, trained, evaluated, keep)
