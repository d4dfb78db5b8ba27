"""Populations (``tuner.optim.population``) of SGD, Adagrad, RMSprop, Adam, NAdam, RAdam, Adamax and
their variants, with every transform: each member equals its configuration run alone, bit for bit.

Configurations are drawn from the registry's option ranges (every searched or fixed range opened,
choices such as amsgrad and centered drawn, zero and nonzero weight decay, momentum, dampening,
momentum_decay), grouped by ``population_key``, and each group trains as one population on a
deterministic gradient field (a shared linear field plus shared noise per step) with a learning
rate that differs per member and changes every step. After every step the population's
parameters and evaluation point (the average, when averaging) must equal each member's lone run
exactly: the population computes each row with the lone run's operations, in its order.
In float32 (parameters and gradients; fewer draws) too: a lone run's Python-float coefficients
meet its float32 arrays as float32 (NumPy's weak scalars), and so must each member's (K, 1) float64 ones.
"""

import numpy as np
import pytest

from tests.optim import population_helpers as helpers
from tuner.optim import OPTIMIZERS, make_optimizer
from tuner.optim.population import NotStackable, population_key, select, stack
from tuner.optim.transforms import Optimizer

NAMES = ["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw", "nadam", "nadamw",
         "radam", "radamw", "adamax"]
TECHNIQUES = ["plain", "clip_grad_norm", "clip_grad_value", "ema_decay", "polyak_start"]
DRAWS = 16
FLOAT32_DRAWS = 10
DIM = 24
DTYPES = {"float64": (np.float64, DRAWS), "float32": (np.float32, FLOAT32_DRAWS)}


def draw_options(name: str, technique: str, rng: np.random.Generator) -> dict:
    """Random options of ``name`` and of the technique; floats that rules test for zero are zero
    now and then, so that populations of both kinds form."""
    entry = OPTIMIZERS[name]
    values = {p.name: helpers.sample(p, rng) for p in entry.space if p.name != "lr"}
    options = {k: v for k, v in values.items() if k in entry.options}
    if "beta1" in values:
        options["betas"] = (values["beta1"], values["beta2"])
    if "weight_decay" in options and rng.random() < 0.3:
        options["weight_decay"] = 0.0
    for zero_sometimes in ("momentum", "momentum_decay"):
        if zero_sometimes in options and name not in ("momentum", "nesterov") and rng.random() < 0.3:
            options[zero_sometimes] = 0.0
    if "dampening" in entry.options:
        options["dampening"] = 0.0 if rng.random() < 0.4 else float(rng.uniform(0.0, 1.0))
    if name == "adagrad":
        options["lr_decay"] = 0.0 if rng.random() < 0.3 else float(10 ** rng.uniform(-4, -1))
        options["initial_accumulator_value"] = 0.0 if rng.random() < 0.3 else float(rng.uniform(0.0, 1.0))
    return options | helpers.technique_options(technique, rng)


def populations(name: str, technique: str, draws: int = DRAWS) -> list[list[Optimizer]]:
    """``draws`` random configurations of ``name`` grouped into populations by ``population_key``."""
    rng = helpers.rng_for(name, technique)
    return helpers.grouped(make_optimizer(name, **draw_options(name, technique, rng)) for _ in range(draws))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("technique", TECHNIQUES)
@pytest.mark.parametrize("name", NAMES)
def test_each_member_equals_its_lone_run(name: str, technique: str, dtype: str) -> None:
    numpy_dtype, draws = DTYPES[dtype]
    groups = populations(name, technique, draws)
    assert max(len(g) for g in groups) > 1
    for index, optimizers in enumerate(groups):
        helpers.assert_trains_as_lone_runs(name, optimizers, f"{name}-{technique}-{index}", DIM, numpy_dtype)


@pytest.mark.parametrize(("name", "technique", "dtype"), [
    ("nadam", "ema_decay", "float64"), ("radam", "polyak_start", "float64"), ("adam", "clip_grad_norm", "float64"),
    ("momentum", "ema_decay", "float64"), ("rmsprop", "clip_grad_value", "float64"),
    ("adam", "clip_grad_norm", "float32"), ("nadam", "ema_decay", "float32"),
])
def test_selected_members_continue_as_their_lone_runs(name: str, technique: str, dtype: str) -> None:
    optimizers = max(populations(name, technique, draws=40), key=len)
    helpers.assert_kept_continue_as_lone_runs(name, optimizers, name, DIM, DTYPES[dtype][0])


@pytest.mark.parametrize("dtype", DTYPES)
def test_radam_members_rectify_at_their_own_steps(dtype: str) -> None:
    # beta2 = 0.6: rho_inf = 4, never rectified; 0.7, 0.75, 0.8, 0.999: rectified from step 10, 8, 7, 6
    optimizers = [make_optimizer("radam", betas=(0.9, b2)) for b2 in (0.6, 0.7, 0.75, 0.8, 0.999)]
    field = helpers.Field("radam-rectify", DIM, DTYPES[dtype][0])
    lrs = helpers.learning_rates("radam", len(optimizers), "radam-rectify")
    trained, evaluated = helpers.population_run(stack(optimizers), len(optimizers), field, lrs)
    helpers.assert_members_match("radam", optimizers, field, lrs, trained, evaluated, range(len(optimizers)))


