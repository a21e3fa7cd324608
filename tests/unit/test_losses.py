"""The inner-loop losses: the same values as torch's reference, masks respected, stable at the extremes."""

import torch
import torch.nn.functional as F

from metarec_ref.meta import masked_bce_loss, masked_mse_loss


def test_masked_bce_equals_torch_reference_including_extremes_and_soft_labels():
    logits = torch.tensor([-1000.0, -30.0, -1.5, 0.0, 0.7, 30.0, 1000.0], dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0.0, 1.0, 0.3, 1.0, 0.0, 0.0, 1.0], dtype=torch.float64)
    mask = torch.tensor([True, True, True, True, True, True, False])
    ours = masked_bce_loss(logits, y, mask)
    reference = F.binary_cross_entropy_with_logits(logits[:6], y[:6])
    torch.testing.assert_close(ours, reference, rtol=1e-12, atol=0)
    (grad,) = torch.autograd.grad(ours, logits, create_graph=True)
    expected = (torch.sigmoid(logits) - y) * mask / mask.sum()
    torch.testing.assert_close(grad, expected, rtol=1e-12, atol=1e-15)
    (second,) = torch.autograd.grad(grad.sum(), logits)
    assert torch.isfinite(second).all() and second[-1] == 0  # the padded event has no say


def test_empty_mask_gives_zero_loss():
    logits = torch.randn(4)
    assert masked_bce_loss(logits, torch.ones(4), torch.zeros(4, dtype=torch.bool)) == 0
    assert masked_mse_loss(logits, torch.ones(4), torch.zeros(4, dtype=torch.bool)) == 0
