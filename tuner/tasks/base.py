"""The task protocol: what the training loop needs from a benchmark problem, for one parameter
vector or for a population of them (``loss_and_grad_many``, ``evaluate_many``)."""

import copy
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

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

    def member_bytes(self, batch_size: int) -> int:
        """The memory one member of a population takes in this task's work arrays at ``batch_size``
        (its batch and validation activations); 0 for a task whose population is a loop."""
        return 0

    def samples_per_epoch(self, batch_size: int) -> int:
        """Training examples seen in one epoch."""
        return self.steps_per_epoch(batch_size) * batch_size

    # populations --------------------------------------------------------------------------
    def loss_and_grad_many(self, params: np.ndarray, batch: Batch, grad: np.ndarray, losses: np.ndarray) -> None:
        """A population's losses and gradients on one shared ``batch``: ``params`` and ``grad`` are
        (K, dim) with contiguous rows, ``losses`` (K,); row k gets what ``loss_and_grad(params[k],
        batch, grad[k])`` gives (``losses[k]`` its return value). The batch is used as K lone runs
        with the same seed would each use it: a batch that is a generator drawing gradient noise
        (the synthetic tasks) is drawn from once, as by one lone step, and the noise goes to every member.

        This default is a loop over the members, right for every batch that using does not consume
        (cnn, autoencoder and rnn_adding use it); the synthetic and network tasks override it with
        whole-population array operations."""
        for k in range(len(params)):
            losses[k] = self.loss_and_grad(params[k], batch, grad[k])

    def evaluate_many(self, params: np.ndarray) -> dict[str, np.ndarray]:
        """Evaluation metrics of a population ``params`` (K, dim), keyed as ``metrics``: each a (K,)
        array whose entry k is what ``evaluate(params[k])`` gives. This default is a loop over the members."""
        results = {key: np.empty(len(params)) for key in self.metrics}
        for k in range(len(params)):
            for key, value in self.evaluate(params[k]).items():
                results[key][k] = value
        return results


Buffers = TypeVar("Buffers")


class PopulationBuffers(Generic[Buffers]):
    """Work arrays of population methods, made by ``build(members, batch)``: an object whose
    attributes are arrays, or lists of arrays, that each have the population as their first axis.

    They are allocated once per batch size for the largest population asked for; a smaller one
    (members compacted out of a run) gets views of their first rows, made once per size, so the
    hot loop allocates no population-sized array after its first step."""

    def __init__(self, build: Callable[[int, int], Buffers]) -> None:
        self._build = build
        self._full: dict[int, tuple[int, Buffers]] = {}
        self._views: dict[tuple[int, int], Buffers] = {}

    def get(self, members: int, batch: int) -> Buffers:
        views = self._views.get((members, batch))
        if views is not None:
            return views
        capacity, full = self._full.get(batch, (0, None))
        if capacity < members:
            capacity, full = members, self._build(members, batch)
            self._full[batch] = capacity, full
            self._views = {key: value for key, value in self._views.items() if key[1] != batch}
        views = copy.copy(full)
        for name, value in vars(full).items():
            if isinstance(value, np.ndarray):
                setattr(views, name, value[:members])
            elif isinstance(value, list):
                setattr(views, name, [array[:members] for array in value])
        self._views[members, batch] = views
        return views


def row_dots(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``out[k] = np.dot(a[k], b[k])`` for (K, n) arrays with contiguous rows (``b`` may be one
    shared (n,) vector), each a BLAS dot as the lone ``np.dot`` computes it: the same bits, one call."""
    b = b[:, :, None] if b.ndim == 2 else b[:, None]
    np.matmul(a[:, None, :], b, out=out[:, None, None])
    return out
