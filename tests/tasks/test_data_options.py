"""The data tasks' options refuse exactly what scikit-learn would refuse, with a message naming the fields."""

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from sklearn.datasets import load_breast_cancer, load_digits, make_classification
from sklearn.model_selection import train_test_split

from tuner.tasks.data import CLUSTERS_PER_CLASS, SHIPPED_SIZES, DataOptions, _informative, load_dataset

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def refusal(**options) -> str | None:
    """The validator's message for ``options``, or None when it accepts them."""
    try:
        DataOptions(**options)
    except ValidationError as exc:
        return str(exc)
    return None


def sklearn_refuses(call, *args, **kwargs) -> bool:
    try:
        call(*args, **kwargs)
    except ValueError:
        return True
    return False


SHIPPED = {"breast_cancer": load_breast_cancer, "digits": load_digits}


@pytest.mark.parametrize("dataset", list(SHIPPED))
def test_a_shipped_data_sets_split_is_refused_exactly_when_scikit_learn_refuses_it(dataset) -> None:
    features, labels = SHIPPED[dataset](return_X_y=True)
    assert SHIPPED_SIZES[dataset] == (len(labels), features.shape[1], len(np.unique(labels)))
    samples, _, classes = SHIPPED_SIZES[dataset]
    edges = [k / samples for k in (classes - 1, classes, samples - classes, samples - classes + 1)]
    for val_fraction in [0.001, 0.2, 0.999, *edges, *(np.nextafter(e, 0) for e in edges),
                         *(np.nextafter(e, 1) for e in edges)]:
        refused = sklearn_refuses(train_test_split, labels, test_size=float(val_fraction), stratify=labels,
                                  random_state=0)
        assert (refusal(dataset=dataset, val_fraction=float(val_fraction)) is not None) == refused, val_fraction


@FAST
@given(n_features=st.integers(2, 24), n_classes=st.integers(2, 1000))
def test_n_classes_is_refused_exactly_when_make_classification_refuses_it(n_features, n_classes) -> None:
    samples = 2 * n_classes + 20  # enough for the split: only the n_classes rule is in play
    message = refusal(dataset="synthetic", n_features=n_features, n_classes=n_classes, n_samples=samples,
                      val_fraction=0.5)
    refused = sklearn_refuses(make_classification, n_samples=samples, n_features=n_features,
                              n_informative=_informative(n_features), n_redundant=0, n_classes=n_classes,
                              n_clusters_per_class=CLUSTERS_PER_CLASS, random_state=0)
    assert (message is not None) == refused
    if refused:
        most = 2 ** _informative(n_features) // CLUSTERS_PER_CLASS
        assert f"n_classes={n_classes} is too many for n_features={n_features}; allowed: at most {most}" in message


@FAST
@given(samples=st.integers(20, 3000), classes=st.integers(2, 40), val_fraction=st.floats(0.001, 0.999))
def test_the_split_is_refused_exactly_when_a_stratified_split_would_fail(samples, classes, val_fraction) -> None:
    """The oracle: scikit-learn's stratified split of ``samples`` labels spread evenly over ``classes``."""
    labels = np.arange(samples) % classes
    refused = sklearn_refuses(train_test_split, labels, test_size=val_fraction, stratify=labels, random_state=0)
    message = refusal(dataset="synthetic", n_features=64, n_classes=classes, n_samples=samples,  # 64: any n_classes
                      val_fraction=val_fraction)
    assert (message is not None) == refused
    if refused:
        validation = math.ceil(val_fraction * samples)
        assert (f"val_fraction={val_fraction} of n_samples={samples} leaves {samples - validation} training and "
                f"{validation} validation samples; allowed: at least {classes} on each side") in message


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n_features=st.integers(2, 12), n_classes=st.integers(2, 40), n_samples=st.integers(20, 300),
       val_fraction=st.floats(0.01, 0.99))
def test_accepted_synthetic_options_build_the_data_set(n_features, n_classes, n_samples, val_fraction) -> None:
    """Label noise (make_classification's flip_y) can leave a small data set's class with one sample:
    it is then split at random instead of stratified, never refused late."""
    options = {"dataset": "synthetic", "n_features": n_features, "n_classes": n_classes, "n_samples": n_samples,
               "val_fraction": val_fraction}
    if refusal(**options) is not None:
        return
    data = load_dataset(DataOptions(**options))
    assert len(data.y_train) + len(data.y_val) == n_samples
    assert len(data.y_val) == math.ceil(val_fraction * n_samples) and data.n_classes <= n_classes


def test_a_class_left_with_one_sample_by_label_noise_is_split_at_random() -> None:
    options = DataOptions(dataset="synthetic", n_samples=21, n_features=10, n_classes=9, val_fraction=0.5)
    _, counts = np.unique(make_classification(n_samples=21, n_features=10, n_informative=5, n_redundant=0,
                                              n_classes=9, random_state=0)[1], return_counts=True)
    assert counts.min() == 1  # what makes a stratified split fail
    data = load_dataset(options)
    assert (len(data.y_train), len(data.y_val)) == (10, 11)
