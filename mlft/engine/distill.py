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

from mlft.engine.hooks import TEACHER
from mlft.tasks.protocol import Output


class Distiller:
    """Holds the teacher (in evaluation mode, no gradients) and mixes its soft targets into the loss, for every
    output the task reads (NER's and a classifier's logits; a QA model's start and end scores, averaged)."""

    def __init__(
        self,
        teacher: torch.nn.Module,
        alpha: float,
        temperature: float,
        outputs: tuple[Output, ...],
        inputs: tuple[str, ...],
    ):
        self.teacher = teacher.eval().requires_grad_(False)
        self.alpha, self.temperature, self.outputs, self.inputs = alpha, temperature, outputs, inputs

    @torch.no_grad()
    def targets(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The teacher's scores for a training batch (computed once per batch, also for an adversarial pass)."""
        result = self.teacher(**{k: v for k, v in batch.items() if k in self.inputs})
        return {output.name: result[output.name] for output in self.outputs}

    def loss(
        self, student: Any, gold_loss: torch.Tensor, batch: dict[str, torch.Tensor], teacher: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        terms = [
            soft_loss(
                student[o.name],
                teacher[o.name],
                batch.get("labels") if o.per_position else None,
                self.temperature,
                o.probabilities == "sigmoid",
            )
            for o in self.outputs
        ]
        return (1 - self.alpha) * gold_loss + self.alpha * (sum(terms) / len(terms))


def soft_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    labels: torch.Tensor | None,
    temperature: float,
    multi_label: bool,
) -> torch.Tensor:
    """T² × the mean KL divergence from the teacher's softened outputs to the student's, over scored rows.

    Per-position scores are (batch, tokens, classes) with `labels` -100 where the gold loss ignores a token; other
    scores are (batch, classes), one distribution per row (the classes of a QA start score are the positions).
    """
    t = temperature
    student, teacher = student.float() / t, teacher.float() / t
    if labels is not None:
        keep = labels != -100
        # A masked-LM student's training logits are already those of the labelled positions only.
        student, teacher = (x[keep] if x.dim() == keep.dim() + 1 else x for x in (student, teacher))
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
    targets: dict[str, dict[str, torch.Tensor]] = {}

    def teacher_targets(batch: dict[str, torch.Tensor]) -> None:
        with accelerator.autocast():
            targets["scores"] = distiller.targets(batch)

    def loss(batch: dict[str, torch.Tensor], outputs: Any, gold: torch.Tensor) -> torch.Tensor:
        return distiller.loss(outputs, gold, batch, targets["scores"])

    hooks.add("batch_start", teacher_targets, TEACHER)
    hooks.add("loss", loss, TEACHER)
