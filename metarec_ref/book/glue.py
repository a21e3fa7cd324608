"""Glue for the book's prose: plain values for myst_nb, and the build's list of runnable chapters."""

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


def notebooks_missing_data(folder: str = "notebooks") -> list[str]:
    """Notebooks whose metadata (``metarec.requires_data``) names data that cannot be found here."""
    import json
    from pathlib import Path

    from metarec_ref.data.loaders import find_online_retail

    finders = {"online_retail": find_online_retail}
    missing = []
    for path in sorted(Path(folder).glob("*.ipynb")):
        needs = json.loads(path.read_text()).get("metadata", {}).get("metarec", {}).get("requires_data", [])
        for name in needs:
            try:
                finders[name]()
            except FileNotFoundError:
                missing.append(path.as_posix())
                break
    return missing


def book_config(config_path: str = "_config.yml", folder: str = "notebooks") -> str:
    """The book's config with notebooks that lack their data excluded from execution.

    Those chapters then show their committed outputs instead of failing half-way.
    """
    import yaml

    with open(config_path) as f:
        config = yaml.safe_load(f)
    config["execute"]["exclude_patterns"] = notebooks_missing_data(folder)
    return yaml.safe_dump(config, sort_keys=False)


__all__ = [
    "book_config",
    "glue",
    "notebooks_missing_data",
    "plain_value",
]
