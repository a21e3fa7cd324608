"""Notebook helpers: seeding, devices, glue values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from metarec_ref.nb import default_device, plain_value, resolve_device, seed_everything


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
