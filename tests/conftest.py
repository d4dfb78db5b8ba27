import os

import pytest


def optional_torch():
    """torch is an optional test reference: skip without it, except under CI where it is installed."""
    if os.environ.get("CI") == "true":
        import torch
    else:
        torch = pytest.importorskip("torch")
    torch.set_default_dtype(torch.float64)
    return torch
