"""Feed-forward networks on a data set: linear models and ReLU MLPs over one flat buffer.

The parameter vector holds every weight matrix (row-major, ``(n_in, n_out)``), then every
bias, so the L2 penalty and each optimizer step are single vectorised operations. Layers
are views into it. Activations live in per-batch-size workspaces allocated once.

A population (``loss_and_grad_many``: parameters (K, dim), one shared batch) runs the same code with
a leading population axis: each layer's weights are a (K, n_in, n_out) view into the parameters,
its activations (K, B, n_out), and every product is one ``np.matmul`` over the population: the first
layer's x (B, n_in) against all K weight matrices, then (K, B, n) stacks. numpy hands each member's
product to BLAS with the shapes of the lone run, so a member's loss and gradient are the lone
run's bits (a wide x @ [W_1 ... W_K] would need the K weight matrices copied side by side each step,
which costs more than it saves at these sizes).
"""

from collections.abc import Iterator

import numpy as np

from tuner.tasks.base import PopulationBuffers, Task, row_dots
from tuner.tasks.data import DataOptions, load_dataset
from tuner.tensors import Matrix


class _Workspace:
    """Buffers for one batch size (and population size ``members``, none for a lone run):
    activations, their gradients, ReLU masks, head scratch; for a population also its sums."""

    def __init__(self, batch: int, sizes: list[int], dtype: np.dtype, members: tuple[int, ...] = ()) -> None:
        lead = (*members, batch)
        self.z = [np.empty((*lead, n), dtype) for n in sizes[1:]]
        self.dz = [np.empty((*lead, n), dtype) for n in sizes[1:-1]]
        self.mask = [np.empty((*lead, n), dtype) for n in sizes[1:-1]]
        self.col = np.empty((*lead, 1), dtype)
        self.out = np.empty((*lead, sizes[-1]), dtype)
        if members:
            self.picked = np.empty(members, dtype)
            self.total = np.empty(members, dtype)


class _Decay:
    """A population's L2 terms, whatever the batch size: each member's decay and penalty."""

    def __init__(self, members: int, n_weights: int, dtype: np.dtype) -> None:
        self.decay = np.empty((members, n_weights), dtype)
        self.penalty = np.empty(members)


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
        self._population = PopulationBuffers(
            lambda members, batch: _Workspace(batch, self.sizes, self.dtype, (members,)))
        self._population_decay = PopulationBuffers(lambda members, _: _Decay(members, self.n_weights, self.dtype))
        self._decay = np.empty(self.n_weights, self.dtype)
        self._view_cache: list[tuple[np.ndarray, list]] = []

    # parameters -------------------------------------------------------------------------
    def _layers(self, flat: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """(W, b) views into ``flat`` (dim,), or (K, n_in, n_out) and (K, n_out) views into a
        population (K, dim); remembered for the last two arrays (params and grad)."""
        for index, (seen, layers) in enumerate(self._view_cache):
            if seen is flat:
                if index:
                    self._view_cache.reverse()
                return layers
        layers, w_at, b_at = [], 0, self.n_weights
        lead = flat.shape[:-1]
        for n_in, n_out in self._shapes:
            w = flat[..., w_at : w_at + n_in * n_out].reshape(*lead, n_in, n_out)  # a view: splits the last axis
            layers.append((w, flat[..., b_at : b_at + n_out]))
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
        """The logits of ``x`` into ``ws.z[-1]``: (B, C), or (K, B, C) for population ``layers``."""
        a = x
        last = len(layers) - 1
        for i, (w, b) in enumerate(layers):
            z = ws.z[i]
            np.matmul(a, w, out=z)
            z += b[..., None, :]
            if i < last:
                np.maximum(z, 0.0, out=z)
            a = z
        return a

    def _backward(self, layers: list, grad_layers: list, x: np.ndarray, dz: np.ndarray, ws: _Workspace) -> None:
        """Backpropagate dL/dlogits ``dz`` through the layers of ``_forward``; write the gradient."""
        for i in range(len(layers) - 1, -1, -1):
            a_in = x if i == 0 else ws.z[i - 1]
            gw, gb = grad_layers[i]
            np.matmul(np.swapaxes(a_in, -1, -2), dz, out=gw)
            np.sum(dz, axis=-2, out=gb)
            if i > 0:
                da = ws.dz[i - 1]
                np.matmul(dz, np.swapaxes(layers[i][0], -1, -2), out=da)
                np.greater(a_in, 0.0, out=ws.mask[i - 1], casting="unsafe")
                da *= ws.mask[i - 1]
                dz = da

    def loss_and_grad(self, params: np.ndarray, batch: tuple[np.ndarray, np.ndarray], grad: np.ndarray) -> float:
        x, t = batch
        ws = self._workspace(len(x))
        layers = self._layers(params)
        z = self._forward(layers, x, ws)
        loss = self.head.loss_and_dlogits(z, t, ws.col, ws.out)
        self._backward(layers, self._layers(grad), x, z, ws)
        l2 = self.options.l2
        if l2:
            weights = params[: self.n_weights]
            loss += 0.5 * l2 * float(np.dot(weights, weights))
            np.multiply(weights, l2, out=self._decay)
            grad[: self.n_weights] += self._decay
        return loss

    def member_bytes(self, batch_size: int) -> int:
        """Activations and their gradients over a batch (three arrays per layer), over the
        validation set, and the L2 term's copy of the weights."""
        units = sum(self.sizes[1:])
        values = 3 * batch_size * units + len(self.data.x_val) * units + self.n_weights
        return values * self.dtype.itemsize

    def evaluate(self, params: np.ndarray) -> dict[str, float]:
        x, t = self.data.x_val, self._val_targets
        ws = self._workspace(len(x))
        z = self._forward(self._layers(params), x, ws)
        accuracy = float(np.mean(self.head.predict(z) == self.data.y_val))
        loss = self.head.loss_and_dlogits(z, t, ws.col, ws.out)
        return {"val_loss": loss, "val_accuracy": accuracy}

    # populations ------------------------------------------------------------------------
    def loss_and_grad_many(self, params: np.ndarray, batch: tuple[np.ndarray, np.ndarray], grad: np.ndarray,
                           losses: np.ndarray) -> None:
        x, t = batch
        ws = self._population.get(len(params), len(x))
        layers = self._layers(params)
        z = self._forward(layers, x, ws)
        self.head.loss_and_dlogits_many(z, t, ws.col, ws.out, ws.picked, ws.total, losses)
        self._backward(layers, self._layers(grad), x, z, ws)
        l2 = self.options.l2
        if l2:
            weights = params[:, : self.n_weights]
            terms = self._population_decay.get(len(params), 0)
            losses += np.multiply(row_dots(weights, weights, ws.total), 0.5 * l2, out=terms.penalty, dtype=np.float64)
            np.multiply(weights, l2, out=terms.decay)
            grad[:, : self.n_weights] += terms.decay

    def evaluate_many(self, params: np.ndarray) -> dict[str, np.ndarray]:
        x, t = self.data.x_val, self._val_targets
        ws = self._population.get(len(params), len(x))
        z = self._forward(self._layers(params), x, ws)
        accuracy = np.mean(self.head.predict(z) == self.data.y_val, axis=-1)
        losses = np.empty(len(params))
        self.head.loss_and_dlogits_many(z, t, ws.col, ws.out, ws.picked, ws.total, losses)
        return {"val_loss": losses, "val_accuracy": accuracy}
