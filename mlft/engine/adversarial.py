"""Adversarial training on the word embeddings (FGM, Miyato et al. 2017, "Adversarial training methods
for semi-supervised text classification").

Each step trains on the batch twice: as it is, and with every example's word embeddings moved by
`epsilon` (L2 norm over the example's tokens) in the direction that raises its loss the most, taken
from the first pass's gradient. The gradients of both passes are summed, so a step costs about two
forward and backward passes. The perturbation acts on the embedding layer's output, not on its
weights, so it works the same with frozen, compact or adapter-wrapped embeddings.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch


class EmbeddingPerturbation:
    """A forward hook on the input embeddings: records their output in training passes (so that its
    gradient is kept) and adds the adversarial step inside `perturbed()`."""

    def __init__(self, model: Any, epsilon: float):
        """`model`: a transformers model (or a PEFT wrapper of one), before `accelerator.prepare`."""
        self.epsilon = epsilon
        self.output: torch.Tensor | None = None
        self.delta: torch.Tensor | None = None
        self.handle = model.get_input_embeddings().register_forward_hook(self._hook)

    def _hook(self, module: torch.nn.Module, args: Any, output: torch.Tensor) -> torch.Tensor | None:
        if not torch.is_grad_enabled() or not module.training:
            return None  # evaluation: the model computes what it would without the hook
        if self.delta is not None:
            return output + self.delta
        if not output.requires_grad:  # frozen embeddings: a leaf that only collects the gradient
            output = output.detach().requires_grad_(True)
        output.retain_grad()
        self.output = output
        return output

    @contextmanager
    def perturbed(self) -> Iterator[None]:
        """Forward passes inside add epsilon × the normalised gradient of the last clean pass's loss."""
        if self.output is None or self.output.grad is None:
            raise RuntimeError("the adversarial pass needs a clean forward and backward pass first")
        grad = self.output.grad.detach()
        norm = grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (grad.dim() - 1)))
        self.delta = self.epsilon * grad / norm
        self.output = None
        try:
            yield
        finally:
            self.delta = None

    def remove(self) -> None:
        self.handle.remove()


def attach_fgm(hooks: Any, model: Any, epsilon: float, backward: Callable[[torch.Tensor], None]) -> None:
    """Every batch also trains with its embeddings perturbed (trainer.adversarial=fgm); `model` before
    `accelerator.prepare`, `backward` the accelerator's."""
    perturbation = EmbeddingPerturbation(model, epsilon)

    def adversarial_pass(compute_loss: Callable[[], torch.Tensor]) -> None:
        with perturbation.perturbed():
            backward(compute_loss())

    hooks.extra_passes.append(adversarial_pass)
    hooks.close.append(perturbation.remove)
