"""tuner: hyperparameter tuning for gradient-descent optimizers."""

from tuner.errors import ConfigError, TunerError

__version__ = "0.1.0"
__all__ = ["ConfigError", "TunerError", "__version__"]
