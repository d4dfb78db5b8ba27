"""Muon on the task's weight matrices and AdamW on every other parameter (torch.optim.Muon beside
torch.optim.AdamW, as torch's documentation pairs them), and the parameter layout such rules bind to.

torch.optim.Muon refuses parameters that are not 2-D; its documentation trains biases and the like
with AdamW. This rule does the same over one flat vector: the matrices ``task.matrices`` declares
(``Matrix.view`` gives each in torch's orientation, nn.Linear's (out, in)) get Muon, every other
coordinate gets AdamW (``tuner.optim.adam.Adam``, the rule of the ``adamw`` entry). Before
``bind(task)``, and on tasks without matrices (every synthetic task), there are no matrices and
the rule is plain AdamW with betas (adamw_beta1, adamw_beta2) and eps adamw_eps.

Per matrix, with momentum mu, Newton-Schulz coefficients (a, b, c) and k = ns_steps:

    B = B + (1 - mu) * (G - B)                     (torch: buf.lerp_(grad, 1 - mu))
    U = G + mu * (B - G)   if nesterov   else  B   (torch: grad.lerp(buf, mu))
    X = U, transposed when it has more rows than columns (X is then short and wide)
    X = X / max(||X||_F, eps)
    k times:  A = X X^T;  X = a X + (b A + c A A) X
    O = X, transposed back
    P = P - lr * ratio * O

with ratio = sqrt(max(1, A / B)) ("original", torch's default when ``adjust_lr_fn`` is None) or
0.2 * sqrt(max(A, B)) ("match_rms_adamw") for the matrix's torch shape (A, B) = (out, in). Weight
decay is decoupled and precedes the update (``transforms.WeightDecay``: P = P * (1 - lr * wd), as
both torch classes compute it; Muon's update does not depend on P, so the order is torch's), at
the one rate ``weight_decay`` for matrices and other parameters alike.

The learning rate is one for both parts. The registry defaults ``adjust_lr_fn`` to
"match_rms_adamw": Moonshot's adjustment ("Muon is Scalable for LLM Training") scales each
matrix's orthogonalised update to the RMS of a typical AdamW update, so that Muon and AdamW share
one learning rate and one weight decay, and a tuned ``lr`` means what AdamW's ``lr`` means. With
"original" (Keller Jordan's scaling, torch's default) Muon wants a learning rate tens of times
larger than AdamW; a separate ``adamw_lr`` would then be needed, which this rule does not offer.

The AdamW options are three scalars, ``adamw_beta1``, ``adamw_beta2`` and ``adamw_eps`` (torch's
AdamW defaults), rather than a ``betas`` pair: search spaces sample scalars (``1 - beta`` on a log
scale), and these are not torch.optim.Muon's options anyway.

Exactness. torch's ``_zeropower_via_newtonschulz`` casts the update to bfloat16 (``grad.bfloat16()``)
and runs the normalisation and every iteration in bfloat16 (8 significant bits); its bfloat16
result is added to the float parameters. No float64 computation can match that to 1e-10, and an
emulation does not either: float32 products rounded to bfloat16 after each of torch's operations
reproduced torch's result bit for bit on 193 of 200 random matrices and were one bfloat16 ulp
(up to 4e-3) off on the others, which a trajectory then carries on. This rule iterates in the
parameters' dtype instead: it equals torch's own algorithm with the cast made a copy (float64
throughout) to about 1e-14 over 300 steps, and differs from torch as shipped by bfloat16's
rounding: about 1e-2 of each orthogonalised update's largest entry, and up to about 1.5% of the
largest parameter after 300 steps in the tests.

A population (``tuner.optim.population``: (K, P) parameters, the floats and lr (K, 1) arrays)
orthogonalises every member's matrix at once: ``Matrix.view`` gives the (K, rows, cols) stack,
and Newton-Schulz runs on it with numpy's batched matmul, which calls BLAS on each member's
matrix as on a lone run's; the Frobenius norms are per member, and AdamW runs on (K, n) rows.
"""

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from tuner.errors import ConfigError, check_choice, check_range, shown
from tuner.optim.adam import Adam, AdamState
from tuner.optim.base import check_bool, larger, lerp_, lerp_into, like
from tuner.tensors import Matrix, TensorLayout, tensor_layout

ADJUST_LR_FNS = ("original", "match_rms_adamw")
"""torch.optim.Muon's ``adjust_lr_fn`` values (None means "original")."""


