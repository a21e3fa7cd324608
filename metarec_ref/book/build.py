"""The book build: which chapters can execute here (their data found) and the config that says so."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from metarec_ref.data.loaders import find_online_retail


def notebooks_missing_data(folder: str = "notebooks") -> list[str]:
    """Notebooks whose metadata (``metarec.requires_data``) names data that cannot be found here."""
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
    with open(config_path) as f:
        config = yaml.safe_load(f)
    config["execute"]["exclude_patterns"] = notebooks_missing_data(folder)
    return yaml.safe_dump(config, sort_keys=False)


__all__ = ["book_config", "notebooks_missing_data"]
