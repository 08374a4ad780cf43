"""Adversarial training on the word embeddings.

FGM (Miyato et al. 2017, "Adversarial training methods for semi-supervised text classification"): each step
trains on the batch twice, as it is and with every example's word embeddings moved by `epsilon` (L2 norm over
the example's tokens) in the direction that raises its loss the most, taken from the first pass's gradient.
The gradients of both passes are summed: about two forward and backward passes a step.

PGD (Madry et al. 2018, "Towards deep learning models resistant to adversarial attacks"): the move is found in
`steps` steps of size `alpha`, each along the gradient at the point the previous one reached and projected back
into the `epsilon` ball. Only the last moved pass's parameter gradients are kept beside the clean ones (the
others only find the direction): 1 + `steps` passes a step.

The perturbation acts on the embedding layer's output, not on its weights, so it works the same with frozen,
compact or adapter-wrapped embeddings.
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
        if not output.requires_grad:  # frozen embeddings: a leaf that only collects the gradient
            output = output.detach().requires_grad_(True)
        # The gradient at the moved point equals the gradient at `output` (delta is a constant): kept for PGD.
        output.retain_grad()
        self.output = output
        return output if self.delta is None else output + self.delta

    def gradient_step(self, size: float) -> torch.Tensor:
        """`size` × the last pass's gradient, normalised per example."""
        if self.output is None or self.output.grad is None:
            raise RuntimeError("the adversarial pass needs a clean forward and backward pass first")
        grad = self.output.grad.detach()
        return size * grad / per_example_norm(grad)

    @contextmanager
    def perturbed(self) -> Iterator[None]:
        """Forward passes inside add epsilon × the normalised gradient of the last clean pass's loss (FGM)."""
        self.delta = self.gradient_step(self.epsilon)
        try:
            yield
        finally:
            self.delta = None

    def step(self, alpha: float) -> None:
        """One PGD step: the move grows by alpha along the last pass's gradient, then is projected back into the
        epsilon ball of each example."""
        delta = self.gradient_step(alpha) + (self.delta if self.delta is not None else 0.0)
        self.delta = delta * (self.epsilon / per_example_norm(delta)).clamp(max=1.0)

    def reset(self) -> None:
        self.delta = None

    def remove(self) -> None:
        self.handle.remove()


def per_example_norm(t: torch.Tensor) -> torch.Tensor:
    """The L2 norm of each example's slice (over all its tokens), shaped to broadcast against `t`."""
    return t.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (t.dim() - 1)))


def attach_fgm(hooks: Any, model: Any, epsilon: float, backward: Callable[[torch.Tensor], None]) -> None:
    """Every batch also trains with its embeddings perturbed (trainer.adversarial=fgm); `model` before
    `accelerator.prepare`, `backward` the accelerator's."""
    perturbation = EmbeddingPerturbation(model, epsilon)

    def adversarial_pass(compute_loss: Callable[[], torch.Tensor]) -> None:
        with perturbation.perturbed():
            backward(compute_loss())

    hooks.add("extra_passes", adversarial_pass)
    hooks.add("close", perturbation.remove)


def attach_pgd(
    hooks: Any,
    model: Any,
    epsilon: float,
    alpha: float,
    steps: int,
    backward: Callable[[torch.Tensor], None],
) -> None:
    """Every batch also trains at the end point of a `steps`-step PGD attack on its embeddings
    (trainer.adversarial=pgd); `model` before `accelerator.prepare`, `backward` the accelerator's."""
    perturbation = EmbeddingPerturbation(model, epsilon)
    params = [p for p in model.parameters() if p.requires_grad]

    def adversarial_passes(compute_loss: Callable[[], torch.Tensor]) -> None:
        # The clean pass's gradients (with those of earlier accumulated batches) are put aside while the attack
        # searches, and back before its last pass, whose gradients add to them.
        kept = [None if p.grad is None else p.grad.clone() for p in params]
        try:
            for k in range(steps):
                perturbation.step(alpha)
                last = k == steps - 1
                for p, grad in zip(params, kept):
                    p.grad = grad if last else None
                backward(compute_loss())
        finally:
            perturbation.reset()

    hooks.add("extra_passes", adversarial_passes)
    hooks.add("close", perturbation.remove)