@dataclass(frozen=True, slots=True)
class Bound:
    """``rule`` for a task whose flat parameters hold ``matrices`` and ``vectors`` (``Task``'s):
    what ``rule.bind(task)`` returns."""

    rule: Any
    matrices: tuple[Matrix, ...]
    vectors: tuple[tuple[int, int], ...] = ()

    @classmethod
    def of(cls, rule: Any, task: Any) -> "Bound":
        return cls(rule, tuple(getattr(task, "matrices", ())), tuple(getattr(task, "vectors", ())))

    def bind(self, task: Any) -> "Bound":
        return self.rule.bind(task)

    def init(self, params: np.ndarray) -> Any:
        return self.rule.init(params, self.matrices, self.vectors)

    def update(self, params: np.ndarray, grad: np.ndarray, lr: "float | np.ndarray", state: Any) -> None:
        self.rule.update(params, grad, lr, state)


@dataclass(slots=True)
class _Block:
    """One matrix: as stored (row-major in its flat slice), its lr ratio, whether Newton-Schulz
    runs on the stored matrix's transpose (torch iterates on the short and wide orientation of
    torch's shape), and the iteration's buffers (shared by equal shapes; (K, short, ...) in a
    population)."""

    stored: Matrix
    ratio: float
    flipped: bool
    x: np.ndarray
    y: np.ndarray
    gram: np.ndarray
    gram_update: np.ndarray


@dataclass(slots=True)
class MuonState:
    """The layout, Muon's momentum buffer (flat, used on the matrices), scratch, the matrices'
    blocks, and AdamW's state for each run of other coordinates."""

    layout: TensorLayout
    momentum_buffer: np.ndarray
    scratch: np.ndarray
    blocks: tuple[_Block, ...]
    vectors: tuple[AdamState, ...]


