"""Synthetic problems: an ill-conditioned quadratic, n-dimensional Rosenbrock, a saddle.

Each epoch is one step. With ``noise`` > 0 the gradient (not the loss) gets additive
Gaussian noise of that standard deviation per coordinate, to imitate minibatches.

A population (``loss_and_grad_many``) is computed as whole (K, dim) array operations that do, row
by row, what the lone method does, each member's loss a BLAS dot per row as alone
(``base.row_dots``): the same bits, except the rotated quadratic's Hessian product, one matrix
product for all members (K matrix-vector products cost more), whose sums run in another order
(agreement to about 1e-14 relative). The noise of a step is drawn once, as a lone step draws it,
and added to every member's gradient: K lone runs of one seed draw the same noise.
"""

import math
from abc import abstractmethod
from collections.abc import Iterator
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from tuner.tasks.base import PopulationBuffers, Task, row_dots


class SyntheticOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)
    noise: float = Field(0.0, ge=0.0, description="std of additive gradient noise")
    dtype: Literal["float64", "float32"] = "float64"


class _Buffers:
    """A population's work arrays: a subclass's residuals, its row dots (task dtype), a float64
    part of the loss, and a gradient for ``evaluate_many``."""

    def __init__(self, members: int, dtype: np.dtype, dim: int, residuals: dict[str, int]) -> None:
        for name, size in residuals.items():
            setattr(self, name, np.empty((members, size), dtype))
        self.dots = np.empty(members, dtype)
        self.dots2 = np.empty(members, dtype)
        self.part = np.empty(members)
        self.grad = np.empty((members, dim), dtype)


class _Synthetic(Task):
    metrics = ("loss",)
    residuals: dict[str, int]
    """The (K, size) work arrays of ``_loss_and_grad_many``, by name."""

    def __init__(self, options: SyntheticOptions, dim: int) -> None:
        self.options = options
        self.dim = dim
        self.dtype = np.dtype(options.dtype)
        self._noise = np.empty(dim, self.dtype)
        self._buffers = PopulationBuffers(lambda members, _: _Buffers(members, self.dtype, dim, self.residuals))

    def steps_per_epoch(self, batch_size: int) -> int:
        return 1

    def samples_per_epoch(self, batch_size: int) -> int:
        return 1

    def batches(self, batch_size: int, rng: np.random.Generator) -> Iterator[np.random.Generator | None]:
        yield rng if self.options.noise > 0 else None

    def full_batch(self) -> None:
        return None

    def loss_and_grad(self, params: np.ndarray, batch: np.random.Generator | None, grad: np.ndarray) -> float:
        loss = self._loss_and_grad(params, grad)
        if batch is not None:
            batch.standard_normal(out=self._noise, dtype=self.dtype)
            self._noise *= self.options.noise
            grad += self._noise
        return loss

    @abstractmethod
    def _loss_and_grad(self, params: np.ndarray, grad: np.ndarray) -> float:
        """The noiseless loss; its gradient is written into ``grad``."""

    def evaluate(self, params: np.ndarray) -> dict[str, float]:
        return {"loss": self._loss_and_grad(params, np.empty_like(params))}

    def loss_and_grad_many(self, params: np.ndarray, batch: np.random.Generator | None, grad: np.ndarray,
                           losses: np.ndarray) -> None:
        self._loss_and_grad_many(params, grad, losses, self._buffers.get(len(params), 1))
        if batch is not None:
            batch.standard_normal(out=self._noise, dtype=self.dtype)
            self._noise *= self.options.noise
            grad += self._noise

    def evaluate_many(self, params: np.ndarray) -> dict[str, np.ndarray]:
        losses = np.empty(len(params))
        buffers = self._buffers.get(len(params), 1)
        self._loss_and_grad_many(params, buffers.grad, losses, buffers)
        return {"loss": losses}

    @abstractmethod
    def _loss_and_grad_many(self, params: np.ndarray, grad: np.ndarray, losses: np.ndarray, b: _Buffers) -> None:
        """``_loss_and_grad`` of each row of ``params`` (K, dim) into ``losses`` (K,) and ``grad``,
        with the work arrays ``b``."""


class QuadraticOptions(SyntheticOptions):
    dim: int = Field(50, ge=1, le=2_000, description="a dense dim x dim Hessian: 32 MB at most")
    condition_number: float = Field(100.0, ge=1.0)
    mu: float = Field(1.0, gt=0.0, description="smallest Hessian eigenvalue")
    spread: Literal["linear", "geometric", "extremes"] = "linear"
    rotate: bool = True
    problem_seed: int = Field(0, ge=0, description="draws x* and the rotation")


