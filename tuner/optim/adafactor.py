"""Adafactor as torch.optim.Adafactor defines it: factored second moments for the weight matrices.

Each parameter tensor is one of the task's weight matrices (``task.matrices``, in torch's
orientation: ``Matrix.view``), or one of its vectors (``task.vectors``, each bias), or, when the
task declares none, the vector of every other coordinate, which torch would hold as one 1-D
parameter. Before ``bind(task)`` and on tasks without matrices, everything is that one vector.
Per tensor P with gradient G and n elements, at step t, with tau = beta2_decay:

    w = t ** tau                                   (1 - beta2_t; w = 1 at t = 1)
    rho = min(lr, 1 / sqrt(t))
    alpha = max(eps2, RMS(P)) * rho                RMS(P) = ||P|| / sqrt(n), before the decay
    P = P * (1 - lr * weight_decay)
    matrix (r, c):
        R = R + w * (mean_cols(G * G) - R)          (torch's lerp_ forms, as for Adam's moments)
        C = C + w * (mean_rows(G * G) - C)
        V = R C^T / max(mean(R), eps1)              (outer product)
    vector:
        V = V + w * (G * G - V)
    U = G / sqrt(max(V, eps1 ** 2))
    P = P - alpha / max(1, RMS(U) / d) * U

eps1 = None (the default) means the dtype's machine epsilon, as torch's finfo(dtype).eps.

How torch's definition differs from the paper's (Shazeer & Stern 2018, Algorithm 4-5), from
Hugging Face transformers' ``Adafactor`` and from ``optax.adafactor``:

- ``lr`` caps the relative step: rho = min(lr, 1/sqrt(t)). The paper and transformers'
  default (``relative_step=True``, which forbids an lr) use the constant 0.01 there; transformers
  with ``relative_step=False`` and optax use lr as an absolute step size instead, with no
  1/sqrt(t) decay at all. Parameter scaling (max(eps2, RMS(P))) is always on here; transformers'
  ``scale_parameter`` and optax's ``multiply_by_parameter_scale`` switch it; there is no
  ``warmup_init``.
- eps1 is not added to G * G before the averages (the paper, transformers and optax, with eps1 =
  1e-30): torch clamps afterwards, mean(R) below by eps1 and V below by eps1**2, with eps1 the
  dtype's epsilon by default.
- Weight decay is decoupled and scaled by the user's lr (P *= 1 - lr * wd). transformers scales it
  by the computed step, alpha (P *= 1 - alpha * wd); optax subtracts wd * P after the lr and
  parameter scaling (not scaled by lr); the paper has none.
- Row and column statistics are means (transformers, optax), where the paper writes sums: the
  same V, the factor cancels.
- No first moment (transformers' ``beta1``, optax's ``momentum``); 1 - beta2_t = t ** beta2_decay
  as in the paper, transformers and optax (decay_rate 0.8 there), without optax's
  ``decay_offset`` and with no cap.
- torch factors every tensor of two or more dimensions over its last two; optax only dimensions
  of at least ``min_dim_size_to_factor`` (128). Here the task's weight matrices are factored (a
  conv kernel as its im2col matrix, out x in*k*k, where torch would factor the k x k of the 4-D
  kernel), each declared vector (``task.vectors``: each bias) is a tensor of its own, as torch's
  Parameters are, and on a task that declares none every other coordinate is one vector.

Weight decay is this rule's own option (the registry's ``decay`` is None): alpha reads RMS(P)
before the decay, so ``transforms.WeightDecay`` applied before the rule would change the step.

A population (``tuner.optim.population``: (K, P) parameters, the floats and lr (K, 1) arrays)
keeps every factor, RMS and alpha per member: R and C are (K, rows) and (K, cols), the means and
norms are taken over each member's own matrix (``Matrix.view`` gives (K, rows, cols)), and the
scalar steps are Python's (``base.power``, ``larger``, ``smaller``) per member.
"""

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from tuner.errors import ConfigError, check_range, shown
from tuner.optim.base import larger, lerp_, like, nonzero, power, smaller
from tuner.optim.muon import Bound
from tuner.tensors import Matrix, TensorLayout, tensor_layout


@dataclass(slots=True)
class _Factored:
    """One matrix: its flat slice, element count, row and column factors ``R``, ``C`` and scratch
    for their new means (torch orientation: R has one entry per row, C one per column; with a
    leading axis of K members in a population)."""

    matrix: Matrix
    flat: slice
    size: int
    row_var: np.ndarray
    col_var: np.ndarray
    row_mean: np.ndarray
    col_mean: np.ndarray


@dataclass(slots=True)
class AdafactorState:
    """The layout, each matrix's factors, the other coordinates' second moment ``variance`` (flat,
    used off the matrices), the scratch update, eps1 for the dtype (per member if eps1 is), step count."""

    layout: TensorLayout
    factored: tuple[_Factored, ...]
    variance: np.ndarray
    scratch: np.ndarray
    eps1: float
    t: int = 0


