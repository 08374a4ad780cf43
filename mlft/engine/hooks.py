"""The one seam where optional training techniques attach to the loop, so that the loop body does not grow.

A technique registers callables on a `Hooks` (each module has an `attach_*` function); the loop calls
them at fixed points of every epoch, batch and optimizer step:

    epoch_start(loop)             before an epoch's first batch (language-mix logging)
    batch_start(batch)            once per batch, before its passes (a teacher's soft targets)
    loss(batch, outputs, loss)    -> the loss a pass trains on (distillation mixes in the teacher)
    extra_passes(compute_loss)    more backward passes on the same batch, summed into one step (FGM)
    optimizer_step(step)          right after the optimizer updated the weights, gradients still there (AdaLoRA)
    step_end(loop)                after each optimizer step (checkpoints every N steps)
    close()                       when training ends (remove model hooks)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

LossHook = Callable[[dict[str, torch.Tensor], Any, torch.Tensor], torch.Tensor]


@dataclass
class Hooks:
    epoch_start: list[Callable[[Any], None]] = field(default_factory=list)
    batch_start: list[Callable[[dict[str, torch.Tensor]], None]] = field(default_factory=list)
    loss: list[LossHook] = field(default_factory=list)
    extra_passes: list[Callable[[Callable[[], torch.Tensor]], None]] = field(default_factory=list)
    optimizer_step: list[Callable[[int], None]] = field(default_factory=list)
    step_end: list[Callable[[Any], None]] = field(default_factory=list)
    close: list[Callable[[], None]] = field(default_factory=list)

    def training_loss(self, batch: dict[str, torch.Tensor], outputs: Any) -> torch.Tensor:
        loss = outputs.loss
        for hook in self.loss:
            loss = hook(batch, outputs, loss)
        return loss


def attach_save_steps(hooks: Hooks, every: int) -> None:
    """A resumable checkpoint every `every` optimizer steps, without evaluating (trainer.save_steps)."""

    def save(loop: Any) -> None:
        if loop.state.global_step % every == 0:
            loop.checkpoint()

    hooks.step_end.append(save)