@dataclass(frozen=True, slots=True)
class Muon:
    """torch.optim.Muon on the weight matrices, AdamW elsewhere (the module docstring has the rule)."""

    momentum: float = 0.95
    nesterov: bool = True
    ns_coefficients: tuple[float, float, float] = (3.4445, -4.7750, 2.0315)
    eps: float = 1e-7
    ns_steps: int = 5
    adjust_lr_fn: str | None = None
    adamw_beta1: float = 0.9
    adamw_beta2: float = 0.999
    adamw_eps: float = 1e-8

    def __post_init__(self) -> None:
        check_range("momentum", self.momentum, 0.0, 1.0, high_open=True)
        check_bool("nesterov", self.nesterov)
        coefficients = self.ns_coefficients
        if not (isinstance(coefficients, (tuple, list)) and len(coefficients) == 3):
            raise ConfigError(f"ns_coefficients={shown(coefficients)} is not allowed; allowed: three numbers (a, b, c)",
                              allowed="three numbers (a, b, c)")
        for i, value in enumerate(coefficients):
            check_range(f"ns_coefficients[{i}]", value)
        object.__setattr__(self, "ns_coefficients", tuple(float(v) for v in coefficients))
        check_range("eps", self.eps, 0.0, low_open=True)
        check_range("ns_steps", self.ns_steps, 0, 99, integer=True)
        check_choice("adjust_lr_fn", self.adjust_lr_fn, (*ADJUST_LR_FNS, None))  # None: "original"
        check_range("adamw_beta1", self.adamw_beta1, 0.0, 1.0, high_open=True)
        check_range("adamw_beta2", self.adamw_beta2, 0.0, 1.0, high_open=True)
        check_range("adamw_eps", self.adamw_eps, 0.0)

    def bind(self, task: Any) -> Bound:
        """This rule for ``task``: Muon on ``task.matrices``."""
        return Bound.of(self, task)

    def ratio(self, shape: tuple[int, int]) -> float:
        """torch's ``_adjust_lr`` factor for a matrix of torch shape (A, B)."""
        rows, cols = shape
        if self.adjust_lr_fn == "match_rms_adamw":
            return 0.2 * math.sqrt(max(rows, cols))
        return math.sqrt(max(1, rows / cols))

    @property
    def adamw(self) -> Adam:
        """The AdamW rule of the other coordinates with this rule's ``adamw_*`` values, which this
        rule validates; they are set past Adam's own checks, which refuse a population's (K, 1) arrays."""
        adamw = Adam()
        object.__setattr__(adamw, "betas", (self.adamw_beta1, self.adamw_beta2))
        object.__setattr__(adamw, "eps", self.adamw_eps)
        return adamw

    def init(self, params: np.ndarray, matrices: tuple[Matrix, ...] = (),
             vectors: tuple[tuple[int, int], ...] = ()) -> MuonState:
        where = tensor_layout(matrices, params.shape[-1], vectors)
        members = params.shape[:-1]  # (K,) in a population
        buffers: dict[tuple[int, int], tuple[np.ndarray, ...]] = {}
        blocks = []
        for m in where.matrices:
            shape = m.view(params).shape[-2:]
            short, long = sorted(shape)
            if (short, long) not in buffers:
                buffers[short, long] = tuple(np.empty((*members, short, n), params.dtype)
                                             for n in (long, long, short, short))
            flipped = m.transposed != (shape[0] > shape[1])  # the stored matrix is not the short, wide one
            blocks.append(_Block(Matrix(m.offset, m.rows, m.cols), self.ratio(shape), flipped, *buffers[short, long]))
        return MuonState(
            layout=where,
            momentum_buffer=np.zeros_like(params),
            scratch=np.empty_like(params),
            blocks=tuple(blocks),
            vectors=tuple(AdamState(np.zeros_like(params[..., v]), np.zeros_like(params[..., v]), None,
                                    np.empty_like(params[..., v])) for v in where.vectors),
        )

    def update(self, params: np.ndarray, grad: np.ndarray, lr: "float | np.ndarray", state: MuonState) -> None:
        mu = self.momentum
        for block in state.blocks:
            flat = block.stored.span
            g, buf, tmp = grad[..., flat], state.momentum_buffer[..., flat], state.scratch[..., flat]
            lerp_(buf, g, 1.0 - mu, tmp)
            if self.nesterov:
                lerp_into(tmp, g, buf, mu)
            update = block.stored.view(state.scratch if self.nesterov else state.momentum_buffer)
            ortho = self._orthogonalise(update.swapaxes(-1, -2) if block.flipped else update, block)
            ortho *= like(_per_matrix(-(lr * block.ratio)), ortho)
            if block.flipped:  # back to the stored orientation first: adding a transposed view buffers
                np.copyto(block.stored.view(state.scratch), ortho.swapaxes(-1, -2))
                params[..., flat] += tmp
            else:
                params[..., flat] += ortho.reshape(tmp.shape)
        adamw = self.adamw
        for run, adam_state in zip(state.layout.vectors, state.vectors, strict=True):
            adamw.update(params[..., run], grad[..., run], lr, adam_state)

    def _orthogonalise(self, update: np.ndarray, block: _Block) -> np.ndarray:
        """Newton-Schulz on ``update`` (short and wide; a population's (K, short, long) stack), in
        the parameters' dtype; returns a buffer."""
        x, y, gram, gram_update = block.x, block.y, block.gram, block.gram_update
        a, b, c = (like(_per_matrix(v), x) for v in self.ns_coefficients)
        np.copyto(x, update)
        np.divide(x, like(larger(_frobenius(x), _per_matrix(self.eps)), x), out=x)
        for _ in range(self.ns_steps):
            np.matmul(x, x.swapaxes(-1, -2), out=gram)
            np.matmul(gram, gram, out=gram_update)
            gram_update *= c
            gram *= b
            gram_update += gram
            np.matmul(gram_update, x, out=y)
            x *= a
            y += x
            x, y = y, x
        return x


def _per_matrix(value: "float | np.ndarray") -> "float | np.ndarray":
    """A per-member value, a float or a population's (K, 1) array, shaped to broadcast over the
    population's matrices (K, rows, cols) (a view)."""
    return value[..., None] if isinstance(value, np.ndarray) else value


def _frobenius(x: np.ndarray) -> "float | np.ndarray":
    """The Frobenius norm of a contiguous matrix (np.dot of its entries), or each member's, (K, 1, 1)
    float64, of a population's stack (np.vecdot computes each dot product as np.dot does, in the
    matrix's dtype; the root is float64, as the lone run's ``math.sqrt``)."""
    if x.ndim == 2:
        flat = x.reshape(-1)
        return math.sqrt(float(np.dot(flat, flat)))
    rows = x.reshape(len(x), -1)
    return np.sqrt(np.vecdot(rows, rows).astype(np.float64, copy=False))[:, None, None]
