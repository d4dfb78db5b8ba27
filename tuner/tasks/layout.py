"""Shared pieces of the array-model tasks (cnn, autoencoder, rnn_adding): named blocks of one flat
parameter vector, torch's default init, the L2 penalty, and shuffled minibatches.

A ``Layout`` puts every weight block first and every bias after them, so the L2 penalty on the
weights is one slice; each block is a view into the flat vector, shaped as torch's parameter
of the same layer (``nn.Linear.weight`` (out, in), ``nn.Conv2d.weight`` (out, in, k, k)).
"""

from collections.abc import Iterator
from math import prod, sqrt

import numpy as np

from tuner.tasks.base import Task
from tuner.tensors import Matrix


class Layout:
    """Blocks ``name -> shape`` of a flat vector: ``weights`` (L2-penalised) first, then ``biases``."""

    def __init__(self, weights: list[tuple[str, tuple[int, ...]]], biases: list[tuple[str, tuple[int, ...]]]) -> None:
        self.blocks: dict[str, tuple[int, tuple[int, ...]]] = {}
        at = 0
        for name, shape in [*weights, *biases]:
            self.blocks[name] = (at, shape)
            at += prod(shape)
        self.n_weights = sum(prod(shape) for _, shape in weights)
        self.dim = at
        self.vectors = tuple((self.blocks[name][0], prod(shape)) for name, shape in biases)
        """(offset, size) of each bias: ``Task.vectors``."""
        self._cache: list[tuple[np.ndarray, dict[str, np.ndarray]]] = []

    def views(self, flat: np.ndarray) -> dict[str, np.ndarray]:
        """Each block as a view into ``flat``; remembered for the last two arrays (params and grad)."""
        for seen, views in self._cache:
            if seen is flat:
                return views
        views = {name: flat[at : at + prod(shape)].reshape(shape) for name, (at, shape) in self.blocks.items()}
        self._cache = [(flat, views), *self._cache[:1]]
        return views

    def matrix(self, name: str) -> Matrix:
        """Block ``name`` as a (rows, rest) matrix: torch's weight, a conv kernel flattened as Muon does."""
        at, shape = self.blocks[name]
        return Matrix(at, shape[0], prod(shape[1:]))

    def init_uniform(self, flat: np.ndarray, rng: np.random.Generator, fan_in: dict[str, int]) -> None:
        """torch's default init of Linear, Conv2d and RNN: each block ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
        drawn in the order of ``fan_in``."""
        views = self.views(flat)
        for name, n_in in fan_in.items():
            bound = 1.0 / sqrt(n_in)
            views[name][...] = rng.uniform(-bound, bound, views[name].shape)


def add_l2(params: np.ndarray, grad: np.ndarray, n_weights: int, l2: float, scratch: np.ndarray) -> float:
    """Add 1/2 l2 |w|^2 of the weights ``params[:n_weights]`` to ``grad``; return the penalty."""
    if not l2:
        return 0.0
    weights = params[:n_weights]
    np.multiply(weights, l2, out=scratch)
    grad[:n_weights] += scratch
    return 0.5 * l2 * float(np.dot(weights, weights))


class Shuffled:
    """Arrays of the same length, reshuffled each epoch into buffers allocated once; batches are views."""

    def __init__(self, *arrays: np.ndarray) -> None:
        self.arrays = arrays
        self._epoch = [np.empty_like(a) for a in arrays]

    def __len__(self) -> int:
        return len(self.arrays[0])

    def steps(self, batch_size: int) -> int:
        return -(-len(self) // batch_size)

    def batches(self, batch_size: int, rng: np.random.Generator) -> Iterator[tuple[np.ndarray, ...]]:
        n = len(self)
        order = rng.permutation(n)
        for array, epoch in zip(self.arrays, self._epoch, strict=True):
            np.take(array, order, axis=0, out=epoch)
        for start in range(0, n, batch_size):
            yield tuple(epoch[start : start + batch_size] for epoch in self._epoch)


class LayoutTask(Task):
    """The parts of the Task protocol the array-model tasks share: parameters in ``layout`` drawn
    with torch's default init (``fan_in``), and epochs over ``train`` (a Shuffled set); the
    minibatches are tuples of its arrays' rows."""

    layout: Layout
    fan_in: dict[str, int]
    train: Shuffled

    def init_params(self, seed: int) -> np.ndarray:
        flat = np.empty(self.dim, self.dtype)
        self.layout.init_uniform(flat, np.random.default_rng(seed), self.fan_in)
        return flat

    def steps_per_epoch(self, batch_size: int) -> int:
        return self.train.steps(batch_size)

    def samples_per_epoch(self, batch_size: int) -> int:
        return len(self.train)

    def batches(self, batch_size: int, rng: np.random.Generator) -> Iterator[tuple[np.ndarray, ...]]:
        return self.train.batches(batch_size, rng)

    def full_batch(self) -> tuple[np.ndarray, ...]:
        return self.train.arrays
