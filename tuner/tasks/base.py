"""The task protocol: what the training loop needs from a benchmark problem."""

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

Batch = Any
"""Whatever a task's ``batches`` yields and its ``loss_and_grad`` accepts."""


@dataclass(frozen=True)
class Matrix:
    """A weight matrix inside the flat parameters: ``flat[offset : offset + rows * cols]`` read
    row-major as (rows, cols). torch's weight of the same layer (nn.Linear's (out, in)) is that
    matrix, or its transpose when ``transposed``."""

    offset: int
    rows: int
    cols: int
    transposed: bool = False

    def view(self, flat: "np.ndarray") -> "np.ndarray":
        """The matrix in torch's orientation, as a view into ``flat``."""
        matrix = flat[self.offset : self.offset + self.rows * self.cols].reshape(self.rows, self.cols)
        return matrix.T if self.transposed else matrix


class Task(ABC):
    """A differentiable problem over one flat parameter vector of length ``dim``.

    All randomness flows from explicit seeds: ``init_params(seed)`` and the generator given
    to ``batches``; the same seeds give bit-identical runs.
    """

    name: str
    dim: int
    dtype: np.dtype
    metrics: tuple[str, ...]
    """Keys of ``evaluate``'s result."""
    matrices: tuple[Matrix, ...] = ()
    """The weight matrices in the flat parameters (Muon orthogonalises their updates); the other
    parameters (biases, synthetic tasks' coordinates) are vectors."""

    @abstractmethod
    def init_params(self, seed: int) -> np.ndarray:
        """Fresh initial parameters for ``seed``."""

    @abstractmethod
    def batches(self, batch_size: int, rng: np.random.Generator) -> Iterator[Batch]:
        """The minibatches of one epoch (synthetic tasks: one step per epoch)."""

    @abstractmethod
    def steps_per_epoch(self, batch_size: int) -> int:
        """How many batches ``batches`` yields."""

    @abstractmethod
    def full_batch(self) -> Batch:
        """The whole training objective, without sampling noise (for L-BFGS and gradcheck)."""

    @abstractmethod
    def loss_and_grad(self, params: np.ndarray, batch: Batch, grad: np.ndarray) -> float:
        """Return the loss on ``batch`` and write its gradient into ``grad`` (overwritten)."""

    @abstractmethod
    def evaluate(self, params: np.ndarray) -> dict[str, float]:
        """Evaluation metrics, keyed as ``metrics``."""

    def samples_per_epoch(self, batch_size: int) -> int:
        """Training examples seen in one epoch."""
        return self.steps_per_epoch(batch_size) * batch_size
