"""tuner: hyperparameter tuning for gradient-descent optimizers.

``tuner.open_experiment(name, storage=None)`` reads an experiment's results as DataFrames (see
tuner.api); it is imported on first use, so ``import tuner`` stays cheap.
"""

from typing import Any

from tuner.errors import ConfigError, TunerError

__version__ = "0.1.0"
__all__ = ["ConfigError", "StoredExperiment", "TunerError", "__version__", "open_experiment"]
_API = ("StoredExperiment", "open_experiment")


def __getattr__(name: str) -> Any:
    if name in _API:
        from tuner import api

        return getattr(api, name)
    raise AttributeError(f"module 'tuner' has no attribute {name!r}")
