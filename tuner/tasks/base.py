"""The task protocol: what the training loop needs from a benchmark problem."""

from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any

import numpy as np

from tuner.tensors import Matrix

Batch = Any
"""Whatever a task's ``batches`` yields and its ``loss_and_grad`` accepts."""


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
    """The weight matrices in the flat parameters (Muon orthogonalises their updates, Adafactor
    factors their second moments); the other parameters (biases, synthetic tasks' coordinates)
    are vectors."""
    vectors: tuple[tuple[int, int], ...] = ()
    """(offset, size) of each other parameter tensor as torch holds it (each bias), when the task
    has several; empty: every coordinate outside the matrices is one tensor."""

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
