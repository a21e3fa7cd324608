"""pytest plugin for the nbval run: skip a notebook whose data is absent, saying how to get it.

A notebook declares what it needs in its metadata: ``{"metarec": {"requires_data": ["online_retail"]}}``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def _missing_data_reason(notebook: Path) -> str | None:
    meta = json.loads(notebook.read_text()).get("metadata", {}).get("metarec", {})
    if "online_retail" not in meta.get("requires_data", []):
        return None
    from metarec_ref.data import find_online_retail

    try:
        find_online_retail()
    except FileNotFoundError as err:
        return f"{notebook.name} needs the UCI Online Retail log: {err}"
    return None


def pytest_collection_modifyitems(config, items):
    reasons: dict[Path, str | None] = {}
    for item in items:
        path = Path(str(item.fspath))
        if path.suffix != ".ipynb":
            continue
        if path not in reasons:
            reasons[path] = _missing_data_reason(path)
        if reasons[path]:
            item.add_marker(pytest.mark.skip(reason=reasons[path]))
