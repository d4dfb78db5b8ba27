"""Populations (``tuner.optim.population``) of Adadelta, Lion, schedule-free SGD and AdamW,
Adafactor and Muon, with the transforms the registry allows each: every member equals its
configuration run alone, bit for bit.

Configurations are drawn from the registry's option ranges (fixed ranges opened too: Adafactor's
d, schedule-free's r and weight_lr_power and warm-up; Muon's AdamW betas and eps; Muon's nesterov
and adjust_lr_fn drawn), grouped by ``population_key``, and each group trains as one population
on a deterministic gradient field with a learning rate that differs per member and changes every
step. The parameters hold weight matrices of every orientation (stored as torch holds them or
transposed, taller or wider than long) and vectors, declared one tensor each or left as runs
that form one tensor, so that Muon's Newton-Schulz (batched matmul over the members' matrices)
and Adafactor's factored moments, means and norms are checked per member. In float32 too
(parameters and gradients; fewer draws): each member's (K, 1) float64 coefficients meet its
float32 arrays as its lone run's Python floats do (NumPy's weak scalars), its norms and means
are taken as its lone run takes them.
"""

import numpy as np
import pytest

from tests.optim import population_helpers as helpers
from tuner.optim import OPTIMIZERS, make_optimizer
from tuner.optim.base import lerp_, lerp_into
from tuner.optim.population import stack
from tuner.optim.transforms import Optimizer
from tuner.tensors import Matrix

DRAWS = 12
DTYPES = {"float64": (np.float64, DRAWS), "float32": (np.float32, 8)}


class Layout:
    """Weight matrices in every orientation, and vectors declared (``declared``) or left as runs."""

    matrices = (
        Matrix(0, 6, 4),  # torch (6, 4): taller, iterated transposed
        Matrix(24, 3, 5, transposed=True),  # torch (5, 3): taller, iterated as stored
        Matrix(42, 4, 7, transposed=True),  # torch (7, 4): taller, iterated as stored
        Matrix(70, 3, 8),  # torch (3, 8): wider, iterated as stored
    )
    dim = 99

    def __init__(self, declared: bool) -> None:
        self.vectors = ((39, 3), (94, 5)) if declared else ()  # else two runs, one tensor


LAYOUTS = {"declared": Layout(True), "runs": Layout(False)}


def draw_options(name: str, technique: str, rng: np.random.Generator) -> dict:
    """Random options of ``name`` and of the technique (weight decay zero now and then)."""
    entry = OPTIMIZERS[name]
    values = {p.name: helpers.sample(p, rng) for p in entry.space if p.name not in ("lr", "schedule")}
    if name.startswith("schedule_free") and rng.random() < 0.4:
        # beta below 2/3: evaluation's lerp weight 1 - 1/beta takes torch's other formula
        values["beta1" if "beta1" in values else "momentum"] = float(rng.uniform(0.5, 0.66))
    options = {k: v for k, v in values.items() if k in entry.options}
    if "beta1" in values:
        options["betas"] = (values["beta1"], values["beta2"])
    if "weight_decay" in options and rng.random() < 0.3:
        options["weight_decay"] = 0.0
    return options | helpers.technique_options(technique, rng)


def populations(name: str, technique: str, layout: Layout, draws: int = DRAWS) -> list[list[Optimizer]]:
    """``draws`` random configurations of ``name``, bound to ``layout``, grouped by ``population_key``."""
    rng = helpers.rng_for(name, technique, layout.vectors)
    return helpers.grouped(make_optimizer(name, **draw_options(name, technique, rng)).bind(layout) for _ in range(draws))


CASES = [
    *[("adadelta", t) for t in ("plain", "clip_grad_norm", "ema_decay")],
    *[("lion", t) for t in ("plain", "clip_grad_value", "polyak_start")],
    *[("schedule_free_sgd", t) for t in ("plain", "clip_grad_norm")],  # averages on its own: no ema, no polyak
    *[("schedule_free_adamw", t) for t in ("plain", "clip_grad_value")],
    *[("adafactor", t) for t in ("plain", "clip_grad_norm", "ema_decay")],
    *[("muon", t) for t in ("plain", "clip_grad_value", "polyak_start")],
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("name", "technique", "layout"),
                         [(name, technique, layout) for name, technique in CASES for layout in LAYOUTS
                          if layout == "declared" or name in ("adafactor", "muon")])  # only they read the layout
def test_each_member_equals_its_lone_run(name: str, technique: str, layout: str, dtype: str) -> None:
    numpy_dtype, draws = DTYPES[dtype]
    groups = populations(name, technique, LAYOUTS[layout], draws)
    assert max(len(g) for g in groups) > 1
    for index, optimizers in enumerate(groups):
        helpers.assert_trains_as_lone_runs(name, optimizers, f"{name}-{technique}-{layout}-{index}", Layout.dim,
                                           numpy_dtype)


@pytest.mark.parametrize(("name", "technique", "dtype"), [
    ("schedule_free_adamw", "plain", "float64"), ("schedule_free_sgd", "clip_grad_norm", "float64"),
    ("adafactor", "ema_decay", "float64"), ("muon", "polyak_start", "float64"), ("lion", "clip_grad_value", "float64"),
    ("schedule_free_adamw", "plain", "float32"), ("adafactor", "ema_decay", "float32"),
])
def test_selected_members_continue_as_their_lone_runs(name: str, technique: str, dtype: str) -> None:
    # per-member scalars (schedule-free's lr_max and weight sum), factors and shared Newton-Schulz buffers are compacted
    optimizers = max(populations(name, technique, LAYOUTS["declared"], draws=30), key=len)
    helpers.assert_kept_continue_as_lone_runs(name, optimizers, name, Layout.dim, DTYPES[dtype][0])