class Quadratic(_Synthetic):
    """f(x) = 1/2 (x - x*)^T H (x - x*), H = Q diag(lambda) Q^T, lambda in [mu, L = kappa mu].

    The spectrum is spread linearly, geometrically or only at its ends; Q is a random
    rotation (or the identity); x* and Q come from ``problem_seed``; x0 ~ x* + N(0, I).
    """

    name = "quadratic"

    def __init__(self, options: QuadraticOptions) -> None:
        super().__init__(options, options.dim)
        rng = np.random.default_rng(options.problem_seed)
        n, mu = options.dim, options.mu
        big = mu * options.condition_number
        if options.spread == "linear":
            eig = np.linspace(mu, big, n)
        elif options.spread == "geometric":
            eig = np.geomspace(mu, big, n)
        else:
            eig = np.where(np.arange(n) < n // 2, mu, big)
            eig[-1] = big
            eig[0] = mu
        self.eigenvalues = eig
        self.mu, self.L = float(eig.min()), float(eig.max())
        self.optimum = rng.standard_normal(n).astype(self.dtype)
        if options.rotate:
            q, r = np.linalg.qr(rng.standard_normal((n, n)))
            q *= np.sign(np.diag(r))
            self.hessian = ((q * eig) @ q.T).astype(self.dtype)
        else:
            self.hessian = None
            self._diag = eig.astype(self.dtype)
        self._delta = np.empty(n, self.dtype)
        self.residuals = {"delta": n}

    def init_params(self, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        return (self.optimum + rng.standard_normal(self.dim)).astype(self.dtype)

    def _loss_and_grad(self, params: np.ndarray, grad: np.ndarray) -> float:
        np.subtract(params, self.optimum, out=self._delta)
        if self.hessian is None:
            np.multiply(self._diag, self._delta, out=grad)
        else:
            np.matmul(self.hessian, self._delta, out=grad)
        return 0.5 * float(np.dot(self._delta, grad))

    def _loss_and_grad_many(self, params: np.ndarray, grad: np.ndarray, losses: np.ndarray, b: _Buffers) -> None:
        np.subtract(params, self.optimum, out=b.delta)
        if self.hessian is None:
            np.multiply(self._diag, b.delta, out=grad)
        else:
            # row k: H @ delta_k as the lone run's matrix-vector product (one BLAS gemv per member, the same
            # bits); one GEMM for all rounds differently, and a chaotic run carries that up to 1e-4
            np.matmul(self.hessian, b.delta[:, :, None], out=grad[:, :, None])
        np.multiply(row_dots(b.delta, grad, b.dots), 0.5, out=losses, dtype=np.float64)

    def theory(self) -> dict[str, float]:
        """Best step sizes and per-step contraction rates of the error ||x - x*||, in torch's
        parametrisation (``tuner.theory.iteration_radius``), for any spectrum holding mu and L:
        gradient descent and heavy ball (Polyak), and Nesterov's optimum on quadratics,
        lr = 4 / (3 L + mu), momentum = (sqrt(3 kappa + 1) - 2) / (sqrt(3 kappa + 1) + 2), rate
        1 - 2 / sqrt(3 kappa + 1) (Lessard, Recht and Packard 2016; tests/test_theory.py
        checks all three against brute-force minimisation of the iteration matrix's spectral radius)."""
        mu, big = self.mu, self.L
        kappa = big / mu
        sq = math.sqrt(kappa)
        sq3 = math.sqrt(3.0 * kappa + 1.0)
        return {
            "mu": mu,
            "L": big,
            "kappa": kappa,
            "gd_lr": 2.0 / (big + mu),
            "gd_rate": (kappa - 1.0) / (kappa + 1.0),
            "heavy_ball_lr": 4.0 / (math.sqrt(big) + math.sqrt(mu)) ** 2,
            "heavy_ball_momentum": ((sq - 1.0) / (sq + 1.0)) ** 2,
            "heavy_ball_rate": (sq - 1.0) / (sq + 1.0),
            "nesterov_lr": 4.0 / (3.0 * big + mu),
            "nesterov_momentum": (sq3 - 2.0) / (sq3 + 2.0),
            "nesterov_rate": 1.0 - 2.0 / sq3,
        }


class RosenbrockOptions(SyntheticOptions):
    dim: int = Field(2, ge=2, le=100_000)
    a: float = Field(100.0, gt=0.0, description="weight of the valley term")
    init_noise: float = Field(0.1, ge=0.0, description="std of the seeded jitter around x0")


class Rosenbrock(_Synthetic):
    """f(x) = sum_i a (x_{i+1} - x_i^2)^2 + (1 - x_i)^2; minimum 0 at x = 1.

    x0 = (-1.2, 1, -1.2, 1, ...) plus N(0, init_noise^2) jitter from the seed.
    """

    name = "rosenbrock"

    def __init__(self, options: RosenbrockOptions) -> None:
        super().__init__(options, options.dim)
        n = options.dim
        self._valley = np.empty(n - 1, self.dtype)
        self._shift = np.empty(n - 1, self.dtype)
        self.residuals = {"valley": n - 1, "shift": n - 1}

    def init_params(self, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        x0 = np.where(np.arange(self.dim) % 2 == 0, -1.2, 1.0)
        return (x0 + self.options.init_noise * rng.standard_normal(self.dim)).astype(self.dtype)

    def _loss_and_grad(self, params: np.ndarray, grad: np.ndarray) -> float:
        a = self.options.a
        head, tail = params[:-1], params[1:]
        valley, shift = self._valley, self._shift
        np.multiply(head, head, out=valley)
        np.subtract(tail, valley, out=valley)  # r = x_{i+1} - x_i^2
        np.subtract(1.0, head, out=shift)  # s = 1 - x_i
        loss = a * float(np.dot(valley, valley)) + float(np.dot(shift, shift))
        valley *= 2.0 * a  # 2 a r
        grad[0] = 0.0
        grad[1:] = valley  # d/dx_{i+1}: 2 a r
        np.multiply(valley, head, out=valley)
        valley *= 2.0  # 4 a r x_i
        grad[:-1] -= valley
        shift *= 2.0
        grad[:-1] -= shift  # d/dx_i: -4 a r x_i - 2 s
        return loss

    def _loss_and_grad_many(self, params: np.ndarray, grad: np.ndarray, losses: np.ndarray, b: _Buffers) -> None:
        a = self.options.a
        head, tail = params[:, :-1], params[:, 1:]
        valley, shift = b.valley, b.shift
        np.multiply(head, head, out=valley)
        np.subtract(tail, valley, out=valley)
        np.subtract(1.0, head, out=shift)
        np.multiply(row_dots(valley, valley, b.dots), a, out=losses, dtype=np.float64)
        losses += row_dots(shift, shift, b.dots2)
        valley *= 2.0 * a
        grad[:, 0] = 0.0
        grad[:, 1:] = valley
        np.multiply(valley, head, out=valley)
        valley *= 2.0
        grad[:, :-1] -= valley
        shift *= 2.0
        grad[:, :-1] -= shift


class SaddleOptions(SyntheticOptions):
    dim: int = Field(2, ge=2, le=100_000)
    negative_dims: int = Field(1, ge=1, description="directions of negative curvature at 0")
    init_scale: float = Field(1e-3, gt=0.0, description="std of the start's offset from the saddle along them")

    @model_validator(mode="after")
    def _fits(self) -> "SaddleOptions":
        if self.negative_dims >= self.dim:
            raise ValueError(
                f"negative_dims={self.negative_dims} is not allowed; allowed: 1 to dim - 1 = {self.dim - 1}"
            )
        return self


class Saddle(_Synthetic):
    """f(x, y) = 1/2 |x|^2 + 1/4 sum_j (y_j^2 - 1)^2: a strict saddle at 0, minima 0 at y = +-1.

    y holds the last ``negative_dims`` coordinates. x0 ~ N(0, I); y0 ~ N(0, init_scale^2).
    """

    name = "saddle"

    def __init__(self, options: SaddleOptions) -> None:
        super().__init__(options, options.dim)
        self._k = options.dim - options.negative_dims
        self._sq = np.empty(options.negative_dims, self.dtype)
        self.residuals = {"sq": options.negative_dims}

    def init_params(self, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        x = rng.standard_normal(self.dim)
        x[self._k :] *= self.options.init_scale
        return x.astype(self.dtype)

    def _loss_and_grad(self, params: np.ndarray, grad: np.ndarray) -> float:
        x, y = params[: self._k], params[self._k :]
        sq = self._sq
        np.multiply(y, y, out=sq)
        sq -= 1.0  # y^2 - 1
        loss = 0.5 * float(np.dot(x, x)) + 0.25 * float(np.dot(sq, sq))
        grad[: self._k] = x
        np.multiply(sq, y, out=grad[self._k :])
        return loss

    def _loss_and_grad_many(self, params: np.ndarray, grad: np.ndarray, losses: np.ndarray, b: _Buffers) -> None:
        x, y = params[:, : self._k], params[:, self._k :]
        sq = b.sq
        np.multiply(y, y, out=sq)
        sq -= 1.0
        np.multiply(row_dots(x, x, b.dots), 0.5, out=losses, dtype=np.float64)
        losses += np.multiply(row_dots(sq, sq, b.dots2), 0.25, out=b.part, dtype=np.float64)
        grad[:, : self._k] = x
        np.multiply(sq, y, out=grad[:, self._k :])
