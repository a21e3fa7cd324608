"""Glue for the book's prose: plain values for myst_nb."""

from __future__ import annotations

import numpy as np
import torch


def plain_value(value):
    """Numpy / torch scalars as python numbers, so glued values read back as literals."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: plain_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(plain_value(v) for v in value)
    return value


def glue(name: str, value, display: bool = False):
    """Glue a value for the book's prose (myst_nb) and tests; return it."""
    from myst_nb import glue as _glue

    value = plain_value(value)
    _glue(name, value, display=display)
    return value


__all__ = ["glue", "plain_value"]