@pytest.mark.parametrize("name", ["adafactor", "muon"])
def test_a_population_binds_after_stacking_too(name: str) -> None:
    layout = LAYOUTS["declared"]
    rng = helpers.rng_for("bind", name)
    options = [draw_options(name, "plain", rng) | {"weight_decay": 0.01} for _ in range(3)]
    if name == "muon":
        options = [o | {"nesterov": True, "adjust_lr_fn": "match_rms_adamw"} for o in options]
    optimizers = [make_optimizer(name, **o).bind(layout) for o in options]
    field, lrs = helpers.Field(f"bind-{name}", Layout.dim), helpers.learning_rates(name, 3, f"bind-{name}")
    trained, evaluated = helpers.population_run(stack([make_optimizer(name, **o) for o in options]).bind(layout), 3, field, lrs)
    helpers.assert_members_match(name, optimizers, field, lrs, trained, evaluated, range(3))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["schedule_free_adamw", "adafactor", "muon", "lion", "adadelta"])
def test_members_sharing_every_float_differ_by_their_learning_rates(name: str, dtype: str) -> None:
    # nothing to stack but the learning rate: the rule sees floats with (K, P) parameters and a (K, 1) lr
    optimizer = make_optimizer(name).bind(LAYOUTS["declared"])
    stacked = stack([optimizer] * 4)
    assert stacked == optimizer
    field = helpers.Field(f"shared-{name}", Layout.dim, DTYPES[dtype][0])
    lrs = helpers.learning_rates(name, 4, f"shared-{name}")
    trained, evaluated = helpers.population_run(stacked, 4, field, lrs)
    helpers.assert_members_match(name, [optimizer] * 4, field, lrs, trained, evaluated, range(4))


def test_a_population_views_every_members_matrix_without_copying() -> None:
    params = np.arange(3.0 * Layout.dim).reshape(3, Layout.dim)
    for matrix in Layout.matrices:
        stacked = matrix.view(params)
        assert stacked.shape == (3, *matrix.view(params[0]).shape) and np.shares_memory(stacked, params)
        for k in range(3):
            np.testing.assert_array_equal(stacked[k], matrix.view(params[k]))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("into", [False, True])
def test_lerp_takes_each_members_formula(into: bool, dtype: str) -> None:
    # weights on both sides of torch's switch at |w| = 0.5, and NaN (the large-weight formula, as torch);
    # in float32 a lone row's Python-float weight is a float32 (NumPy's weak scalar), and so is each member's
    rng = helpers.rng_for("lerp", into)
    weight = np.array([[0.1], [0.5], [-0.7], [0.49], [np.nan], [-0.2], [1 / 3], [0.9]])
    start, end = rng.standard_normal((2, 8, 50)).astype(DTYPES[dtype][0])
    got = np.empty_like(start)
    if into:
        lerp_into(got, start, end, weight)
    else:
        np.copyto(got, start)
        lerp_(got, end.copy(), weight, np.empty_like(start))
        aliased, scratch_is_end = start.copy(), end.copy()  # ``scratch`` may be ``end``
        lerp_(aliased, scratch_is_end, weight, scratch_is_end)
        np.testing.assert_array_equal(aliased, got)
    for k, w in enumerate(weight[:, 0]):
        want = np.empty_like(start[k])
        if into:
            lerp_into(want, start[k], end[k], float(w))
        else:
            np.copyto(want, start[k])
            lerp_(want, end[k].copy(), float(w), np.empty_like(want))
        np.testing.assert_array_equal(got[k], want)


def big_layout() -> Layout:
    """Matrices large enough that the population's (K, P) arrays dwarf the per-member temporaries.
    (numpy buffers ufuncs on a population's blocks, (K, n) views with rows P apart, in chunks of
    its buffer size, 8192 elements per operand at most, whatever K: the population must be large
    enough to tell that from an array of its size.)"""
    layout = Layout(True)
    layout.matrices = (Matrix(0, 64, 96), Matrix(6144, 96, 48, transposed=True), Matrix(10752, 40, 20))
    layout.vectors = ((11552, 96), (11648, 48))
    layout.dim = 11696
    return layout


@pytest.mark.parametrize("technique", ["plain", "clip_grad_norm", "ema_decay"])
@pytest.mark.parametrize("name", ["adadelta", "lion", "schedule_free_sgd", "schedule_free_adamw", "adafactor", "muon"])
def test_population_update_allocates_no_array_of_the_population(name: str, technique: str) -> None:
    if technique == "ema_decay" and name.startswith("schedule_free"):
        technique = "clip_grad_value"  # averages on its own
    size, layout = 64, big_layout()
    rng = helpers.rng_for("allocation", name, technique)
    optimizer = stack(helpers.one_population(lambda: make_optimizer(name, **draw_options(name, technique, rng)).bind(layout), size))
    params = rng.standard_normal((size, layout.dim))
    grads = rng.standard_normal((4, size, layout.dim))
    lrs = 10 ** rng.uniform(-4, -2, (4, size, 1))
    state = optimizer.init(params)
    optimizer.update(params, grads[0], lrs[0], state)
    optimizer.eval_params(params, state)
    peak = helpers.traced_peak(optimizer, params, state, grads[1:], lrs[1:])
    population_bytes = size * layout.dim * 8
    assert peak < population_bytes / 16, f"{name} allocated {peak} bytes (the population is {population_bytes})"
