"""Glue for the book's prose: plain values for myst_nb."""

from __future__ import annotations

import ast
import json
import math
from collections.abc import Mapping
from pathlib import Path

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


def below(value: float, bound: float) -> str:
    """``"below 1e-12"`` when ``|value| < bound``, else the value to two significant digits.

    For quantities at the level of rounding noise (a memorised loss, a gradient check's error):
    their digits change with the CPU's vector width, so the book shows the bound, not the noise.
    """
    exponent = math.log10(bound) if bound > 0 else 0.5
    if exponent != round(exponent):
        raise ValueError(f"bound must be a power of ten such as 1e-12, got {bound!r}")
    return f"below 1e{round(exponent)}" if abs(value) < bound else f"{value:.1e}"


def glue(name: str, value, display: bool = False):
    """Glue a value for the book's prose (myst_nb) and tests; return it."""
    from myst_nb import glue as _glue

    value = plain_value(value)
    _glue(name, value, display=display)
    return value


GLUE_MIME = "application/papermill.record/text/plain"


def glued_values(notebook) -> dict:
    """Every value glued in an executed notebook, parsed back from its repr.

    notebook: a file path, or a notebook already read (``nbformat.read``). For a chapter that
    gathers other chapters' committed results (the closing chapter), and for the tests.
    """
    values = {}
    cells = notebook["cells"] if isinstance(notebook, Mapping) else json.loads(Path(notebook).read_text())["cells"]
    for cell in cells:
        for output in cell.get("outputs", []):
            name = output.get("metadata", {}).get("scrapbook", {}).get("name")
            if name is None:
                continue
            text = output.get("data", {}).get(GLUE_MIME) or output.get("data", {}).get("text/plain")
            text = "".join(text) if isinstance(text, list) else text
            try:
                values[name] = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                values[name] = text
    return values


__all__ = ["below", "glue", "glued_values", "plain_value"]
