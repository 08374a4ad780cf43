"""The one seam where optional training techniques attach to the loop, so that the loop body does not grow.

A technique registers callables on a `Hooks` (each module has an `attach_*` function) with `Hooks.add`; the loop
calls them at fixed points of every epoch, batch, optimizer step, evaluation and checkpoint:

    epoch_start(loop)             before an epoch's first batch (language-mix logging)
    batch_start(batch)            once per batch, before its passes (R-Drop doubles it, a teacher scores it)
    loss(batch, outputs, loss)    -> the loss a pass trains on (class weights, distillation, R-Drop, a penalty)
    extra_passes(compute_loss)    more backward passes on the same batch, summed into one step (FGM)
    optimizer_step(step)          right after the optimizer updated the weights, gradients still there (AdaLoRA, EMA)
    step_end(loop)                after each optimizer step (checkpoints every N steps)
    before_evaluate()             before the dev sets are scored and the best weights saved (EMA swaps its in)
    after_evaluate()              after that (EMA swaps the trained weights back)
    scored(loop, score)           the dev score of an evaluation (a search reports it; `loop.stop_early` ends training)
    before_save(folder)           a resumable checkpoint is being written into `folder` (main process; EMA's)
    after_resume(folder)          the loop resumed from the checkpoint in `folder`
    after_training()              training ended, before the final weights are chosen (EMA keeps its average)
    close()                       when training ends (remove model hooks)

Hooks of one event run by the `order` they were added with, not by when: a technique says where in the chain it
belongs (the constants below), so that the order does not depend on the order of `attach_*` calls.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

LossHook = Callable[[dict[str, torch.Tensor], Any, torch.Tensor], torch.Tensor]

REPLACE_LOSS = 0
"""loss: recomputes the model's own loss (class weights, label smoothing), so it comes first."""
DOUBLE_BATCH = 0
"""batch_start: R-Drop doubles the batch before anything else sees it."""
TEACHER = 10
"""batch_start and loss: distillation scores the (doubled) batch and mixes its targets into the loss."""
CONSISTENCY = 20
"""loss: R-Drop's divergence between the two halves of the batch."""
PENALTY = 90
"""loss: a penalty added to whatever loss the techniques before it made (continual training's anchor)."""
DEFAULT_ORDER = 50


@dataclass
class Hooks:
    epoch_start: list[Callable[[Any], None]] = field(default_factory=list)
    batch_start: list[Callable[[dict[str, torch.Tensor]], None]] = field(default_factory=list)
    loss: list[LossHook] = field(default_factory=list)
    extra_passes: list[Callable[[Callable[[], torch.Tensor]], None]] = field(default_factory=list)
    optimizer_step: list[Callable[[int], None]] = field(default_factory=list)
    step_end: list[Callable[[Any], None]] = field(default_factory=list)
    before_evaluate: list[Callable[[], None]] = field(default_factory=list)
    after_evaluate: list[Callable[[], None]] = field(default_factory=list)
    scored: list[Callable[[Any, float | None], None]] = field(default_factory=list)
    before_save: list[Callable[[Path], None]] = field(default_factory=list)
    after_resume: list[Callable[[Path], None]] = field(default_factory=list)
    after_training: list[Callable[[], None]] = field(default_factory=list)
    close: list[Callable[[], None]] = field(default_factory=list)
    orders: dict[int, int] = field(default_factory=dict)
    """id of a registered hook -> its order."""

    def add(self, event: str, hook: Callable[..., Any], order: int = DEFAULT_ORDER) -> None:
        """Registers `hook` for `event`; the hooks of an event run by ascending order, then as added."""
        hooks: list[Callable[..., Any]] = getattr(self, event)
        self.orders[id(hook)] = order
        hooks.append(hook)
        hooks.sort(key=lambda h: self.orders.get(id(h), DEFAULT_ORDER))

    def training_loss(self, batch: dict[str, torch.Tensor], outputs: Any) -> torch.Tensor:
        loss = outputs.loss
        for hook in self.loss:
            loss = hook(batch, outputs, loss)
        return loss

    def run(self, event: str, *args: Any) -> None:
        for hook in getattr(self, event):
            hook(*args)


def attach_save_steps(hooks: Hooks, every: int) -> None:
    """A resumable checkpoint every `every` optimizer steps, without evaluating (trainer.save_steps)."""

    def save(loop: Any) -> None:
        if loop.state.global_step % every == 0:
            loop.checkpoint()

    hooks.add("step_end", save)
