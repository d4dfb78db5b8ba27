"""Data sets that scikit-learn ships (no download), standardised and split per seed."""

from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sklearn.datasets import load_breast_cancer, load_digits, make_classification
from sklearn.model_selection import train_test_split

DatasetName = Literal["breast_cancer", "digits", "synthetic"]


class DataOptions(BaseModel):
    """Options shared by the data tasks."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    dataset: DatasetName = "digits"
    val_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    split_seed: int = Field(0, ge=0, description="fixes the train/validation split")
    l2: float = Field(0.0, ge=0.0, description="L2 penalty 1/2 l2 |W|^2 on weights (not biases)")
    dtype: Literal["float64", "float32"] = "float64"
    n_samples: int = Field(10_000, ge=20, le=10_000_000, description="synthetic data set only")
    n_features: int = Field(100, ge=2, le=100_000, description="synthetic data set only")
    n_classes: int = Field(10, ge=2, le=1000, description="synthetic data set only")

    @model_validator(mode="after")
    def _synthetic_fits(self) -> "DataOptions":
        informative = _informative(self.n_features)
        if self.dataset == "synthetic" and self.n_classes > 2**informative:
            raise ValueError(
                f"n_classes={self.n_classes} is too many for n_features={self.n_features}; "
                f"allowed: at most {2**informative}"
            )
        return self


def _informative(n_features: int) -> int:
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
            random_state=0,
        )
    return x.astype(np.float64), y.astype(np.int64)


def load_dataset(options: DataOptions) -> Dataset:
    """Split stratified by ``split_seed``, then standardise with the training statistics."""
    x, y = _raw(options.dataset, options.n_samples, options.n_features, options.n_classes)
    x_tr, x_va, y_tr, y_va = train_test_split(
        x, y, test_size=options.val_fraction, random_state=options.split_seed, stratify=y
    )
    mean = x_tr.mean(axis=0)
    std = x_tr.std(axis=0)
    std[std == 0] = 1.0
    dtype = np.dtype(options.dtype)
    x_tr = np.ascontiguousarray((x_tr - mean) / std, dtype=dtype)
    x_va = np.ascontiguousarray((x_va - mean) / std, dtype=dtype)
    return Dataset(x_tr, y_tr, x_va, y_va, int(y.max()) + 1)
