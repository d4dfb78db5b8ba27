"""A vanilla tanh RNN on the adding problem (Hochreiter and Schmidhuber 1997; in the variant of
Le, Jaitly and Hinton 2015 and Arjovsky, Shah and Bengio 2016): the textbook case of vanishing and
exploding gradients.

Each sequence has ``sequence_length`` steps of two inputs: a value ~ U(0, 1) and a marker, 1 at two
steps (one drawn uniformly in the first half, one in the second) and 0 elsewhere. The target is the
sum of the two marked values. Predicting the mean, 1, scores an MSE of 1/6 (the variance of the
sum); a model that solves the task scores near 0.

Model: h_0 = 0, h_t = tanh(W_ih x_t + W_hh h_{t-1} + b), y = w_out h_T + b_out. Loss on a batch:
mean squared error of y + 1/2 l2 |W|^2 over W_ih, W_hh and w_out; gradient by backpropagation
through time. The same model in torch: ``nn.RNN(2, hidden_size, batch_first=True)`` with
``bias_hh_l0`` = 0 (torch's second bias only duplicates the first) and ``nn.Linear(hidden_size, 1)``
on the last state; the blocks of the flat parameters are weight_ih (hidden, 2), weight_hh
(hidden, hidden), out.weight (1, hidden), then bias (hidden,) and out.bias (1,).

Init: torch's U(+-1/sqrt(hidden)) for W_ih, b and the output layer; W_hh = ``recurrent_scale``
times a random orthogonal matrix, so every singular value of W_hh is the scale: the backpropagated
gradient shrinks or grows by up to that factor per step (times tanh' <= 1). Below about 1 the gradient
wrt early states vanishes; above 1 it explodes while the states are in tanh's linear range, and
plain SGD at a learning rate that is fine early diverges later unless the gradient norm is clipped.

Data: ``n_train`` and ``n_val`` sequences generated from ``data_seed`` (the validation set from a
stream of its own); an epoch is one pass over the training sequences in a fresh random order.
"""

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from tuner.tasks.data import MAX_VALUES
from tuner.tasks.layout import Layout, LayoutTask, Shuffled, add_l2

INPUTS = 2
"""A value and a marker per step."""


class AddingOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)
    sequence_length: int = Field(30, ge=2, le=1000, description="steps per sequence")
    n_train: int = Field(5_000, ge=1, le=1_000_000, description="training sequences")
    n_val: int = Field(1_000, ge=1, le=1_000_000, description="validation sequences")
    hidden_size: int = Field(32, ge=1, le=2048)
    recurrent_scale: float = Field(1.2, gt=0.0, le=10.0, description="singular values of the initial W_hh")
    data_seed: int = Field(0, ge=0, description="fixes the generated sequences")
    l2: float = Field(0.0, ge=0.0, description="L2 penalty 1/2 l2 |W|^2 on weights (not biases)")
    dtype: Literal["float64", "float32"] = "float64"

    @model_validator(mode="after")
    def _fits_in_memory(self) -> "AddingOptions":
        """The states of the whole training set (full batch: L-BFGS) or validation set over time, at
        most MAX_VALUES numbers."""
        states = max(self.n_train, self.n_val) * self.sequence_length * self.hidden_size
        if states > MAX_VALUES:
            raise ValueError(
                f"n_train={self.n_train}, n_val={self.n_val} sequences of sequence_length={self.sequence_length} "
                f"with hidden_size={self.hidden_size} need {states:,} hidden states; allowed: at most {MAX_VALUES:,}"
            )
        return self


