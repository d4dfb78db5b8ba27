"""Adafactor and Muon (+ AdamW on the other parameters) against torch.optim, on random settings.

The parameters are one flat vector here, laid out as a task lays them out: a tall matrix stored
transposed (as the networks store (in, out)), a bias, a wide matrix in torch's orientation, a bias
and more coordinates; torch holds the matrices as nn.Linear weights (out, in). Adafactor treats
the non-matrix coordinates as one vector unless the task declares each (``Task.vectors``), so
torch gets them as one Parameter, or one per declared vector; for Muon they go
to torch.optim.AdamW (elementwise: separate Parameters). 300 steps, float64, an lr that changes
every step. torch's Muon iterates Newton-Schulz in bfloat16: the exact comparison runs its code
with the bfloat16 cast made a copy (float64 throughout); the shipped one is compared loosely.
"""

import numpy as np
import pytest

from tests.conftest import optional_torch
from tuner.errors import ConfigError
from tuner.optim import OPTIMIZERS, make_optimizer
from tuner.tensors import Matrix

STEPS = 300
SEEDS = range(4)

# (name, torch shape, stored transposed) in flat order; matrices are 2-D
BLOCKS = [("w1", (7, 4), True), ("b1", (7,), False), ("w2", (3, 6), False), ("b2", (3,), False), ("c", (5,), False)]
SIZES = [int(np.prod(shape)) for _, shape, _ in BLOCKS]
OFFSETS = np.cumsum([0, *SIZES])
DIM = int(OFFSETS[-1])


class FakeTask:
    """What ``bind`` reads of a task: where the weight matrices are (the other coordinates: one tensor)."""

    matrices = tuple(
        Matrix(int(at), *(shape[::-1] if transposed else shape), transposed=transposed)
        for at, (_, shape, transposed) in zip(OFFSETS, BLOCKS, strict=False) if len(shape) == 2
    )


class FakeTaskWithBiases(FakeTask):
    """A task that declares each vector as its own tensor (``Task.vectors``), as the networks do."""

    vectors = tuple((int(at), size) for at, size, (_, shape, _) in zip(OFFSETS, SIZES, BLOCKS, strict=False)
                    if len(shape) == 1)


def views(flat: np.ndarray) -> dict[str, np.ndarray]:
    """Each block of ``flat`` in torch's shape (a copy when stored transposed)."""
    out = {}
    for at, size, (name, shape, transposed) in zip(OFFSETS, SIZES, BLOCKS, strict=False):
        part = flat[at : at + size]
        out[name] = part.reshape(shape[::-1]).T if transposed else part.reshape(shape)
    return out


def gather(tensors: dict) -> np.ndarray:
    """The flat vector of torch's tensors ``name -> tensor`` (inverse of ``views``)."""
    flat = np.empty(DIM)
    for at, size, (name, _, transposed) in zip(OFFSETS, SIZES, BLOCKS, strict=False):
        value = tensors[name].detach().numpy()
        flat[at : at + size] = (value.T if transposed else value).ravel()
    return flat


VECTORS = [name for name, shape, _ in BLOCKS if len(shape) == 1]
MATRICES = [name for name, shape, _ in BLOCKS if len(shape) == 2]


