"""A small convolutional network on the 8x8 digits.

Each entry of ``channels`` is a block: convolution with ``kernel_size`` x ``kernel_size`` kernels,
stride 1 and "same" zero padding (k // 2), plus bias; ReLU; 2 x 2 pooling (max or average),
which halves the side: 8 -> 4 -> 2 -> 1, so at most three blocks. A linear softmax head
(``heads.CrossEntropy``) reads the last block's output flattened in torch's (channel, row, column)
order. Loss on a batch: mean cross-entropy + 1/2 l2 |W|^2 over the kernels and the head's weight.

The same network in torch: ``Sequential(Conv2d(1, c1, k, padding=k // 2), ReLU(), MaxPool2d(2), ...,
Flatten(), Linear(c_last * s * s, 10))``; each block of the flat parameters is the torch parameter of
the same name and shape (conv{i}.weight (out, in, k, k), head.weight (10, features), then the
biases), and the init is torch's default, U(+-1/sqrt(fan_in)). Max pooling passes the gradient to
the first maximum of each window, as torch does.

Convolution is im2col: the kernel, viewed as (out, in * k * k) with columns ordered (in, di, dj) as
torch flattens it, is the Matrix Muon orthogonalises (as Keller Jordan's Muon flattens conv
kernels), and the convolution is one product of it with a column matrix (in * k * k, cells).
Activations are laid out (channel, row, column, image) in zero-padded buffers (``_Grid``), so that
each kernel offset reads one contiguous shifted slice: im2col is k * k block copies, the input
gradient's col2im k * k block additions, and pooling runs over the batch as its inner loop.
Every buffer lives in a per-batch-size workspace allocated once.
"""

from typing import Literal

import numpy as np
from pydantic import Field, StrictInt, model_validator

from tuner.tasks.data import MAX_VALUES, DataOptions, load_dataset
from tuner.tasks.heads import CrossEntropy
from tuner.tasks.layout import Layout, LayoutTask, Shuffled, add_l2

SIDE = 8
"""The digits are 8 x 8 images (scikit-learn's load_digits)."""
MAX_CHANNELS = 256


