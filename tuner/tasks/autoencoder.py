"""A deep fully connected autoencoder: an ill-conditioned problem in the style of DeepOBS and of
the deep autoencoders of Hinton and Salakhutdinov (2006) and Martens (2010), on a data set's
standardised features (digits by default).

Layers ``[features, *hidden_sizes, features]`` (64-32-16-8-16-32-64 on digits) with
``activation`` after every hidden layer and a linear output. Loss on a batch: the mean squared
reconstruction error over every feature of every example (torch's ``MSELoss()``; predicting the
training mean scores about 1 on standardised features) + 1/2 l2 |W|^2 over the weights.

Each weight block is torch's ``nn.Linear.weight`` (out, in) of that layer (``layer{i}.weight``),
the biases follow all weights; the init is torch's default, U(+-1/sqrt(fan_in)).
The labels are not used; the only metric is the validation reconstruction loss.
"""

from typing import Literal

import numpy as np
from pydantic import Field, StrictInt, model_validator

from tuner.tasks.data import DataOptions, check_dense_layers, load_dataset
from tuner.tasks.layout import Layout, LayoutTask, Shuffled, add_l2


class AutoencoderOptions(DataOptions):
    hidden_sizes: tuple[StrictInt, ...] = Field((32, 16, 8, 16, 32), min_length=1, max_length=16, strict=False,
                                                description="hidden layers, code layer included (a YAML list)")
    activation: Literal["sigmoid", "tanh", "relu"] = "sigmoid"

    @model_validator(mode="after")
    def _fits_in_memory(self) -> "AutoencoderOptions":
        samples, features, _ = self.shape
        check_dense_layers(self.hidden_sizes, (features, *self.hidden_sizes, features), samples)
        return self


class _Workspace:
    """Activations of each layer (the last is the reconstruction), their gradients, a derivative buffer."""

    def __init__(self, b: int, sizes: list[int], dtype: np.dtype) -> None:
        self.a = [np.empty((b, n), dtype) for n in sizes[1:]]
        self.da = [np.empty((b, n), dtype) for n in sizes[1:-1]]
        self.deriv = [np.empty((b, n), dtype) for n in sizes[1:-1]]


class AutoencoderTask(LayoutTask):
    """See the module docstring."""

    name = "autoencoder"
    metrics = ("val_loss",)

    def __init__(self, options: AutoencoderOptions) -> None:
        self.options = options
        self.dtype = np.dtype(options.dtype)
        self.data = data = load_dataset(options)
        features = data.x_train.shape[1]
        self.sizes = [features, *options.hidden_sizes, features]
        pairs = list(zip(self.sizes, self.sizes[1:], strict=False))
        self.layout = Layout([(f"layer{i}.weight", (o, n)) for i, (n, o) in enumerate(pairs)],
                             [(f"layer{i}.bias", (o,)) for i, (_, o) in enumerate(pairs)])
        self.dim = self.layout.dim
        self.vectors = self.layout.vectors
        self.matrices = tuple(self.layout.matrix(f"layer{i}.weight") for i in range(len(pairs)))
        self.fan_in = {}
        for i, (n, _) in enumerate(pairs):
            self.fan_in[f"layer{i}.weight"] = self.fan_in[f"layer{i}.bias"] = n
        self.train = Shuffled(data.x_train)
        self._workspaces: dict[int, _Workspace] = {}
        self._decay = np.empty(self.layout.n_weights, self.dtype)

    # model ------------------------------------------------------------------------------
    def _workspace(self, batch: int) -> _Workspace:
        ws = self._workspaces.get(batch)
        if ws is None:
            ws = self._workspaces[batch] = _Workspace(batch, self.sizes, self.dtype)
        return ws

    def _forward(self, v: dict[str, np.ndarray], x: np.ndarray, ws: _Workspace) -> float:
        """Run the layers; return the mean squared error, leaving the residual (output - x) in ``ws.a[-1]``."""
        from scipy.special import expit  # here, not with the registry: reading commands do not import scipy

        a = x
        last = len(ws.a) - 1
        for i, z in enumerate(ws.a):
            np.matmul(a, v[f"layer{i}.weight"].T, out=z)
            z += v[f"layer{i}.bias"]
            if i < last:
                if self.options.activation == "sigmoid":
                    expit(z, out=z)
                elif self.options.activation == "tanh":
                    np.tanh(z, out=z)
                else:
                    np.maximum(z, 0.0, out=z)
            a = z
        residual = ws.a[-1]
        residual -= x
        return float(np.vdot(residual, residual)) / residual.size

    def loss_and_grad(self, params: np.ndarray, batch: tuple[np.ndarray], grad: np.ndarray) -> float:
        (x,) = batch
        ws = self._workspace(len(x))
        v = self.layout.views(params)
        g = self.layout.views(grad)
        loss = self._forward(v, x, ws)
        dz = ws.a[-1]
        dz *= 2.0 / dz.size  # dL/d(output)
        for i in range(len(ws.a) - 1, -1, -1):
            a_in = x if i == 0 else ws.a[i - 1]
            np.matmul(dz.T, a_in, out=g[f"layer{i}.weight"])
            np.sum(dz, axis=0, out=g[f"layer{i}.bias"])
            if i > 0:
                da, deriv = ws.da[i - 1], ws.deriv[i - 1]
                np.matmul(dz, v[f"layer{i}.weight"], out=da)
                if self.options.activation == "sigmoid":  # a (1 - a)
                    np.multiply(a_in, a_in, out=deriv)
                    np.subtract(a_in, deriv, out=deriv)
                elif self.options.activation == "tanh":  # 1 - a^2
                    np.multiply(a_in, a_in, out=deriv)
                    np.subtract(1.0, deriv, out=deriv)
                else:
                    np.greater(a_in, 0.0, out=deriv, casting="unsafe")
                da *= deriv
                dz = da
        return loss + add_l2(params, grad, self.layout.n_weights, self.options.l2, self._decay)

    def evaluate(self, params: np.ndarray) -> dict[str, float]:
        x = self.data.x_val
        return {"val_loss": self._forward(self.layout.views(params), x, self._workspace(len(x)))}