def random_run(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Initial parameters, gradients over scales from tiny (eps1's clamp) to large (clipping), lrs."""
    rng = np.random.default_rng([seed, 7])
    p0 = rng.standard_normal(DIM) * np.exp(rng.uniform(-8, 1))  # small: Adafactor's eps2 floors RMS(p)
    scale = np.exp(rng.uniform(-8, 3, (STEPS, 1)))
    scale[rng.random(STEPS) < 0.05] = 1e-12
    grads = rng.standard_normal((STEPS, DIM)) * scale
    lrs = 10 ** rng.uniform(-3, -0.5) * (1.5 + np.sin(np.arange(STEPS) / 7.0))
    return p0, grads, lrs


def adafactor_options(seed: int) -> dict:
    rng = np.random.default_rng([seed, 1])
    return {
        "beta2_decay": float(rng.choice([0.0, rng.uniform(-1.2, -0.3)])) if seed % 3 == 2 else float(rng.uniform(-1.2, -0.3)),
        "eps": (None if seed % 2 == 0 else float(10 ** rng.uniform(-4, -1)), float(10 ** rng.uniform(-3, 0))),
        "d": float(rng.choice([1.0, rng.uniform(1.0, 3.0)])),
        "weight_decay": 0.0 if seed % 3 == 0 else float(10 ** rng.uniform(-3, 0)),
    }


NS_COEFFICIENTS = [(3.4445, -4.7750, 2.0315), (1.5, -0.5, 0.0), (1.875, -1.25, 0.375)]
"""torch's (Keller Jordan's) quintic, the classic cubic and the convergent quintic Newton-Schulz."""


def muon_options(seed: int) -> dict:
    rng = np.random.default_rng([seed, 2])
    return {
        "momentum": float(1 - 10 ** rng.uniform(-2, -0.3) if seed % 2 else rng.uniform(0.0, 0.5)),  # both lerp forms
        "nesterov": bool(seed // 2 % 2),
        "ns_coefficients": NS_COEFFICIENTS[seed % len(NS_COEFFICIENTS)],
        "eps": float(10 ** rng.uniform(-9, -5)),
        "ns_steps": int(rng.choice([5, 5, 0, 1, 3, 8])),
        "adjust_lr_fn": [None, "original", "match_rms_adamw"][seed % 3],
        "adamw_beta1": float(1 - 10 ** rng.uniform(-3, -0.3)),
        "adamw_beta2": float(1 - 10 ** rng.uniform(-4, -1)),
        "adamw_eps": float(10 ** rng.uniform(-10, -4)),
        "weight_decay": 0.0 if seed % 4 == 0 else float(10 ** rng.uniform(-3, 0)),
    }


def exact_newton_schulz(torch, monkeypatch) -> None:
    """torch's Muon with its bfloat16 cast (``grad.bfloat16()``) replaced by a copy: its own
    Newton-Schulz code then runs in the gradient's dtype."""
    monkeypatch.setattr(torch.Tensor, "bfloat16", lambda self: self.clone())


def run_adafactor(seed: int, foreach: bool, dtype: str = "float64", per_bias: bool = False) -> tuple[float, float]:
    """Largest difference to torch over every step, and the largest parameter (float32's scale).
    ``per_bias``: the task declares its vectors and torch holds each as its own Parameter."""
    torch = optional_torch()
    p0, grads, lrs = random_run(seed)
    options = adafactor_options(seed)
    optimizer = make_optimizer("adafactor", **options).bind(FakeTaskWithBiases() if per_bias else FakeTask())
    params = p0.astype(dtype)
    state = optimizer.init(params)

    tensors = {k: torch.nn.Parameter(torch.tensor(v, dtype=getattr(torch, dtype))) for k, v in views(p0).items()}
    vector = torch.nn.Parameter(torch.cat([tensors[k] for k in VECTORS]).detach())
    held = [tensors[k] for k in VECTORS] if per_bias else [vector]
    reference = torch.optim.Adafactor([tensors[k] for k in MATRICES] + held, lr=float(lrs[0]),
                                      foreach=foreach, **options)
    worst = top = 0.0
    for k in range(STEPS):
        optimizer.update(params, grads[k].astype(dtype), float(lrs[k]), state)
        g = views(grads[k])
        for name in MATRICES + VECTORS:
            tensors[name].grad = torch.tensor(g[name], dtype=tensors[name].dtype)
        vector.grad = torch.tensor(np.concatenate([g[name] for name in VECTORS]), dtype=vector.dtype)
        reference.param_groups[0]["lr"] = float(lrs[k])
        reference.step()
        vectors = {n: tensors[n] for n in VECTORS} if per_bias else dict(zip(VECTORS, _split(vector), strict=True))
        theirs = gather({**{n: tensors[n] for n in MATRICES}, **vectors})
        worst, top = _worse(worst, top, params, theirs)
    return worst, top


def _worse(worst: float, top: float, ours: np.ndarray, theirs: np.ndarray) -> tuple[float, float]:
    """The running largest difference and largest parameter; NaN counts as infinite."""
    difference = np.abs(ours - theirs).max()
    return (max(worst, float(difference)) if difference == difference else np.inf), max(top, float(np.abs(theirs).max()))


def _split(vector) -> list:
    sizes = [SIZES[[b[0] for b in BLOCKS].index(name)] for name in VECTORS]
    return list(vector.detach().split(sizes))


def run_muon(seed: int, foreach: bool, dtype: str = "float64") -> tuple[float, float]:
    """Largest difference to torch.optim.Muon (matrices) + AdamW (the rest), and the largest parameter."""
    torch = optional_torch()
    p0, grads, lrs = random_run(seed)
    options = muon_options(seed)
    optimizer = make_optimizer("muon", **options).bind(FakeTask())
    params = p0.astype(dtype)
    state = optimizer.init(params)

    tensors = {k: torch.nn.Parameter(torch.tensor(v, dtype=getattr(torch, dtype))) for k, v in views(p0).items()}
    muon_options_ = {k: v for k, v in options.items() if not k.startswith("adamw_")}
    muon = torch.optim.Muon([tensors[k] for k in MATRICES], lr=float(lrs[0]), **muon_options_)
    adamw = torch.optim.AdamW([tensors[k] for k in VECTORS], lr=float(lrs[0]), foreach=foreach,
                              betas=(options["adamw_beta1"], options["adamw_beta2"]), eps=options["adamw_eps"],
                              weight_decay=options["weight_decay"])
    worst = top = 0.0
    for k in range(STEPS):
        optimizer.update(params, grads[k].astype(dtype), float(lrs[k]), state)
        for name, g in views(grads[k]).items():
            tensors[name].grad = torch.tensor(g, dtype=tensors[name].dtype)
        for reference in (muon, adamw):
            reference.param_groups[0]["lr"] = float(lrs[k])
            reference.step()
        worst, top = _worse(worst, top, params, gather(tensors))
    return worst, top


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("seed", SEEDS)
def test_adafactor_takes_each_declared_bias_as_its_own_tensor(seed: int, foreach: bool) -> None:
    worst, _ = run_adafactor(seed, foreach, per_bias=True)
    assert worst <= 1e-10


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("seed", SEEDS)
def test_adafactor_matches_torch_in_float64(seed: int, foreach: bool) -> None:
    worst, _ = run_adafactor(seed, foreach)
    assert worst <= 1e-10


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("seed", SEEDS)
def test_muon_matches_torch_in_float64(seed: int, foreach: bool, monkeypatch) -> None:
    # foreach applies to AdamW's part; torch's Muon has no foreach implementation
    exact_newton_schulz(optional_torch(), monkeypatch)
    worst, _ = run_muon(seed, foreach)
    assert worst <= 1e-10


@pytest.mark.parametrize("seed", SEEDS)
def test_float32_is_close_to_torch(seed: int, monkeypatch) -> None:
    exact_newton_schulz(optional_torch(), monkeypatch)
    for run in (run_adafactor, run_muon):
        worst, top = run(seed, seed % 2 == 1, "float32")
        assert worst <= 1e-5 * top, run.__name__


@pytest.mark.parametrize("seed", [0, 3])  # torch's coefficients and 5 steps
def test_muon_is_near_torch_with_its_bfloat16_iteration(seed: int) -> None:
    """Unpatched torch: bfloat16 keeps 8 bits, so each orthogonalised step differs by about 1e-2
    relative; over 300 steps of lr <= 0.3 the parameters stay within a few 1e-2 of each other."""
    torch = optional_torch()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # bfloat16 matmuls run OpenMP threads, which crawl on a busy machine
    try:
        worst, top = run_muon(seed, foreach=False)
    finally:
        torch.set_num_threads(threads)
    assert worst <= 0.05 * max(top, 1.0)


def test_registry_entries() -> None:
    adafactor, muon = OPTIMIZERS["adafactor"], OPTIMIZERS["muon"]
    assert adafactor.decay is None and "weight_decay" in adafactor.options  # the rule's own: see adafactor.py
    assert muon.decay == "decoupled" and muon.defaults == {"weight_decay": 0.1, "adjust_lr_fn": "match_rms_adamw"}
    optimizer = make_optimizer("muon")
    assert optimizer.decay.rate == 0.1 and not optimizer.decay.coupled
    assert optimizer.rule.adjust_lr_fn == "match_rms_adamw"
    assert make_optimizer("adafactor").rule.eps == (None, 1e-3)


def test_muon_without_matrices_is_adamw() -> None:
    rng = np.random.default_rng(3)
    grads = rng.standard_normal((20, 9))
    ours, adamw = np.ones(9), np.ones(9)
    muon = make_optimizer("muon", weight_decay=0.05, adamw_beta1=0.8, adamw_beta2=0.99, adamw_eps=1e-6)
    reference = make_optimizer("adamw", weight_decay=0.05, betas=(0.8, 0.99), eps=1e-6)
    states = muon.init(ours), reference.init(adamw)
    for g in grads:
        muon.update(ours, g, 0.01, states[0])
        reference.update(adamw, g, 0.01, states[1])
    assert np.array_equal(ours, adamw)


def test_before_bind_adafactor_treats_everything_as_one_vector() -> None:
    rng = np.random.default_rng(4)
    grads = rng.standard_normal((10, DIM))
    ours, bound = np.ones(DIM), np.ones(DIM)
    rule = make_optimizer("adafactor", weight_decay=0.1)
    states = rule.init(ours), rule.bind(FakeTask()).init(bound)
    for g in grads:
        rule.update(ours, g, 0.05, states[0])
        rule.bind(FakeTask()).update(bound, g, 0.05, states[1])
    assert not np.allclose(ours, bound), "factoring the matrices changes the step"
    one_vector = make_optimizer("adafactor", weight_decay=0.1).bind(type("NoMatrices", (), {"matrices": ()})())
    again = np.ones(DIM)
    state = one_vector.init(again)
    for g in grads:
        one_vector.update(again, g, 0.05, state)
    assert np.array_equal(again, ours)


@pytest.mark.parametrize("name", ["adafactor", "muon"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_update_is_in_place_and_leaves_the_gradient(name: str, dtype: str) -> None:
    optimizer = make_optimizer(name, weight_decay=0.1).bind(FakeTask())
    params = np.random.default_rng(5).standard_normal(DIM).astype(dtype)
    buffer = params
    grad = np.random.default_rng(6).standard_normal(DIM).astype(dtype)
    kept = grad.copy()
    state = optimizer.init(params)
    start = params.copy()
    for _ in range(3):
        optimizer.update(params, grad, 0.01, state)
    assert params is buffer and params.dtype == dtype
    assert np.array_equal(grad, kept)
    assert not np.array_equal(params, start) and np.isfinite(params).all()


def test_adafactor_first_step_by_hand() -> None:
    # one vector (1, 1) with gradient (3, 4): V = g*g at t = 1, U = sign(g), RMS(U) = 1 = d;
    # alpha = max(1e-3, RMS(p) = 1) * min(lr, 1) = lr; decay first: p = 1 - lr * wd
    optimizer = make_optimizer("adafactor", weight_decay=0.5)
    params = np.ones(2)
    optimizer.update(params, np.array([3.0, -4.0]), 0.1, optimizer.init(params))
    np.testing.assert_allclose(params, [0.95 - 0.1, 0.95 + 0.1], rtol=0, atol=1e-15)


def test_muon_step_is_orthogonal_for_many_iterations() -> None:
    # with the classic cubic coefficients (1.5, -0.5, 0) Newton-Schulz converges to U V^T
    task = type("One", (), {"matrices": (Matrix(0, 3, 5),)})()
    optimizer = make_optimizer("muon", momentum=0.0, nesterov=False, ns_coefficients=(1.5, -0.5, 0.0), ns_steps=60,
                               adjust_lr_fn="original", weight_decay=0.0).bind(task)
    params = np.zeros(15)
    grad = np.random.default_rng(7).standard_normal(15)
    optimizer.update(params, grad, 1.0, optimizer.init(params))
    u, _, vt = np.linalg.svd(grad.reshape(3, 5), full_matrices=False)
    np.testing.assert_allclose(params.reshape(3, 5), -(u @ vt), atol=1e-12)


@pytest.mark.parametrize(("name", "options", "message"), [
    ("adafactor", {"beta2_decay": 0.1}, r"beta2_decay=0.1 is not allowed"),
    ("adafactor", {"eps": (-1.0, 1e-3)}, r"eps\[0\]=-1.0 is not allowed"),
    ("adafactor", {"eps": (None, float("nan"))}, r"eps\[1\]=\.nan is not allowed"),
    ("adafactor", {"eps": 1e-3}, r"eps=0.001 is not allowed; allowed: a pair"),
    ("adafactor", {"d": 0.5}, r"d=0.5 is not allowed"),
    ("adafactor", {"weight_decay": -0.1}, r"weight_decay=-0.1 is not allowed"),
    ("adafactor", {"maximize": True}, r"unknown option 'maximize'"),
    ("muon", {"momentum": 1.0}, r"momentum=1.0 is not allowed"),
    ("muon", {"nesterov": 1}, r"nesterov=1 is not allowed"),
    ("muon", {"ns_coefficients": (1.0, 2.0)}, r"ns_coefficients=\[1.0, 2.0\] is not allowed"),
    ("muon", {"ns_coefficients": (1.0, 2.0, float("inf"))}, r"ns_coefficients\[2\]=\.inf is not allowed"),
    ("muon", {"eps": 0.0}, r"eps=0.0 is not allowed"),
    ("muon", {"ns_steps": 100}, r"ns_steps=100 is not allowed"),
    ("muon", {"ns_steps": 2.5}, r"ns_steps=2.5 is not allowed"),
    ("muon", {"adjust_lr_fn": "rms"}, r"adjust_lr_fn='rms' is not allowed; allowed: 'original'"),
    ("muon", {"adamw_beta1": 1.0}, r"adamw_beta1=1.0 is not allowed"),
    ("muon", {"adamw_beta2": -0.1}, r"adamw_beta2=-0.1 is not allowed"),
    ("muon", {"adamw_eps": -1.0}, r"adamw_eps=-1.0 is not allowed"),
    ("muon", {"weight_decay": -1.0}, r"weight_decay=-1.0 is not allowed"),
], ids=lambda v: str(v))
def test_bad_values_are_rejected_with_the_field_named(name: str, options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_optimizer(name, **options)


def test_a_layout_outside_the_parameters_is_rejected() -> None:
    task = type("Bad", (), {"matrices": (Matrix(0, 3, 3), Matrix(8, 2, 2))})()
    for name in ("adafactor", "muon"):
        with pytest.raises(ValueError, match="overlap"):
            make_optimizer(name).bind(task).init(np.zeros(20))
        with pytest.raises(ValueError, match="inside"):
            make_optimizer(name).bind(task).init(np.zeros(10))


@pytest.mark.parametrize("name", ["adafactor", "muon"])
def test_update_allocates_no_arrays(name: str) -> None:
    # matrices of 64 KiB stored transposed and not, tall and wide: any temporary array (numpy's
    # buffering of a transposed view included) would show in the peak
    import tracemalloc

    task = type("Big", (), {"matrices": (Matrix(0, 64, 128, transposed=True), Matrix(8192, 128, 64),
                                         Matrix(16384, 32, 48, transposed=True))})()
    optimizer = make_optimizer(name, weight_decay=0.1).bind(task)
    rng = np.random.default_rng(8)
    params, grad = rng.standard_normal(16384 + 32 * 48 + 100), rng.standard_normal(16384 + 32 * 48 + 100)
    state = optimizer.init(params)
    optimizer.update(params, grad, 0.01, state)
    tracemalloc.start()
    try:
        for _ in range(3):
            optimizer.update(params, grad, 0.01, state)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8192
