"""Notebook helpers: seeding, device choice, glue, quiet progress bars."""

from __future__ import annotations

import os
import random

import numpy as np
import torch


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed python, numpy and torch; make torch kernels deterministic where possible."""
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    if deterministic:
        # cuBLAS needs this set before its first call to be deterministic.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)


def default_device() -> torch.device:
    """CUDA when available, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_device(device: str | torch.device | None) -> torch.device:
    """Turn a notebook parameter ('auto', 'cpu', 'cuda', 'cuda:1') into a device."""
    if device is None or device == "auto":
        return default_device()
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(
            f"device={device!r} is not a device; use 'auto', 'cpu' or 'cuda'"
        ) from err
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r} asks for CUDA but none is available; use 'auto' or 'cpu'"
        )
    return resolved


def progress_disabled() -> bool:
    """True when progress bars should stay silent (tests, nbval, CI)."""
    return os.environ.get("METAREC_QUIET", "0") not in ("", "0", "false", "False")


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

    from metarec_ref.loaders import find_online_retail

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
