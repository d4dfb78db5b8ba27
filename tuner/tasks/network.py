"""Feed-forward networks on a data set: linear models and ReLU MLPs over one flat buffer.

The parameter vector holds every weight matrix (row-major, ``(n_in, n_out)``), then every
bias, so the L2 penalty and each optimizer step are single vectorised operations. Layers
are views into it. Activations live in per-batch-size workspaces allocated once.
"""

from collections.abc import Iterator

import numpy as np

from tuner.tasks.base import Task
from tuner.tasks.data import DataOptions, load_dataset
from tuner.tensors import Matrix


class _Workspace:
    """Buffers for one batch size: activations, their gradients, ReLU masks, head scratch."""

    def __init__(self, batch: int, sizes: list[int], dtype: np.dtype) -> None:
        self.z = [np.empty((batch, n), dtype) for n in sizes[1:]]
        self.dz = [np.empty((batch, n), dtype) for n in sizes[1:-1]]
        self.mask = [np.empty((batch, n), dtype) for n in sizes[1:-1]]
        self.col = np.empty((batch, 1), dtype)
        self.out = np.empty((batch, sizes[-1]), dtype)


class NetworkTask(Task):
    """Layers ``sizes = [features, *hidden, outputs]`` with ReLU between them and a loss head.

    Loss on a batch: head loss (mean) + 1/2 l2 |W|^2 over all weight matrices.
    Init: W, b ~ U(-1/sqrt(n_in), 1/sqrt(n_in)) per layer, as torch.nn.Linear.
    """

    metrics = ("val_loss", "val_accuracy")

    def __init__(self, name: str, options: DataOptions, hidden: tuple[int, ...], head: type) -> None:
        self.name = name
        self.options = options
        self.head = head
        self.dtype = np.dtype(options.dtype)
        data = load_dataset(options)
        self.data = data
        self.sizes = [data.x_train.shape[1], *hidden, head.out_dim(data.n_classes)]
        pairs = list(zip(self.sizes[:-1], self.sizes[1:], strict=True))
        self.n_weights = sum(i * o for i, o in pairs)
        self.dim = self.n_weights + sum(o for _, o in pairs)
        self._shapes = pairs
        offsets = np.cumsum([0] + [i * o for i, o in pairs])
        self.matrices = tuple(Matrix(int(at), i, o, transposed=True)
                              for at, (i, o) in zip(offsets, pairs, strict=False))
        bias_offsets = self.n_weights + np.cumsum([0] + [o for _, o in pairs])
        self.vectors = tuple((int(at), o) for at, (_, o) in zip(bias_offsets, pairs, strict=False))
        self._targets = head.encode(data.y_train, data.n_classes, self.dtype)
        self._val_targets = head.encode(data.y_val, data.n_classes, self.dtype)
        self._epoch_x = np.empty_like(data.x_train)
        self._epoch_t = np.empty_like(self._targets)
        self._workspaces: dict[int, _Workspace] = {}
        self._decay = np.empty(self.n_weights, self.dtype)
        self._view_cache: list[tuple[np.ndarray, list]] = []

    # parameters -------------------------------------------------------------------------
    def _layers(self, flat: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """(W, b) views into ``flat``, remembered for the last two arrays (params and grad)."""
        for seen, layers in self._view_cache:
            if seen is flat:
                return layers
        layers, w_at, b_at = [], 0, self.n_weights
        for n_in, n_out in self._shapes:
            w = flat[w_at : w_at + n_in * n_out].reshape(n_in, n_out)
            layers.append((w, flat[b_at : b_at + n_out]))
            w_at += n_in * n_out
            b_at += n_out
        self._view_cache = [(flat, layers), *self._view_cache[:1]]
        return layers

    def init_params(self, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        flat = np.empty(self.dim, self.dtype)
        for (n_in, _), (w, b) in zip(self._shapes, self._layers(flat), strict=True):
            bound = 1.0 / np.sqrt(n_in)
            w[...] = rng.uniform(-bound, bound, w.shape)
            b[...] = rng.uniform(-bound, bound, b.shape)
        return flat

    # data -------------------------------------------------------------------------------
    def steps_per_epoch(self, batch_size: int) -> int:
        return -(-len(self._targets) // batch_size)

    def samples_per_epoch(self, batch_size: int) -> int:
        return len(self._targets)

    def batches(self, batch_size: int, rng: np.random.Generator) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        n = len(self._targets)
        order = rng.permutation(n)
        np.take(self.data.x_train, order, axis=0, out=self._epoch_x)
        np.take(self._targets, order, axis=0, out=self._epoch_t)
        for start in range(0, n, batch_size):
            yield self._epoch_x[start : start + batch_size], self._epoch_t[start : start + batch_size]

    def full_batch(self) -> tuple[np.ndarray, np.ndarray]:
        return self.data.x_train, self._targets

    # model ------------------------------------------------------------------------------
    def _workspace(self, batch: int) -> _Workspace:
        ws = self._workspaces.get(batch)
        if ws is None:
            ws = self._workspaces[batch] = _Workspace(batch, self.sizes, self.dtype)
        return ws

    def _forward(self, layers: list, x: np.ndarray, ws: _Workspace) -> np.ndarray:
        a = x
        last = len(layers) - 1
        for i, (w, b) in enumerate(layers):
            z = ws.z[i]
            np.matmul(a, w, out=z)
            z += b
            if i < last:
                np.maximum(z, 0.0, out=z)
            a = z
        return a

    def loss_and_grad(self, params: np.ndarray, batch: tuple[np.ndarray, np.ndarray], grad: np.ndarray) -> float:
        x, t = batch
        ws = self._workspace(len(x))
        layers = self._layers(params)
        z = self._forward(layers, x, ws)
        loss = self.head.loss_and_dlogits(z, t, ws.col, ws.out)
        grad_layers = self._layers(grad)
        dz = z
        for i in range(len(layers) - 1, -1, -1):
            a_in = x if i == 0 else ws.z[i - 1]
            gw, gb = grad_layers[i]
            np.matmul(a_in.T, dz, out=gw)
            np.sum(dz, axis=0, out=gb)
            if i > 0:
                da = ws.dz[i - 1]
                np.matmul(dz, layers[i][0].T, out=da)
                np.greater(a_in, 0.0, out=ws.mask[i - 1], casting="unsafe")
                da *= ws.mask[i - 1]
                dz = da
        l2 = self.options.l2
        if l2:
            weights = params[: self.n_weights]
            loss += 0.5 * l2 * float(np.dot(weights, weights))
            np.multiply(weights, l2, out=self._decay)
            grad[: self.n_weights] += self._decay
        return loss

    def evaluate(self, params: np.ndarray) -> dict[str, float]:
        x, t = self.data.x_val, self._val_targets
        ws = self._workspace(len(x))
        z = self._forward(self._layers(params), x, ws)
        accuracy = float(np.mean(self.head.predict(z) == self.data.y_val))
        loss = self.head.loss_and_dlogits(z, t, ws.col, ws.out)
        return {"val_loss": loss, "val_accuracy": accuracy}