def adding_problem(n: int, length: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` sequences (n, length, 2) of (value, marker) and their targets (n, 1)."""
    x = np.zeros((n, length, INPUTS))
    x[:, :, 0] = rng.uniform(0.0, 1.0, (n, length))
    half = length // 2
    rows = np.arange(n)
    first = rng.integers(0, half, n)
    second = rng.integers(half, length, n)
    x[rows, first, 1] = 1.0
    x[rows, second, 1] = 1.0
    return x, (x[rows, first, 0] + x[rows, second, 0]).reshape(n, 1)


class _Workspace:
    """Buffers of one batch size, time-major: inputs, states h_1..h_T, tanh', state gradients."""

    def __init__(self, b: int, length: int, hidden: int, dtype: np.dtype) -> None:
        self.x = np.empty((length, b, INPUTS), dtype)
        self.h = np.empty((length, b, hidden), dtype)
        self.deriv = np.empty((length, b, hidden), dtype)
        self.dh = np.empty((length, b, hidden), dtype)  # dL/dh_t, kept for hidden_gradient_norms
        self.da = np.empty((length, b, hidden), dtype)  # dL/d(pre-activation)
        self.step = np.empty((b, hidden), dtype)
        self.y = np.empty((b, 1), dtype)


class AddingRNN(LayoutTask):
    """See the module docstring."""

    name = "rnn_adding"
    metrics = ("val_loss",)

    def __init__(self, options: AddingOptions) -> None:
        self.options = options
        self.dtype = np.dtype(options.dtype)
        n_hidden, length = options.hidden_size, options.sequence_length
        x, y = adding_problem(options.n_train, length, np.random.default_rng([options.data_seed, 0]))
        self.x_val, self.y_val = (a.astype(self.dtype) for a in
                                  adding_problem(options.n_val, length, np.random.default_rng([options.data_seed, 1])))
        self.train = Shuffled(x.astype(self.dtype), y.astype(self.dtype))
        self.layout = Layout(
            [("weight_ih", (n_hidden, INPUTS)), ("weight_hh", (n_hidden, n_hidden)), ("out.weight", (1, n_hidden))],
            [("bias", (n_hidden,)), ("out.bias", (1,))],
        )
        self.dim = self.layout.dim
        self.vectors = self.layout.vectors
        self.matrices = tuple(self.layout.matrix(name) for name in ("weight_ih", "weight_hh", "out.weight"))
        self._workspaces: dict[int, _Workspace] = {}
        self._decay = np.empty(self.layout.n_weights, self.dtype)

    def init_params(self, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        flat = np.empty(self.dim, self.dtype)
        n = self.options.hidden_size
        self.layout.init_uniform(flat, rng, {"weight_ih": n, "bias": n, "out.weight": n, "out.bias": n})
        q, r = np.linalg.qr(rng.standard_normal((n, n)))
        q *= np.sign(np.diag(r))  # Haar-distributed
        self.layout.views(flat)["weight_hh"][...] = self.options.recurrent_scale * q
        return flat

    # model ------------------------------------------------------------------------------
    def _workspace(self, batch: int) -> _Workspace:
        ws = self._workspaces.get(batch)
        if ws is None:
            ws = self._workspaces[batch] = _Workspace(batch, self.options.sequence_length, self.options.hidden_size,
                                                      self.dtype)
        return ws

    def _forward(self, v: dict[str, np.ndarray], x: np.ndarray, t: np.ndarray, ws: _Workspace) -> float:
        """Run the sequences; return the MSE, leaving the residual y - t in ``ws.y``."""
        b = len(x)
        np.copyto(ws.x, x.transpose(1, 0, 2))
        h = ws.h
        np.matmul(ws.x.reshape(-1, INPUTS), v["weight_ih"].T, out=h.reshape(-1, h.shape[2]))
        h += v["bias"]
        w_hh_t = v["weight_hh"].T
        np.tanh(h[0], out=h[0])
        for step in range(1, len(h)):
            np.matmul(h[step - 1], w_hh_t, out=ws.step)
            h[step] += ws.step
            np.tanh(h[step], out=h[step])
        np.matmul(h[-1], v["out.weight"].T, out=ws.y)
        ws.y += v["out.bias"]
        ws.y -= t
        return float(np.vdot(ws.y, ws.y)) / b

    def loss_and_grad(self, params: np.ndarray, batch: tuple[np.ndarray, np.ndarray], grad: np.ndarray) -> float:
        x, t = batch
        b = len(x)
        ws = self._workspace(b)
        v = self.layout.views(params)
        g = self.layout.views(grad)
        loss = self._forward(v, x, t, ws)
        dy = ws.y
        dy *= 2.0 / b
        h, n = ws.h, self.options.hidden_size
        np.matmul(dy.T, h[-1], out=g["out.weight"])
        np.sum(dy, axis=0, out=g["out.bias"])
        np.multiply(h, h, out=ws.deriv)
        np.subtract(1.0, ws.deriv, out=ws.deriv)  # tanh' = 1 - h^2
        dh, da, w_hh = ws.dh, ws.da, v["weight_hh"]
        np.matmul(dy, v["out.weight"], out=dh[-1])
        for step in range(len(h) - 1, 0, -1):  # backpropagation through time
            np.multiply(dh[step], ws.deriv[step], out=da[step])
            np.matmul(da[step], w_hh, out=dh[step - 1])
        np.multiply(dh[0], ws.deriv[0], out=da[0])
        np.matmul(da[1:].reshape(-1, n).T, h[:-1].reshape(-1, n), out=g["weight_hh"])
        np.matmul(da.reshape(-1, n).T, ws.x.reshape(-1, INPUTS), out=g["weight_ih"])
        np.sum(da.reshape(-1, n), axis=0, out=g["bias"])
        return loss + add_l2(params, grad, self.layout.n_weights, self.options.l2, self._decay)

    def hidden_gradient_norms(self, params: np.ndarray, batch: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        """|dL/dh_t| (Frobenius over the batch) for t = 1..T: how much gradient reaches each step."""
        self.loss_and_grad(params, batch, np.empty_like(params))
        dh = self._workspace(len(batch[0])).dh
        return np.sqrt(np.einsum("tbh,tbh->t", dh, dh))

    def evaluate(self, params: np.ndarray) -> dict[str, float]:
        ws = self._workspace(len(self.x_val))
        return {"val_loss": self._forward(self.layout.views(params), self.x_val, self.y_val, ws)}
