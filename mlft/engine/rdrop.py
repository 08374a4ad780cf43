"""R-Drop (Liang et al. 2021, "R-Drop: regularized dropout for neural networks").

Every training batch goes through the model twice in one pass (the batch stacked on itself), so each example
gets two dropout masks; the loss is the mean of the two passes' losses plus `alpha` × the symmetric KL
divergence between their predicted distributions, ½(KL(p₁‖p₂) + KL(p₂‖p₁)), averaged over the examples (NER:
over the labelled tokens). With the paper's sum of both losses this is half its objective, so `alpha` means what
it means there. Evaluation is untouched.
"""

from __future__ import annotations

from typing import Any

import torch

from mlft.engine.hooks import CONSISTENCY, DOUBLE_BATCH
from mlft.tasks.protocol import Output

IGNORED = -100
"""The label of positions that are not scored (padding, special tokens, later word pieces)."""


def doubled(batch: dict[str, torch.Tensor]) -> None:
    """Stacks the batch on itself in place: rows i and i + n are the same example."""
    for key, value in batch.items():
        batch[key] = torch.cat([value, value])


def symmetric_kl(scores: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    """½(KL(p₁‖p₂) + KL(p₂‖p₁)) between the two halves' distributions over the last axis, mean over scored rows
    (where `labels` has an entry per row, the rows where it is set)."""
    first, second = scores.float().chunk(2)
    log_p, log_q = first.log_softmax(-1), second.log_softmax(-1)
    per_position = 0.5 * ((log_p.exp() * (log_p - log_q)).sum(-1) + (log_q.exp() * (log_q - log_p)).sum(-1))
    scored = labels.chunk(2)[0] != IGNORED if labels is not None and labels.dim() == per_position.dim() else None
    if scored is None:
        return per_position.mean()
    return (per_position * scored).sum() / scored.sum().clamp_min(1)


def attach_rdrop(hooks: Any, alpha: float, outputs: tuple[Output, ...]) -> None:
    """Doubles every training batch first (before a teacher or anything else sees it) and adds the KL term, averaged
    over the task's declared outputs, after the loss is recomputed and distilled (before a continual penalty)."""

    def with_consistency(batch: dict[str, torch.Tensor], result: Any, loss: torch.Tensor) -> torch.Tensor:
        terms = [symmetric_kl(result[o.name], batch.get("labels")) for o in outputs]
        return loss + alpha * (sum(terms) / len(terms))

    hooks.add("batch_start", doubled, DOUBLE_BATCH)
    hooks.add("loss", with_consistency, CONSISTENCY)