@dataclass(frozen=True, slots=True)
class Adafactor:
    """torch.optim.Adafactor (the module docstring has the rule and how it differs from others')."""

    beta2_decay: float = -0.8
    eps: tuple[float | None, float] = (None, 1e-3)
    d: float = 1.0
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        check_range("beta2_decay", self.beta2_decay, None, 0.0)
        eps = self.eps
        if not (isinstance(eps, (tuple, list)) and len(eps) == 2):
            allowed = "a pair (eps1, eps2): eps1 >= 0 or null (the dtype's epsilon), eps2 >= 0"
            raise ConfigError(f"eps={shown(eps)} is not allowed; allowed: {allowed}", allowed=allowed)
        if eps[0] is not None:
            check_range("eps[0]", eps[0], 0.0)
        check_range("eps[1]", eps[1], 0.0)
        object.__setattr__(self, "eps", (None if eps[0] is None else float(eps[0]), float(eps[1])))
        check_range("d", self.d, 1.0)
        check_range("weight_decay", self.weight_decay, 0.0)

    def bind(self, task: Any) -> Bound:
        """This rule for ``task``: factored second moments for ``task.matrices``."""
        return Bound.of(self, task)

    def init(self, params: np.ndarray, matrices: tuple[Matrix, ...] = (),
             vectors: tuple[tuple[int, int], ...] = ()) -> AdafactorState:
        where = tensor_layout(matrices, params.shape[-1], vectors)
        members = params.shape[:-1]  # (K,) in a population
        factored = []
        for m in where.matrices:
            rows, cols = m.view(params).shape[-2:]
            row, col = (*members, rows), (*members, cols)
            factored.append(_Factored(m, m.span, rows * cols, np.zeros(row, params.dtype), np.zeros(col, params.dtype),
                                      np.empty(row, params.dtype), np.empty(col, params.dtype)))
        eps1 = self.eps[0] if self.eps[0] is not None else float(np.finfo(params.dtype).eps)
        return AdafactorState(where, tuple(factored), np.zeros_like(params), np.empty_like(params), eps1)

    def update(self, params: np.ndarray, grad: np.ndarray, lr: "float | np.ndarray", state: AdafactorState) -> None:
        state.t += 1
        t = float(state.t)
        w = power(t, self.beta2_decay)
        rho = smaller(lr, 1 / (t**0.5))
        eps1, eps2 = state.eps1, self.eps[1]
        tensors = state.layout.tensors
        sizes = [sum(v.stop - v.start for v in parts) for parts in tensors]
        # every alpha from the parameters before the decay, as torch computes it
        alphas = [larger(eps2, _norm(params, (f.flat,)) / (f.size**0.5)) * rho for f in state.factored]
        vector_alphas = [larger(eps2, _norm(params, parts) / (n**0.5)) * rho
                         for parts, n in zip(tensors, sizes, strict=True)]
        if nonzero(self.weight_decay):
            params *= like(1 - lr * self.weight_decay, params)
        for f, alpha in zip(state.factored, alphas, strict=True):
            g, u = grad[..., f.flat], state.scratch[..., f.flat]
            np.multiply(g, g, out=u)
            squares = f.matrix.view(state.scratch)  # torch's orientation (elementwise work stays on the flat slice)
            _mean_square(squares, -1, f.row_mean)
            lerp_(f.row_var, f.row_mean, w, f.row_mean)
            _mean_square(squares, -2, f.col_mean)
            lerp_(f.col_var, f.col_mean, w, f.col_mean)
            np.matmul(f.row_var[..., :, None], f.col_var[..., None, :], out=squares)  # R C^T: torch's row_var @ col_var
            u /= like(larger(_mean(f.row_var), eps1), u)
            self._step(params, grad, state.scratch, (f.flat,), f.size, alpha, eps1)
        for parts, n, alpha in zip(tensors, sizes, vector_alphas, strict=True):
            for v in parts:
                u, variance = state.scratch[..., v], state.variance[..., v]
                np.multiply(grad[..., v], grad[..., v], out=u)
                lerp_(variance, u, w, u)
                np.copyto(u, variance)
            self._step(params, grad, state.scratch, parts, n, alpha, eps1)

    def _step(self, params: np.ndarray, grad: np.ndarray, scratch: np.ndarray, parts: tuple[slice, ...],
              size: int, alpha: "float | np.ndarray", eps1: "float | np.ndarray") -> None:
        """U = G / sqrt(max(V, eps1**2)) from V in ``scratch`` over ``parts``; P = P - alpha / max(1,
        RMS(U) / d) * U (one tensor: one RMS over all its parts)."""
        floor = like(eps1 * eps1, scratch)
        for part in parts:
            u = scratch[..., part]
            np.maximum(u, floor, out=u)
            np.sqrt(u, out=u)
            np.reciprocal(u, out=u)  # torch's rsqrt, then times the gradient
            u *= grad[..., part]
        scale = like(-alpha / larger(1.0, _norm(scratch, parts) / ((size**0.5) * self.d)), scratch)
        for part in parts:
            u = scratch[..., part]
            u *= scale
            params[..., part] += u


def _norm(array: np.ndarray, parts: tuple[slice, ...]) -> "float | np.ndarray":
    """The 2-norm of ``array`` over ``parts`` (contiguous slices) taken together: a float, or each
    member's, (K, 1) float64, for a population (np.vecdot computes each row's dot product as np.dot
    does, in the array's dtype; the sum and the root are float64, as the lone run's Python floats)."""
    if array.ndim == 1:
        return math.sqrt(sum(float(np.dot(array[p], array[p])) for p in parts))
    total = 0.0
    for p in parts:
        total = total + np.vecdot(array[:, p], array[:, p]).astype(np.float64, copy=False)
    return np.sqrt(total)[:, None]


def _mean(array: np.ndarray) -> "float | np.ndarray":
    """The mean of a vector, or each member's, (K, 1), of a population's rows: taken in the array's
    dtype, then a float, or float64 per member."""
    return float(array.mean()) if array.ndim == 1 else array.mean(axis=1, keepdims=True).astype(np.float64, copy=False)


def _mean_square(squares: np.ndarray, axis: int, out: np.ndarray) -> None:
    """torch's ``norm(g, dim).square() / size``: the mean of ``squares`` (g * g) along ``axis``,
    through the square root as torch takes it."""
    np.sum(squares, axis=axis, out=out)
    np.sqrt(out, out=out)
    np.square(out, out=out)
    out /= squares.shape[axis]
