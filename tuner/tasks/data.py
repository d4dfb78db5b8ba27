"""Data sets that scikit-learn ships (no download), standardised and split per seed. scikit-learn
is imported when a data set is built, not with the options: reading commands do not pay for it."""

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

DatasetName = Literal["breast_cancer", "digits", "synthetic"]
SHIPPED_SIZES = {"breast_cancer": (569, 30, 2), "digits": (1797, 64, 10)}
"""Samples, features and classes of the data sets scikit-learn ships (tests/tasks check them against it)."""
MAX_VALUES = 20_000_000
"""The most numbers a data task may hold in one array (160 MB in float64): its data set, a layer's
weights, a layer's activations over the data; checked with the study file, not by a worker's
MemoryError."""


def check_dense_layers(hidden_sizes: tuple[int, ...], sizes: tuple[int, ...], samples: int) -> None:
    """Fully connected layers ``sizes`` (inputs, *hidden_sizes, outputs) on ``samples`` examples:
    each hidden layer in [1, 100000], and neither the weights of all layers nor a hidden layer's
    activations over the data set more than MAX_VALUES numbers; ValueError naming hidden_sizes."""
    if any(h < 1 or h > 100_000 for h in hidden_sizes):
        raise ValueError(f"hidden_sizes={list(hidden_sizes)}: each must be in [1, 100000]")
    weights = sum(a * b for a, b in zip(sizes, sizes[1:], strict=False))
    activations = samples * max(hidden_sizes)
    if max(weights, activations) > MAX_VALUES:
        what = "weights" if weights > MAX_VALUES else "activations in one layer"
        raise ValueError(
            f"hidden_sizes={list(hidden_sizes)} on {samples} samples x {sizes[0]} features needs "
            f"{max(weights, activations):,} {what}; allowed: at most {MAX_VALUES:,}"
        )
CLUSTERS_PER_CLASS = 2
"""make_classification's clusters per class of the synthetic data set (its default)."""


class DataOptions(BaseModel):
    """Options shared by the data tasks."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)
    dataset: DatasetName = "digits"
    val_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    split_seed: int = Field(0, ge=0, description="fixes the train/validation split")
    l2: float = Field(0.0, ge=0.0, description="L2 penalty 1/2 l2 |W|^2 on weights (not biases)")
    dtype: Literal["float64", "float32"] = "float64"
    n_samples: int = Field(10_000, ge=20, le=10_000_000, description="synthetic data set only")
    n_features: int = Field(100, ge=2, le=100_000, description="synthetic data set only")
    n_classes: int = Field(10, ge=2, le=1000, description="synthetic data set only")

    @model_validator(mode="after")
    def _fits(self) -> "DataOptions":
        """scikit-learn's own rules, checked with the study file instead of in a worker:
        make_classification needs ``n_classes * CLUSTERS_PER_CLASS <= 2**n_informative``
        (``_informative``), and the stratified split needs each side, of ``ceil(val_fraction *
        samples)`` and the rest, to hold at least one sample per class."""
        if self.dataset == "synthetic":
            informative = _informative(self.n_features)
            most = 2**informative // CLUSTERS_PER_CLASS
            if self.n_classes > most:
                raise ValueError(
                    f"n_classes={self.n_classes} is too many for n_features={self.n_features}; allowed: at most "
                    f"{most} (n_classes * {CLUSTERS_PER_CLASS} clusters per class <= 2**n_informative = "
                    f"2**{informative})"
                )
            if self.n_samples * self.n_features > MAX_VALUES:
                raise ValueError(
                    f"n_samples={self.n_samples} x n_features={self.n_features} is too large a data set; allowed: "
                    f"at most {MAX_VALUES:,} values"
                )
            given = f"n_samples={self.n_samples}"
        else:
            given = f"dataset={self.dataset!r} ({SHIPPED_SIZES[self.dataset][0]} samples)"
        samples, _, classes = self.shape
        validation = math.ceil(self.val_fraction * samples)
        if min(validation, samples - validation) < classes:
            raise ValueError(
                f"val_fraction={self.val_fraction} of {given} leaves {samples - validation} training and {validation} "
                f"validation samples; allowed: at least {classes} on each side (one per class)"
            )
        return self


    @property
    def shape(self) -> tuple[int, int, int]:
        """Samples, features and classes of the data set these options load."""
        if self.dataset == "synthetic":
            return self.n_samples, self.n_features, self.n_classes
        return SHIPPED_SIZES[self.dataset]


def _informative(n_features: int) -> int:
    """make_classification's informative features of the synthetic data set."""
    return max(2, n_features // 2)


@dataclass(frozen=True)
class Dataset:
    """Standardised features (train mean and std) and integer labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    n_classes: int


@lru_cache(maxsize=8)
def _raw(name: str, n_samples: int, n_features: int, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_breast_cancer, load_digits, make_classification

    if name == "breast_cancer":
        x, y = load_breast_cancer(return_X_y=True)
    elif name == "digits":
        x, y = load_digits(return_X_y=True)
    else:
        x, y = make_classification(
            n_samples=n_samples,
            n_features=n_features,
            n_informative=_informative(n_features),
            n_redundant=0,
            n_classes=n_classes,
            n_clusters_per_class=CLUSTERS_PER_CLASS,
            random_state=0,
        )
    return x.astype(np.float64), y.astype(np.int64)


def load_dataset(options: DataOptions) -> Dataset:
    """Split by ``split_seed``, stratified when every class has two samples or more (the synthetic
    data set's label noise can leave a class of a small one with one: it is split at random),
    then standardise with the training statistics."""
    from sklearn.model_selection import train_test_split

    x, y = _raw(options.dataset, options.n_samples, options.n_features, options.n_classes)
    stratify = y if np.unique(y, return_counts=True)[1].min() >= 2 else None
    x_tr, x_va, y_tr, y_va = train_test_split(
        x, y, test_size=options.val_fraction, random_state=options.split_seed, stratify=stratify
    )
    mean = x_tr.mean(axis=0)
    std = x_tr.std(axis=0)
    std[std == 0] = 1.0
    dtype = np.dtype(options.dtype)
    x_tr = np.ascontiguousarray((x_tr - mean) / std, dtype=dtype)
    x_va = np.ascontiguousarray((x_va - mean) / std, dtype=dtype)
    return Dataset(x_tr, y_tr, x_va, y_va, int(y.max()) + 1)
