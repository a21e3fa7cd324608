"""The toy shop's ``shared`` knob: 0 keeps today's shop, 1 reproduces the shared world, between mixes."""

from __future__ import annotations

import pytest
import torch

from metarec_ref.data import ToyConfig, preference_tasks
from metarec_ref.data.toy import segment_centres


def test_shared_zero_keeps_the_shop_unchanged():
    expected = 2.0 * torch.randn(4, 8, generator=torch.Generator().manual_seed(4321))
    assert torch.equal(segment_centres(ToyConfig(world_seed=4321)), expected)
    assert torch.equal(segment_centres(ToyConfig(world_seed=4321, shared=0.0, shared_world_seed=99)), expected)


def test_shared_one_reproduces_the_shared_world():
    a = segment_centres(ToyConfig(world_seed=1234))
    b = segment_centres(ToyConfig(world_seed=4321, shared=1.0, shared_world_seed=1234))
    assert torch.allclose(a, b)
    tasks_a = preference_tasks(5, 3, 4, config=ToyConfig(world_seed=1234), seed=7)
    tasks_b = preference_tasks(5, 3, 4, config=ToyConfig(world_seed=4321, shared=1.0), seed=7)
    assert torch.allclose(tasks_a.query_x, tasks_b.query_x) and torch.equal(tasks_a.query_y, tasks_b.query_y)


def test_shared_sets_the_correlation_of_the_centres():
    config = {"n_segments": 200, "n_features": 50}
    a = segment_centres(ToyConfig(world_seed=1, **config)).flatten()
    for rho in (0.0, 0.25, 0.81):
        b = segment_centres(ToyConfig(world_seed=2, shared=rho, shared_world_seed=1, **config)).flatten()
        corr = float(torch.corrcoef(torch.stack([a, b]))[0, 1])
        assert abs(corr - rho**0.5) < 0.03, (rho, corr)  # 10,000 coordinates: standard error ~0.01
        assert abs(float(b.std()) - 2.0) < 0.05  # the spread of the centres does not depend on rho


@pytest.mark.parametrize("bad", [{"shared": -0.1}, {"shared": 1.5}, {"shared": 0.5, "world_seed": 1234}])
def test_shared_rejects_bad_values(bad):
    with pytest.raises(ValueError, match="shared"):
        ToyConfig(**bad)
