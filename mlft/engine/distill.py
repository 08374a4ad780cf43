"""Knowledge distillation (Hinton et al. 2015, "Distilling the knowledge in a neural network").

A trained teacher labels every training batch with its logits; the student learns from a mix of the
gold labels and the teacher's softened distribution:

    loss = (1 - alpha) * gold loss + alpha * T² * KL(softmax(teacher / T) || softmax(student / T))

over the same positions the gold loss counts (NER: the labelled first subtokens; classification: each
text). T² keeps the soft term's gradient at the gold term's scale whatever the temperature. Multi-label
classification has one binary distribution per label: the soft term is the binary cross-entropy against
the teacher's sigmoid(teacher / T), minus its entropy (so it is a KL divergence, zero when they agree).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F


class Distiller:
    """Holds the teacher (in evaluation mode, no gradients) and mixes its soft targets into the loss."""

    def __init__(self, teacher: torch.nn.Module, alpha: float, temperature: float, multi_label: bool):
        self.teacher = teacher.eval().requires_grad_(False)
        self.alpha, self.temperature, self.multi_label = alpha, temperature, multi_label

    @torch.no_grad()
    def targets(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The teacher's logits for a training batch (computed once per batch, also for an adversarial pass)."""
        return self.teacher(**{k: v for k, v in batch.items() if k != "labels"}).logits

    def loss(
        self, logits: torch.Tensor, gold_loss: torch.Tensor, labels: torch.Tensor, teacher: torch.Tensor
    ) -> torch.Tensor:
        soft = soft_loss(logits, teacher, labels, self.temperature, self.multi_label)
        return (1 - self.alpha) * gold_loss + self.alpha * soft


def soft_loss(
    student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, temperature: float, multi_label: bool
) -> torch.Tensor:
    """T² × the mean KL divergence from the teacher's softened outputs to the student's, over labelled positions.

    Token logits are (batch, tokens, labels) with labels -100 where the gold loss ignores a token;
    text logits are (batch, labels).
    """
    t = temperature
    student, teacher = student.float() / t, teacher.float() / t
    keep = labels != -100
    # A masked-LM student's training logits are already those of the labelled positions only.
    student, teacher = (x[keep] if x.dim() == 3 else x for x in (student, teacher))
    if student.numel() == 0:
        return student.sum()  # no labelled token in the batch: nothing to match, and no NaN from an empty mean
    if multi_label:
        target = teacher.sigmoid()
        cross = F.binary_cross_entropy_with_logits(student, target, reduction="none")
        kl = cross - F.binary_cross_entropy_with_logits(teacher, target, reduction="none")
        return t * t * kl.sum(-1).mean()
    kl = F.kl_div(student.log_softmax(-1), teacher.log_softmax(-1), log_target=True, reduction="none")
    return t * t * kl.sum(-1).mean()


def attach_distillation(hooks: Any, distiller: Distiller, accelerator: Any) -> None:
    """The loss mixes in the teacher's soft targets, computed once per batch (also for an adversarial pass)."""
    distiller.teacher.to(accelerator.device)  # it only runs forward: not wrapped for data parallelism
    targets: dict[str, torch.Tensor] = {}

    def teacher_targets(batch: dict[str, torch.Tensor]) -> None:
        with accelerator.autocast():
            targets["logits"] = distiller.targets(batch)

    def loss(batch: dict[str, torch.Tensor], outputs: Any, gold: torch.Tensor) -> torch.Tensor:
        return distiller.loss(outputs.logits, gold, batch["labels"], targets["logits"])

    hooks.batch_start.append(teacher_targets)
    hooks.loss.append(loss)
