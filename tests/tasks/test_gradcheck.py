"""Every task's analytic gradient agrees with central differences (float64)."""

import pytest

from tuner.gradcheck import gradcheck
from tuner.tasks import TASKS

VARIANTS = [
    *[(name, {}) for name in TASKS],
    ("quadratic", {"rotate": False, "spread": "geometric", "noise": 1.0}),
    ("rosenbrock", {"dim": 9, "a": 10.0}),
    ("saddle", {"dim": 6, "negative_dims": 3}),
    ("logistic", {"l2": 0.1}),
    ("softmax", {"l2": 0.01}),
    ("svm", {"l2": 0.01}),
    ("mlp", {"hidden_sizes": [32, 16], "l2": 1e-3}),
    ("mlp", {"dataset": "synthetic", "n_samples": 500, "n_features": 20, "n_classes": 3, "hidden_sizes": [8]}),
    ("cnn", {"channels": [2, 3], "kernel_size": 5, "pool": "avg", "l2": 0.01}),
    ("cnn", {"channels": [2, 2, 3], "kernel_size": 1, "l2": 0.1}),
    ("autoencoder", {"hidden_sizes": [8, 3, 8], "activation": "tanh", "l2": 0.01}),
    ("autoencoder", {"dataset": "breast_cancer", "hidden_sizes": [6], "activation": "relu"}),
    ("rnn_adding", {"sequence_length": 6, "hidden_size": 5, "n_train": 50, "n_val": 10, "recurrent_scale": 2.0,
                    "l2": 0.1}),
]


@pytest.mark.parametrize(("name", "options"), VARIANTS, ids=lambda v: str(v))
def test_gradient_matches_central_differences(name: str, options: dict) -> None:
    result = gradcheck(name, options)
    assert result.checked == min(result.dim, 1000)
    assert result.relative_error < 1e-6, result


def test_gradcheck_detects_a_wrong_gradient(monkeypatch) -> None:
    from tuner.tasks.synthetic import Rosenbrock

    original = Rosenbrock._loss_and_grad

    def off_by_a_bit(self, params, grad):
        loss = original(self, params, grad)
        grad[0] *= 1.001
        return loss

    monkeypatch.setattr(Rosenbrock, "_loss_and_grad", off_by_a_bit)
    assert not gradcheck("rosenbrock").passed()
