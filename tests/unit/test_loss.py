"""Losses, checked against hand-computed values."""

import torch

from anomalib_grad.models.grad.loss import ContrastiveLoss, ReconstructionLoss


def test_contrastive_loss_hand_computed():
    # inside the mask: d = 0.2, 1.0 -> relu(0.5 - d) = 0.3, 0 -> mean 0.15
    # outside: d = -0.1, -2.0, 0.5 -> relu(d + 0.5) = 0.4, 0, 1.0 -> mean 1.4 / 3
    scores = torch.tensor([0.2, 1.0, -0.1, -2.0, 0.5]).view(1, 1, 1, 5)
    mask = torch.tensor([1.0, 1.0, 0.0, 0.0, 0.0]).view(1, 1, 1, 5)
    loss = ContrastiveLoss(threshold=0.5)(scores, mask)
    assert torch.isclose(loss, torch.tensor(0.15 + 1.4 / 3))


def test_contrastive_loss_threshold_and_empty_side():
    scores = torch.tensor([0.0, 0.0]).view(1, 1, 1, 2)
    no_anomaly = torch.zeros(1, 1, 1, 2)
    assert torch.isclose(ContrastiveLoss(threshold=1.0)(scores, no_anomaly), torch.tensor(1.0))
    separated = torch.tensor([2.0, -2.0]).view(1, 1, 1, 2)
    assert ContrastiveLoss(threshold=1.0)(separated, torch.tensor([1.0, 0.0]).view(1, 1, 1, 2)) == 0


def test_contrastive_loss_gradient_pushes_scores_apart():
    scores = torch.zeros(1, 1, 1, 2, requires_grad=True)
    ContrastiveLoss()(scores, torch.tensor([1.0, 0.0]).view(1, 1, 1, 2)).backward()
    assert scores.grad[0, 0, 0, 0] < 0 < scores.grad[0, 0, 0, 1]


def test_reconstruction_loss_hand_computed():
    reconstruction = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    features = torch.tensor([[1.0, 0.0], [0.0, 4.0]])
    assert torch.isclose(ReconstructionLoss()(reconstruction, features), torch.tensor((4.0 + 9.0) / 4))
