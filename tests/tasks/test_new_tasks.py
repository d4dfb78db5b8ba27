"""The cnn, autoencoder and rnn_adding tasks: torch's autograd as the oracle of loss and gradient
(float64), options, layout, training, determinism, and the RNN's vanishing and exploding gradients."""

import math

import numpy as np
import pytest

from tests.conftest import optional_torch
from tuner import ConfigError
from tuner.optim import make_optimizer
from tuner.schedules import make_schedule
from tuner.tasks import is_synthetic, make_task
from tuner.train import train

NEW = ("cnn", "autoencoder", "rnn_adding")
SMALL_RNN = {"sequence_length": 10, "n_train": 2000, "n_val": 500}


def _batch(task, size: int = 16, seed: int = 0):
    return next(task.batches(size, np.random.default_rng(seed)))


def _torch_loss_and_grads(torch, task, params: np.ndarray, batch) -> tuple[float, dict[str, np.ndarray]]:
    """The task's model written with torch's modules and functions, on a copy of ``params``."""
    F = torch.nn.functional
    leaves = {name: torch.tensor(view.copy(), requires_grad=True) for name, view in task.layout.views(params).items()}
    if task.name == "cnn":
        x, t = (torch.tensor(a) for a in batch)
        a = x.reshape(-1, 1, 8, 8)
        for i in range(len(task.blocks)):
            a = F.relu(F.conv2d(a, leaves[f"conv{i}.weight"], leaves[f"conv{i}.bias"], padding=task.k // 2))
            a = F.max_pool2d(a, 2) if task.options.pool == "max" else F.avg_pool2d(a, 2)
        logits = F.linear(a.flatten(1), leaves["head.weight"], leaves["head.bias"])
        loss = F.cross_entropy(logits, t.argmax(1))
    elif task.name == "autoencoder":
        (x,) = (torch.tensor(a) for a in batch)
        act = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": F.relu}[task.options.activation]
        a, last = x, len(task.sizes) - 2
        for i in range(last + 1):
            a = F.linear(a, leaves[f"layer{i}.weight"], leaves[f"layer{i}.bias"])
            a = act(a) if i < last else a
        loss = F.mse_loss(a, x)
    else:
        x, t = (torch.tensor(a) for a in batch)
        rnn = torch.nn.RNN(2, task.options.hidden_size, batch_first=True)  # its second bias, 0, is redundant
        with torch.no_grad():
            for ours, theirs in (("weight_ih", "weight_ih_l0"), ("weight_hh", "weight_hh_l0"), ("bias", "bias_ih_l0")):
                getattr(rnn, theirs).copy_(leaves[ours])
                leaves[ours] = getattr(rnn, theirs)
            rnn.bias_hh_l0.zero_()
        states, _ = rnn(x)
        loss = F.mse_loss(F.linear(states[:, -1], leaves["out.weight"], leaves["out.bias"]), t)
    weights = [leaves[name] for name, (at, _) in task.layout.blocks.items() if at < task.layout.n_weights]
    loss = loss + 0.5 * task.options.l2 * sum((w * w).sum() for w in weights)
    loss.backward()
    return loss.item(), {name: leaf.grad.numpy() for name, leaf in leaves.items()}


TORCH_VARIANTS = [
    ("cnn", {}),
    ("cnn", {"channels": [2, 3], "kernel_size": 1, "l2": 0.1}),  # windows of equal maxima (a bias over dead inputs)
    ("cnn", {"channels": [3, 4, 5], "kernel_size": 5, "pool": "avg", "l2": 0.01}),
    ("cnn", {"channels": [4, 4, 6], "kernel_size": 7}),
    ("autoencoder", {}),
    ("autoencoder", {"activation": "tanh", "l2": 0.01}),
    ("autoencoder", {"activation": "relu", "hidden_sizes": [20, 5, 20], "dataset": "breast_cancer"}),
    ("rnn_adding", {}),
    ("rnn_adding", {"recurrent_scale": 3.0, "hidden_size": 7, "sequence_length": 50, "n_train": 64, "l2": 0.1}),
]


@pytest.mark.parametrize(("name", "options"), TORCH_VARIANTS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(TORCH_VARIANTS)])
def test_loss_and_gradient_match_torch_autograd(name: str, options: dict) -> None:
    torch = optional_torch()
    task = make_task(name, options)
    params = task.init_params(1)
    batch = _batch(task)
    grad = np.empty_like(params)
    loss = task.loss_and_grad(params, batch, grad)
    expected_loss, expected = _torch_loss_and_grads(torch, task, params, batch)
    assert abs(loss - expected_loss) <= 1e-10 * max(1.0, abs(expected_loss))
    ours = task.layout.views(grad)
    scale = max(1.0, max(float(np.abs(g).max()) for g in expected.values()))
    # an exploding recurrence (scale 3 over 50 steps, gradients ~3e3) carries the last-bit differences of
    # torch's and numpy's kernels up by orders of magnitude: 1.6e-10 relative on this machine's AVX-512 BLAS
    tolerance = 1e-9 if options.get("recurrent_scale", 1.0) > 2.0 else 1e-10
    for block, theirs in expected.items():
        assert ours[block].shape == theirs.shape
        assert float(np.abs(ours[block] - theirs).max()) <= tolerance * scale, block


def test_rnn_hidden_state_gradients_match_torch() -> None:
    torch = optional_torch()
    task = make_task("rnn_adding", {"recurrent_scale": 1.5})
    params = task.init_params(0)
    x, t = _batch(task)
    v = {name: torch.tensor(view.copy(), requires_grad=True) for name, view in task.layout.views(params).items()}
    h, states = torch.zeros(len(x), task.options.hidden_size), []
    for step in range(x.shape[1]):
        h = torch.tanh(torch.tensor(x[:, step]) @ v["weight_ih"].T + h @ v["weight_hh"].T + v["bias"])
        h.retain_grad()
        states.append(h)
    ((h @ v["out.weight"].T + v["out.bias"] - torch.tensor(t)) ** 2).mean().backward()
    expected = np.array([s.grad.norm().item() for s in states])
    np.testing.assert_allclose(task.hidden_gradient_norms(params, (x, t)), expected, rtol=1e-10)


@pytest.mark.parametrize("name", NEW)
def test_layout_blocks_and_matrices(name: str) -> None:
    task = make_task(name, {})
    params = task.init_params(0)
    views = task.layout.views(params)
    assert task.dim == params.size == sum(v.size for v in views.values())
    assert np.shares_memory(next(iter(views.values())), params)
    weights = [n for n in task.layout.blocks if task.layout.blocks[n][0] < task.layout.n_weights]
    assert all("weight" in n for n in weights)
    assert [m.offset for m in task.matrices] == [task.layout.blocks[n][0] for n in weights]
    for matrix, block in zip(task.matrices, weights, strict=True):
        torch_shape = views[block].shape  # torch's parameter shape; Muon flattens it to (out, rest)
        assert (matrix.rows, matrix.cols) == (torch_shape[0], math.prod(torch_shape[1:]))
        np.testing.assert_array_equal(matrix.view(params), views[block].reshape(torch_shape[0], -1))


def test_parameter_counts_and_cnn_kernel_matrix() -> None:
    cnn = make_task("cnn", {})
    assert cnn.dim == (8 * 9 + 8) + (16 * 8 * 9 + 16) + (16 * 2 * 2 * 10 + 10) == 1898
    assert [(m.rows, m.cols) for m in cnn.matrices] == [(8, 9), (16, 72), (10, 64)]
    assert make_task("autoencoder", {}).dim == sum(a * b + b for a, b in [(64, 32), (32, 16), (16, 8), (8, 16),
                                                                         (16, 32), (32, 64)]) == 5544
    assert make_task("rnn_adding", {}).dim == 32 * 2 + 32 * 32 + 32 + 32 + 1 == 1153


@pytest.mark.parametrize("name", NEW)
def test_new_tasks_are_data_tasks_whose_val_loss_is_the_loss_on_the_validation_set(name: str) -> None:
    assert not is_synthetic(name)
    task = make_task(name, {"l2": 0.5})
    assert task.metrics[0] == "val_loss"
    params = task.init_params(0)
    val = {"cnn": lambda: (task.data.x_val, task._val_targets), "autoencoder": lambda: (task.data.x_val,),
           "rnn_adding": lambda: (task.x_val, task.y_val)}[name]()
    plain = make_task(name, {})  # the penalty is part of the training loss, not of the validation loss
    assert task.evaluate(params)["val_loss"] == pytest.approx(plain.loss_and_grad(params, val, np.empty_like(params)),
                                                               rel=1e-12)


@pytest.mark.parametrize("name", NEW)
def test_float32_task_computes_in_float32(name: str) -> None:
    task = make_task(name, {"dtype": "float32", **(SMALL_RNN if name == "rnn_adding" else {})})
    params = task.init_params(0)
    grad = np.empty_like(params)
    loss = task.loss_and_grad(params, _batch(task, 32), grad)
    assert params.dtype == grad.dtype == np.float32 and math.isfinite(loss)
    buffers = [a for value in vars(task._workspace(32)).values() for a in (value if isinstance(value, list) else [value])
               if isinstance(a, np.ndarray)]
    assert {a.dtype for a in buffers} == {np.dtype(np.float32)}


BAD_OPTIONS = [
        ("cnn", {"channels": [0]}, r"task.options: channels=\[0\]: each must be in \[1, 256\]"),
        ("cnn", {"channels": [8, 8, 8, 8]}, r"task.options.channels=\[8, 8, 8, 8\]: .*at most 3 items"),
        ("cnn", {"kernel_size": 4}, r"kernel_size=4 is even; allowed: 1, 3, 5 or 7"),
        ("cnn", {"kernel_size": 9}, r"task.options.kernel_size=9: .*less than or equal to 7"),
        ("cnn", {"dataset": "breast_cancer"}, r"task.options.dataset='breast_cancer': Input should be 'digits'"),
        ("cnn", {"pool": "min"}, r"task.options.pool='min': Input should be 'max' or 'avg'"),
        ("cnn", {"channels": [256, 256, 256], "kernel_size": 7}, r"channels=\[256, 256, 256\] with kernel_size=7 .*at most"),
        ("cnn", {"stride": 2}, r"task.options.stride: unknown field; allowed: .*channels, kernel_size, pool"),
        ("autoencoder", {"activation": "gelu"}, r"task.options.activation='gelu': .*'sigmoid', 'tanh' or 'relu'"),
        ("autoencoder", {"hidden_sizes": []}, r"task.options.hidden_sizes=\[\]: .*at least 1 item"),
        ("autoencoder", {"hidden_sizes": [8, 0]}, r"hidden_sizes=\[8, 0\]: each must be in \[1, 100000\]"),
        ("autoencoder", {"hidden_sizes": [100_000, 100_000]}, r"needs 10,012,800,000 weights; allowed: at most"),
        ("rnn_adding", {"sequence_length": 1}, r"task.options.sequence_length=1: .*greater than or equal to 2"),
        ("rnn_adding", {"sequence_length": 1001}, r"task.options.sequence_length=1001"),
        ("rnn_adding", {"hidden_size": 0}, r"task.options.hidden_size=0"),
        ("rnn_adding", {"recurrent_scale": 0.0}, r"task.options.recurrent_scale=0.0: .*greater than 0"),
        ("rnn_adding", {"n_val": 0}, r"task.options.n_val=0"),
        ("rnn_adding", {"n_train": 1_000_000, "sequence_length": 1000}, r"n_train=1000000.* hidden states; allowed: at most"),
        ("rnn_adding", {"dataset": "digits"}, r"task.options.dataset: unknown field; allowed: sequence_length"),
        ("rnn_adding", {"hidden_size": 32.0}, r"task.options.hidden_size=32.0"),
        ("rnn_adding", {"dtype": "float16"}, r"task.options.dtype='float16'"),
]


@pytest.mark.parametrize(("name", "options", "message"), BAD_OPTIONS,
                         ids=[f"{name}-{'-'.join(options)}-{i}" for i, (name, options, _) in enumerate(BAD_OPTIONS)])
def test_bad_options_are_rejected_naming_the_field(name: str, options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_task(name, options)


@pytest.mark.parametrize(
    ("name", "options", "lr", "epochs", "below"),
    [
        ("cnn", {}, 1e-2, 2, 0.5),  # from log(10) = 2.3
        ("autoencoder", {}, 1e-2, 3, 0.97),  # from 1.08: the sigmoid autoencoder is slow, as intended
        ("rnn_adding", SMALL_RNN, 1e-2, 4, 0.12),  # from 1.1, below the 1/6 of predicting the mean
    ],
    ids=["cnn", "autoencoder", "rnn_adding"],
)
def test_a_few_epochs_of_adam_lower_the_validation_loss(name, options, lr, epochs, below) -> None:
    task = make_task(name, options)
    start = task.evaluate(task.init_params(0))["val_loss"]
    run = train(task, make_optimizer("adam"), make_schedule("constant", lr), epochs=epochs, batch_size=32, seed=0)
    assert not run.diverged
    assert run.evals["val_loss"][-1] < min(below, start)
    if name == "cnn":
        assert run.evals["val_accuracy"][-1] > 0.85


@pytest.mark.parametrize("name", NEW)
def test_lbfgs_runs_on_the_full_batch(name: str) -> None:
    task = make_task(name, SMALL_RNN if name == "rnn_adding" else {})
    run = train(task, make_optimizer("lbfgs"), None, epochs=3)
    assert run.evals["val_loss"][-1] < task.evaluate(task.init_params(0))["val_loss"]


def test_adding_problem_data_is_seeded_and_well_formed() -> None:
    a, b = make_task("rnn_adding", {}), make_task("rnn_adding", {})
    c = make_task("rnn_adding", {"data_seed": 1})
    x, y = a.full_batch()
    np.testing.assert_array_equal(x, b.full_batch()[0])
    np.testing.assert_array_equal(a.x_val, b.x_val)
    assert not np.array_equal(x, c.full_batch()[0])
    assert not np.array_equal(x[: len(a.x_val)], a.x_val)  # the validation set is a stream of its own
    assert x.shape == (5000, 30, 2) and a.x_val.shape == (1000, 30, 2)
    markers = x[:, :, 1]
    assert np.all(markers.sum(axis=1) == 2)
    assert np.all(markers[:, :15].sum(axis=1) == 1)  # one in each half
    np.testing.assert_allclose(y[:, 0], (x[:, :, 0] * markers).sum(axis=1))
    assert abs(y.var() - 1 / 6) < 0.01  # predicting the mean scores 1/6


@pytest.mark.parametrize("name", NEW)
def test_init_is_seeded(name: str) -> None:
    task = make_task(name, SMALL_RNN if name == "rnn_adding" else {})
    np.testing.assert_array_equal(task.init_params(3), task.init_params(3))
    assert not np.array_equal(task.init_params(3), task.init_params(4))


def test_recurrent_scale_sets_vanishing_or_exploding_gradients() -> None:
    """|dL/dh_1| / |dL/dh_T| at init grows with the singular values of W_hh: it vanishes below 1 and
    explodes above."""
    ratios = []
    for scale in (0.5, 0.9, 1.2, 1.5, 2.0):
        task = make_task("rnn_adding", {"recurrent_scale": scale, "n_train": 256, "n_val": 1})
        norms = task.hidden_gradient_norms(task.init_params(0), task.full_batch())
        assert norms.shape == (30,)
        ratios.append(norms[0] / norms[-1])
        np.testing.assert_array_equal(np.linalg.svd(task.layout.views(task.init_params(0))["weight_hh"],
                                                    compute_uv=False).round(12), scale)
    assert ratios == sorted(ratios)
    assert ratios[0] < 1e-6 and ratios[1] < 0.1  # vanishing
    assert ratios[3] > 10 and ratios[4] > 100  # exploding


def test_gradient_clipping_rescues_sgd_on_the_adding_problem() -> None:
    """Default options, SGD at lr 0.1: the exploding gradient ends the run within a few steps; with
    clip_grad_norm=1.0 the same run completes and learns."""
    task = make_task("rnn_adding", {})
    runs = {clip: train(task, make_optimizer("sgd", **({"clip_grad_norm": clip} if clip else {})),
                        make_schedule("constant", 0.1), epochs=2, batch_size=32, seed=0)
            for clip in (None, 1.0)}
    assert runs[None].diverged and runs[None].diverged_at < 20
    assert not runs[1.0].diverged and runs[1.0].steps == 2 * task.steps_per_epoch(32)
    assert runs[1.0].evals["val_loss"][-1] < 1 / 6