def test_stack_keeps_shared_floats_and_stacks_the_others() -> None:
    members = [make_optimizer("adam", betas=(0.9, b2), eps=1e-8, weight_decay=wd, ema_decay=0.99)
               for b2, wd in ((0.99, 0.1), (0.999, 0.2))]
    stacked = stack(members)
    b1, b2 = stacked.rule.betas
    assert b1 == 0.9 and stacked.rule.eps == 1e-8 and stacked.average.decay == 0.99
    assert b2.shape == (2, 1) and b2.dtype == np.float64 and b2.ravel().tolist() == [0.99, 0.999]
    assert stacked.decay.rate.ravel().tolist() == [0.1, 0.2] and stacked.decay.coupled is True
    assert population_key(stacked) == population_key(members[0])


@pytest.mark.parametrize(("first", "second"), [
    (("adam", {}), ("radam", {})),
    (("adam", {"amsgrad": False}), ("adam", {"amsgrad": True})),
    (("adam", {"weight_decay": 0.0}), ("adam", {"weight_decay": 0.1})),
    (("adam", {"weight_decay": 0.1}), ("adamw", {"weight_decay": 0.1})),
    (("rmsprop", {"momentum": 0.0}), ("rmsprop", {"momentum": 0.5})),
    (("momentum", {"dampening": 0.0}), ("momentum", {"dampening": 0.5})),
    (("adam", {"clip_grad_norm": 1.0}), ("adam", {"clip_grad_value": 1.0})),
    (("adam", {"clip_grad_norm": 1.0}), ("adam", {})),
    (("adam", {"polyak_start": 3}), ("adam", {"polyak_start": 4})),
    (("adam", {"polyak_start": 3}), ("adam", {"ema_decay": 0.9})),
    (("nadam", {"momentum_decay": 0.0}), ("nadam", {"momentum_decay": 4e-3})),
])
def test_different_keys_do_not_stack(first: tuple, second: tuple) -> None:
    a, b = make_optimizer(first[0], **first[1]), make_optimizer(second[0], **second[1])
    assert population_key(a) != population_key(b)
    with pytest.raises(NotStackable):
        stack([a, b])


def test_select_refuses_rows_that_are_not_increasing_indices() -> None:
    optimizer = stack([make_optimizer("adam", eps=e) for e in (1e-8, 1e-6, 1e-4)])
    state = optimizer.init(np.zeros((3, 5)))
    for rows in ([2, 1], [0, 0], [True, False, True], [[0, 1]]):
        with pytest.raises(ValueError, match="increasing member indices"):
            select(optimizer, state, np.array(rows))
    kept, kept_state = select(optimizer, state, np.array([0, 2]))
    assert kept.rule.eps.ravel().tolist() == [1e-8, 1e-4] and kept_state.rule.exp_avg.shape == (2, 5)


SIZE, LARGE_DIM = 8, 20_000
POPULATION_BYTES = SIZE * LARGE_DIM * 8


def peak_bytes(optimizer: Optimizer, steps: int, seed: str) -> int:
    """The most memory traced during ``steps`` updates and evaluations of a (SIZE, LARGE_DIM)
    population after its first step (random gradients and per-member learning rates)."""
    rng = helpers.rng_for("allocation", seed)
    params = rng.standard_normal((SIZE, LARGE_DIM))
    state = optimizer.init(params)
    optimizer.update(params, rng.standard_normal((SIZE, LARGE_DIM)), 1e-3, state)
    grads = rng.standard_normal((steps, SIZE, LARGE_DIM))
    lrs = 10 ** rng.uniform(-4, -2, (steps, SIZE, 1))
    return helpers.traced_peak(optimizer, params, state, grads, lrs)


@pytest.mark.parametrize("technique", ["clip_grad_norm", "clip_grad_value", "ema_decay", "polyak_start"])
@pytest.mark.parametrize("name", NAMES)
def test_population_update_allocates_no_array_of_the_population(name: str, technique: str) -> None:
    rng = helpers.rng_for("allocation", name, technique)
    members = helpers.one_population(lambda: make_optimizer(name, **draw_options(name, technique, rng)), SIZE)
    peak = peak_bytes(stack(members), 3, f"{name}-{technique}")
    assert peak < POPULATION_BYTES / 64, f"{name} allocated {peak} bytes (the population is {POPULATION_BYTES})"


def test_formulas_chosen_per_member_allocate_no_array_of_the_population() -> None:
    # RAdam members rectified from steps 6 to 10 or never, EMA weights on both sides of lerp's switch
    optimizer = stack([make_optimizer("radam", betas=(0.9, b2), ema_decay=decay) for b2, decay in
                       zip((0.6, 0.7, 0.75, 0.8, 0.999, 0.6, 0.7, 0.9), (0.1, 0.9, 0.2, 0.99, 0.3, 0.95, 0.4, 0.6), strict=True)])
    peak = peak_bytes(optimizer, 11, "masks")
    assert peak < POPULATION_BYTES / 64, f"allocated {peak} bytes (the population is {POPULATION_BYTES})"
