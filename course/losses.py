"""Losses and metrics: cross-entropy over the positions a mask keeps, next-token (LM) and masked-LM losses.

    masked_cross_entropy  mean cross-entropy (fp32) over the kept positions; any leading shape (..., vocab)
    lm_loss               next-token cross-entropy; targets are the inputs shifted by one (teacher forcing)
    mlm_loss              masked-LM cross-entropy (encoder-only): predict the hidden tokens at their
                          own positions
    accuracy              token accuracy and whole-row accuracy over the scored positions

This module imports nothing else from the course, so `diagnostics` and `training` can both import it at the
top."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _check_targets(
    logits: torch.Tensor, targets: torch.Tensor, loss_mask: torch.Tensor | None, sequences: bool = True
) -> None:
    """logits (..., V) with targets (...) — or exactly (B, T, V) with (B, T) when `sequences` — and an
    optional bool loss_mask of the targets' shape that keeps at least one position."""
    if sequences and logits.dim() != 3:
        raise ValueError(f"logits must be (B, T, vocab), got shape {tuple(logits.shape)}")
    if logits.dim() < 1:
        raise ValueError("logits must have a last (vocab) axis, got a 0-d tensor")
    if targets.shape != logits.shape[:-1]:
        raise ValueError(
            f"targets of shape {tuple(targets.shape)} do not match logits' leading shape "
            f"{tuple(logits.shape[:-1])}" + (" (B, T)" if sequences else "")
        )
    if loss_mask is not None:
        if loss_mask.dtype != torch.bool or loss_mask.shape != targets.shape:
            raise ValueError(
                f"loss_mask must be a bool tensor of shape {tuple(targets.shape)}, got "
                f"{loss_mask.dtype} {tuple(loss_mask.shape)}"
            )
        if not loss_mask.any():
            raise ValueError("loss_mask selects no position: the loss would be 0/0")


def masked_cross_entropy(logits, targets, loss_mask=None) -> torch.Tensor:
    """Mean cross-entropy (in fp32) over the positions where `loss_mask` is True (all when None).

    logits (..., V), targets (...) integer ids, loss_mask (...) bool: any leading shape — (B, T) for a batch
    of sequences, (N,) for a flat list of positions, () for one position."""
    _check_targets(logits, targets, loss_mask, sequences=False)
    return _cross_entropy(logits, targets, loss_mask)


def _cross_entropy(logits, targets, loss_mask) -> torch.Tensor:
    losses = F.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none"
    )
    losses = losses.view(targets.shape)
    return losses.mean() if loss_mask is None else losses[loss_mask].mean()


def lm_loss(logits, targets, loss_mask=None) -> torch.Tensor:
    """Next-token loss. logits (B, T, V) from inputs x; targets (B, T) with targets[:, t] = the token after
    x[:, t]. Every position predicts in parallel from gold inputs (teacher forcing)."""
    _check_targets(logits, targets, loss_mask)
    return _cross_entropy(logits, targets, loss_mask)


def mlm_loss(logits, targets, loss_mask) -> torch.Tensor:
    """Masked-LM loss (see `course.data.mask_tokens`): targets are the original tokens at the same positions,
    scored only where they were hidden (loss_mask); visible tokens would be trivial to copy."""
    if loss_mask is None:
        raise ValueError("mlm_loss needs the loss_mask of hidden tokens")
    _check_targets(logits, targets, loss_mask)
    return _cross_entropy(logits, targets, loss_mask)


@torch.no_grad()
def accuracy(logits, targets, loss_mask=None) -> tuple[float, float]:
    """(token accuracy over scored positions, fraction of rows whose scored positions are all right)."""
    _check_targets(logits, targets, loss_mask)
    mask = torch.ones_like(targets, dtype=torch.bool) if loss_mask is None else loss_mask
    right = logits.argmax(-1) == targets
    token = right[mask].float().mean().item()
    sequence = (right | ~mask).all(-1).float().mean().item()
    return token, sequence