class CNNOptions(DataOptions):
    dataset: Literal["digits"] = "digits"
    channels: tuple[StrictInt, ...] = Field((8, 16), min_length=1, max_length=3, strict=False,
                                            description="output channels of each conv block (8 -> 4 -> 2 -> 1 pixels)")
    kernel_size: int = Field(3, ge=1, le=7, description="odd: 1, 3, 5 or 7 ('same' padding k // 2)")
    pool: Literal["max", "avg"] = "max"

    @model_validator(mode="after")
    def _fits(self) -> "CNNOptions":
        if any(c < 1 or c > MAX_CHANNELS for c in self.channels):
            raise ValueError(f"channels={list(self.channels)}: each must be in [1, {MAX_CHANNELS}]")
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size={self.kernel_size} is even; allowed: 1, 3, 5 or 7")
        samples = self.shape[0]
        k2 = self.kernel_size**2
        largest = 0
        for index, (c_in, c_out) in enumerate(zip((1, *self.channels), self.channels, strict=False)):
            side = SIDE >> index
            pixels = side * (side + self.kernel_size // 2)  # the cells of a _Grid
            largest = max(largest, samples * pixels * c_in * k2, samples * pixels * c_out, c_out * c_in * k2)
        if largest > MAX_VALUES:
            raise ValueError(
                f"channels={list(self.channels)} with kernel_size={self.kernel_size} on {samples} images needs "
                f"{largest:,} values in one layer's columns, activations or kernel; allowed: at most {MAX_VALUES:,}"
            )
        return self


class _Grid:
    """Where a block's b images of side s lie in one flat zero-padded buffer per channel, the batch
    innermost: pixel (h, w) of image n at ``(margin + h * width + w) * b + n``.

    Pixel rows are ``width = s + p`` long (p = k // 2: the zero columns after a row are also the
    left padding of the next one), and ``margin = p * width + p`` zero pixels before and after cover
    the top and bottom padding. The input of output cell (h, w) at kernel offset (di, dj) (both in
    [-p, p]) is then pixel cell + di * width + dj, a padding zero whenever it falls outside the
    image, so each offset reads one contiguous slice of ``cells * b`` values. The convolution
    computes the s rows of ``width`` cells each (a waste of (s + p) / s: 1.125 at 8 x 8 with k = 3);
    the pooling reads only the s x s images, with the batch as its contiguous inner loop."""

    def __init__(self, b: int, side: int, k: int) -> None:
        self.b, self.side, p = b, side, k // 2
        self.width = side + p
        self.margin = p * self.width + p
        self.cells = side * self.width * b  # values per channel of a block's output
        self.length = (side * self.width + 2 * self.margin) * b
        self.shifts = [(di + p, dj + p, (self.margin + di * self.width + dj) * b)
                       for di in range(-p, p + 1) for dj in range(-p, p + 1)]

    def images(self, flat: np.ndarray) -> np.ndarray:
        """The (channels, side, side, b) images inside a padded buffer (channels, length) or an
        output (channels, cells)."""
        start = self.margin * self.b if flat.shape[1] == self.length else 0
        grid = flat[:, start : start + self.cells].reshape(len(flat), self.side, self.width, self.b)
        return grid[:, :, : self.side, :]


class _Workspace:
    """Buffers of one batch size: per block its padded input, columns, activations and their
    gradients; the head's features and logits."""

    def __init__(self, b: int, task: "CNNTask") -> None:
        dtype, k = task.dtype, task.k
        self.grids = [_Grid(b, s, k) for _, _, s in task.blocks]
        self.pad, self.cols, self.z, self.dz, self.dcols, self.dpad, self.free = ([] for _ in range(7))
        for (c_in, c_out, s), grid in zip(task.blocks, self.grids, strict=True):
            self.pad.append(np.zeros((c_in, grid.length), dtype))
            self.dpad.append(np.zeros((c_in, grid.length), dtype))
            self.cols.append(np.empty((c_in, k, k, grid.cells), dtype))
            self.dcols.append(np.empty((c_in, k, k, grid.cells), dtype))
            self.z.append(np.empty((c_out, grid.cells), dtype))
            self.dz.append(np.zeros((c_out, grid.cells), dtype))  # only the images' cells are ever written
            self.free.append(np.empty((c_out, s // 2, s // 2, b), dtype))
        c, s = task.blocks[-1][1], task.blocks[-1][2] // 2
        self.pooled = np.empty((c, s, s, b), dtype)
        self.inputs = [grid.images(pad) for grid, pad in zip(self.grids, self.pad, strict=True)]
        self.pool_out = [*self.inputs[1:], self.pooled]  # a block pools into the next one's padded input
        self.dinputs = [grid.images(dpad) for grid, dpad in zip(self.grids, self.dpad, strict=True)]
        self.features = np.empty((b, c, s, s), dtype)
        self.dfeatures = np.empty((b, c * s * s), dtype)
        self.logits = np.empty((b, task.n_classes), dtype)
        self.scratch = np.empty((b, task.n_classes), dtype)
        self.col = np.empty((b, 1), dtype)


QUARTERS = ((0, 0), (0, 1), (1, 0), (1, 1))
"""The cells of a 2 x 2 pooling window in row-major order (torch's MaxPool2d picks the first maximum)."""


def _quarters(images: np.ndarray) -> list[np.ndarray]:
    """The four (channels, side/2, side/2, b) views of ``images`` (channels, side, side, b) that 2 x 2
    pooling combines."""
    return [images[:, r::2, c::2, :] for r, c in QUARTERS]


class CNNTask(LayoutTask):
    """See the module docstring."""

    name = "cnn"
    metrics = ("val_loss", "val_accuracy")

    def __init__(self, options: CNNOptions) -> None:
        self.options = options
        self.dtype = np.dtype(options.dtype)
        self.data = data = load_dataset(options)
        self.n_classes = data.n_classes
        self.k = k = options.kernel_size
        channels = (1, *options.channels)
        pairs = zip(channels, channels[1:], strict=False)
        self.blocks = [(c_in, c_out, SIDE >> i) for i, (c_in, c_out) in enumerate(pairs)]
        """(in channels, out channels, side of its input) of each block."""
        last = SIDE >> len(options.channels)
        self.n_features = channels[-1] * last * last
        self.layout = Layout(
            [*((f"conv{i}.weight", (c_out, c_in, k, k)) for i, (c_in, c_out, _) in enumerate(self.blocks)),
             ("head.weight", (self.n_classes, self.n_features))],
            [*((f"conv{i}.bias", (c_out,)) for i, (_, c_out, _) in enumerate(self.blocks)),
             ("head.bias", (self.n_classes,))],
        )
        self.dim = self.layout.dim
        self.vectors = self.layout.vectors
        self.matrices = tuple(self.layout.matrix(f"conv{i}.weight") for i in range(len(self.blocks))) + (
            self.layout.matrix("head.weight"),)
        self.fan_in = {}
        for i, (c_in, _, _) in enumerate(self.blocks):
            self.fan_in[f"conv{i}.weight"] = self.fan_in[f"conv{i}.bias"] = c_in * k * k
        self.fan_in["head.weight"] = self.fan_in["head.bias"] = self.n_features
        self.train = Shuffled(data.x_train, CrossEntropy.encode(data.y_train, data.n_classes, self.dtype))
        self._val_targets = CrossEntropy.encode(data.y_val, data.n_classes, self.dtype)
        self._workspaces: dict[int, _Workspace] = {}
        self._decay = np.empty(self.layout.n_weights, self.dtype)

    # model ------------------------------------------------------------------------------
    def _workspace(self, batch: int) -> _Workspace:
        ws = self._workspaces.get(batch)
        if ws is None:
            ws = self._workspaces[batch] = _Workspace(batch, self)
        return ws

    def _forward(self, v: dict[str, np.ndarray], x: np.ndarray, ws: _Workspace) -> np.ndarray:
        """Logits of images ``x`` (b, 64) into ``ws.logits``."""
        b = len(x)
        np.copyto(ws.inputs[0][0], x.reshape(b, SIDE, SIDE).transpose(1, 2, 0))
        for i, (_, c_out, _) in enumerate(self.blocks):
            grid, pad, cols, z = ws.grids[i], ws.pad[i], ws.cols[i], ws.z[i]
            for di, dj, at in grid.shifts:  # im2col
                cols[:, di, dj, :] = pad[:, at : at + grid.cells]
            np.matmul(v[f"conv{i}.weight"].reshape(c_out, -1), cols.reshape(-1, grid.cells), out=z)
            z += v[f"conv{i}.bias"][:, None]
            np.maximum(z, 0.0, out=z)
            quarters, out = _quarters(grid.images(z)), ws.pool_out[i]
            if self.options.pool == "max":
                np.maximum(quarters[0], quarters[1], out=out)
                np.maximum(out, quarters[2], out=out)
                np.maximum(out, quarters[3], out=out)
            else:
                np.add(quarters[0], quarters[1], out=out)
                out += quarters[2]
                out += quarters[3]
                out *= 0.25
        np.copyto(ws.features, ws.pooled.transpose(3, 0, 1, 2))  # torch's (batch, channel, row, column)
        np.matmul(ws.features.reshape(b, -1), v["head.weight"].T, out=ws.logits)
        ws.logits += v["head.bias"]
        return ws.logits

    def loss_and_grad(self, params: np.ndarray, batch: tuple[np.ndarray, np.ndarray], grad: np.ndarray) -> float:
        x, t = batch
        b = len(x)
        ws = self._workspace(b)
        v = self.layout.views(params)
        g = self.layout.views(grad)
        logits = self._forward(v, x, ws)
        loss = CrossEntropy.loss_and_dlogits(logits, t, ws.col, ws.scratch)  # logits := dL/dlogits
        np.matmul(logits.T, ws.features.reshape(b, -1), out=g["head.weight"])
        np.sum(logits, axis=0, out=g["head.bias"])
        np.matmul(logits, v["head.weight"], out=ws.dfeatures)
        dpooled = ws.dfeatures.reshape(ws.features.shape).transpose(1, 2, 3, 0)
        for i in range(len(self.blocks) - 1, -1, -1):
            c_out = self.blocks[i][1]
            grid, z, dz = ws.grids[i], ws.z[i], ws.dz[i]
            dquarters = _quarters(grid.images(dz))  # dz stays 0 outside the images
            if self.options.pool == "max":
                # the gradient goes to the window's first maximum (torch's choice: a window of equal
                # values, e.g. a bias over dead inputs, passes it on once), and only where the maximum
                # is positive (ReLU)
                pooled, free = ws.pool_out[i], ws.free[i]
                np.greater(pooled, 0.0, out=free, casting="unsafe")
                free *= dpooled  # the gradient not yet handed to a cell of its window
                for zq, dq in zip(_quarters(grid.images(z)), dquarters, strict=True):
                    np.equal(zq, pooled, out=dq, casting="unsafe")
                    dq *= free
                    free -= dq
            else:
                for dq in dquarters:
                    np.multiply(dpooled, 0.25, out=dq)
                np.greater(z, 0.0, out=z, casting="unsafe")  # z is not needed any more: the ReLU mask
                dz *= z
            cols = ws.cols[i].reshape(-1, grid.cells)
            np.matmul(dz, cols.T, out=g[f"conv{i}.weight"].reshape(c_out, -1))
            np.sum(dz, axis=1, out=g[f"conv{i}.bias"])
            if i > 0:
                dcols, dpad = ws.dcols[i], ws.dpad[i]
                np.matmul(v[f"conv{i}.weight"].reshape(c_out, -1).T, dz, out=dcols.reshape(-1, grid.cells))
                dpad.fill(0.0)
                for di, dj, at in grid.shifts:  # col2im
                    dpad[:, at : at + grid.cells] += dcols[:, di, dj, :]
                dpooled = ws.dinputs[i]
        return loss + add_l2(params, grad, self.layout.n_weights, self.options.l2, self._decay)

    def evaluate(self, params: np.ndarray) -> dict[str, float]:
        x, t = self.data.x_val, self._val_targets
        ws = self._workspace(len(x))
        logits = self._forward(self.layout.views(params), x, ws)
        accuracy = float(np.mean(CrossEntropy.predict(logits) == self.data.y_val))
        loss = CrossEntropy.loss_and_dlogits(logits, t, ws.col, ws.scratch)
        return {"val_loss": loss, "val_accuracy": accuracy}
