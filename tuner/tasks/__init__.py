"""Benchmark tasks and their registry: ``make_task("mlp", {"hidden_sizes": [128]})``."""

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, Field, StrictInt, ValidationError, model_validator

from tuner.errors import ConfigError, from_validation_error, shown, shown_key
from tuner.tasks.autoencoder import AutoencoderOptions, AutoencoderTask
from tuner.tasks.base import Task
from tuner.tasks.cnn import CNNOptions, CNNTask
from tuner.tasks.data import DataOptions, DatasetName, check_dense_layers
from tuner.tasks.heads import CrossEntropy, Logistic, MulticlassHinge
from tuner.tasks.network import NetworkTask
from tuner.tasks.rnn import AddingOptions, AddingRNN
from tuner.tasks.synthetic import (
    Quadratic,
    QuadraticOptions,
    Rosenbrock,
    RosenbrockOptions,
    Saddle,
    SaddleOptions,
)


class LogisticOptions(DataOptions):
    dataset: DatasetName = "breast_cancer"

    @model_validator(mode="after")
    def _binary(self) -> "LogisticOptions":
        if self.dataset == "digits" or (self.dataset == "synthetic" and self.n_classes != 2):
            raise ValueError(
                f"logistic regression needs two classes, dataset={self.dataset!r} has more; "
                "allowed: breast_cancer, or synthetic with n_classes: 2"
            )
        return self


class MLPOptions(DataOptions):
    hidden_sizes: tuple[StrictInt, ...] = Field((128,), min_length=1, max_length=16, strict=False)  # a YAML list

    @model_validator(mode="after")
    def _fits_in_memory(self) -> "MLPOptions":
        """Each layer in [1, 100000] units, and neither the weights of all layers nor a layer's
        activations over the data set more than MAX_VALUES numbers."""
        samples, features, classes = self.shape
        check_dense_layers(self.hidden_sizes, (features, *self.hidden_sizes, classes), samples)
        return self


TaskFactory = Callable[[Any], Task]

TASKS: dict[str, tuple[type[BaseModel], TaskFactory]] = {
    "quadratic": (QuadraticOptions, Quadratic),
    "rosenbrock": (RosenbrockOptions, Rosenbrock),
    "saddle": (SaddleOptions, Saddle),
    "logistic": (LogisticOptions, lambda o: NetworkTask("logistic", o, (), Logistic)),
    "softmax": (DataOptions, lambda o: NetworkTask("softmax", o, (), CrossEntropy)),
    "svm": (DataOptions, lambda o: NetworkTask("svm", o, (), MulticlassHinge)),
    "mlp": (MLPOptions, lambda o: NetworkTask("mlp", o, o.hidden_sizes, CrossEntropy)),
    "cnn": (CNNOptions, CNNTask),
    "autoencoder": (AutoencoderOptions, AutoencoderTask),
    "rnn_adding": (AddingOptions, AddingRNN),
}
"""Task name -> (options model, factory). Data tasks default to digits, logistic to breast_cancer;
rnn_adding generates its sequences (a data task all the same: a train/validation split, epochs)."""


def task_options(name: str, options: dict[str, Any] | None = None) -> BaseModel:
    """Validate ``options`` for task ``name``; ConfigError names each bad field (an unknown one
    with the fields of the task's options model)."""
    if name not in TASKS:
        raise ConfigError(f"task={shown(name)} is unknown; allowed: {', '.join(TASKS)}")
    model, _ = TASKS[name]
    unknown = [key for key in options or {} if key not in model.model_fields]
    if unknown:
        raise ConfigError(f"task.options.{shown_key(unknown[0])}: unknown field; "
                          f"allowed: {', '.join(model.model_fields)}")
    try:
        return model(**(options or {}))
    except ValidationError as exc:
        raise from_validation_error(exc, prefix="task.options") from None


def make_task(name: str, options: dict[str, Any] | None = None) -> Task:
    """Build task ``name`` from validated options."""
    validated = task_options(name, options)
    return TASKS[name][1](validated)


def is_synthetic(name: str) -> bool:
    """Synthetic tasks count their budget in steps; data tasks in epochs."""
    return name in ("quadratic", "rosenbrock", "saddle")


__all__ = ["TASKS", "Task", "is_synthetic", "make_task", "task_options"]
