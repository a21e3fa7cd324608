"""Notebook helpers: seeding, devices, glue values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from metarec_ref.runtime import default_device, resolve_device, seed_everything
from metarec_ref.book.glue import plain_value


def draw():
    return (np.random.rand(3).tolist(), torch.rand(3).tolist(), __import__("random").random())


def test_seed_everything_repeats_draws():
    seed_everything(7)
    first = draw()
    seed_everything(7)
    assert draw() == first
    seed_everything(8)
    assert draw() != first


def test_seed_everything_rejects_bad_seed():
    with pytest.raises(ValueError, match="seed must be a non-negative int"):
        seed_everything(-1)


def test_default_and_resolved_device():
    assert default_device().type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("auto") == default_device()
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="is not a device"):
        resolve_device("gpu0")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without CUDA")
def test_cuda_request_without_cuda_is_clear():
    with pytest.raises(ValueError, match="none is available"):
        resolve_device("cuda")


def test_plain_value_turns_numbers_into_python():
    assert plain_value(np.float64(0.5)) == 0.5 and type(plain_value(np.float64(0.5))) is float
    assert type(plain_value(torch.tensor(3))) is int
    assert plain_value({"a": np.int64(2)}) == {"a": 2}


def test_book_config_excludes_notebooks_whose_data_is_absent(tmp_path, monkeypatch):
    import json

    import yaml

    from metarec_ref.book import book_config
    from metarec_ref.book.build import notebooks_missing_data

    folder = tmp_path / "notebooks"
    folder.mkdir()
    needs = {"metadata": {"metarec": {"requires_data": ["online_retail"]}}, "cells": []}
    (folder / "07_real.ipynb").write_text(json.dumps(needs))
    (folder / "02_synthetic.ipynb").write_text(json.dumps({"metadata": {}, "cells": []}))
    (tmp_path / "_config.yml").write_text("title: t\nexecute:\n  execute_notebooks: cache\n  exclude_patterns: []\n")
    monkeypatch.delenv("METAREC_DATA_DIR", raising=False)
    monkeypatch.setenv("METAREC_CACHE_DIR", str(tmp_path / "empty_cache"))  # nor fetched by `make data`
    assert notebooks_missing_data(str(folder)) == [f"{folder.as_posix()}/07_real.ipynb"]
    config = yaml.safe_load(book_config(str(tmp_path / "_config.yml"), str(folder)))
    assert config["execute"]["exclude_patterns"] == [f"{folder.as_posix()}/07_real.ipynb"]
    assert config["execute"]["execute_notebooks"] == "cache"

    data = tmp_path / "data" / "online_retail"
    data.mkdir(parents=True)
    (data / "online_retail.parquet").write_bytes(b"")
    monkeypatch.setenv("METAREC_DATA_DIR", str(tmp_path / "data"))
    assert notebooks_missing_data(str(folder)) == []


def test_book_config_keeps_offline_math_and_header_buttons(monkeypatch):
    """The generated `make book` config still bundles MathJax and names the repository once."""
    import importlib

    import yaml

    from metarec_ref.book import book_config

    monkeypatch.delenv("METAREC_DATA_DIR", raising=False)
    config = yaml.safe_load(book_config())
    assert "sphinx-mathjax-offline" in config["sphinx"]["extra_extensions"]
    assert importlib.import_module("sphinx-mathjax-offline").setup  # the extension is installed
    assert config["repository"]["url"].startswith("https://")
    assert config["html"]["use_repository_button"] is True
    assert config["launch_buttons"]["notebook_interface"] == "jupyterlab"
    assert config["launch_buttons"]["thebe"] is False  # Live Code would load from a CDN
