"""runtime.adam and runtime.exact_sqrt: exact where torch's CPU square root is not, and the only
way the library and the chapters take an Adam step or a square root of a tensor."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch

from metarec_ref.runtime import adam, exact_sqrt

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_exact_sqrt_is_correctly_rounded(dtype):
    x = torch.rand(5000, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 1e3 + 1e-6
    x = x.to(dtype)
    expected = torch.tensor([math.sqrt(v) for v in x.double().tolist()], dtype=torch.float64).to(dtype)
    assert torch.equal(exact_sqrt(x), expected)
    assert torch.equal(exact_sqrt(x[::7]), expected[::7])  # strided views
    assert exact_sqrt(torch.tensor(2.0, dtype=dtype)).shape == ()
    assert exact_sqrt(x.reshape(50, 100)).dtype == dtype


def test_exact_sqrt_refuses_a_tensor_inside_autograd():
    with pytest.raises(ValueError, match="without gradients"):
        exact_sqrt(torch.ones(3, requires_grad=True))


def _steps(optimizer, weight, steps=25):
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        optimizer.zero_grad()
        torch.tanh(torch.randn(6, weight.shape[0], generator=g) @ weight).pow(2).sum().backward()
        optimizer.step()
    return weight.detach().clone()


def test_adam_is_torchs_fused_adam():
    start = torch.randn(20, 4, generator=torch.Generator().manual_seed(0))
    mine = torch.nn.Parameter(start.clone())
    optimizer = adam([mine], lr=0.05, weight_decay=0.01)
    assert optimizer.defaults["fused"] and optimizer.defaults["weight_decay"] == 0.01
    fused = torch.nn.Parameter(start.clone())
    assert torch.equal(_steps(optimizer, mine), _steps(torch.optim.Adam([fused], lr=0.05, weight_decay=0.01,
                                                                        fused=True), fused))
    plain = torch.nn.Parameter(start.clone())  # the same algorithm, rounded differently
    torch.testing.assert_close(mine.detach(), _steps(torch.optim.Adam([plain], lr=0.05, weight_decay=0.01), plain))


def test_adam_takes_parameter_groups_and_falls_back_where_there_is_no_fused_kernel():
    a, b = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(3))
    groups = adam([{"params": iter([a])}, {"params": b, "lr": 0.5}], lr=0.1)  # any form torch takes
    assert [g["lr"] for g in groups.param_groups] == [0.1, 0.5]
    assert [g["params"] for g in groups.param_groups] == [[a], [b]] and groups.defaults["fused"]
    complex_param = torch.nn.Parameter(torch.ones(2, dtype=torch.complex64))
    assert not adam([complex_param], lr=0.1).defaults["fused"]


# A square root or an Adam step that does not go through the two helpers above.
_INEXACT = re.compile(r"torch\.optim\.Adam\(|\.sqrt\(\)|torch\.sqrt\(|\.rsqrt\(|\.pow\(0?\.5\)")


def _code_lines():
    for path in sorted((ROOT / "metarec_ref").rglob("*.py")):
        if path.name != "runtime.py":
            yield from ((f"{path.relative_to(ROOT)}:{n}", line) for n, line in enumerate(path.read_text().splitlines(), 1))
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        for i, cell in enumerate(json.loads(path.read_text())["cells"]):
            if cell["cell_type"] == "code":
                yield from ((f"{path.relative_to(ROOT)} cell {i}", line) for line in "".join(cell["source"]).splitlines())


def test_the_library_and_the_chapters_take_exact_square_roots_only():
    found = [f"{where}: {line.strip()}" for where, line in _code_lines() if _INEXACT.search(line.split("#")[0])]
    assert not found, ("use metarec_ref.runtime.adam / exact_sqrt (torch's CPU sqrt rounds by processor):\n"
                       + "\n".join(found))
