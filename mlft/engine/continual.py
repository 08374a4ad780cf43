"""Against forgetting between stages of continual training: a penalty that pulls the weights towards those the
stage started from, weighed by each parameter's importance to the earlier stages.

EWC (Kirkpatrick et al. 2017): importance = the diagonal of the Fisher information, estimated as the mean
squared gradient of the training loss over a few batches of the stage just finished (the empirical Fisher, per
batch rather than per example: one backward pass a batch). Over several stages the estimates add up and the
anchor is the latest weights, as online EWC does (Schwarz et al. 2018). L2 (L2-SP, Li et al. 2018): every
parameter alike.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from mlft.engine.hooks import PENALTY, Hooks

log = logging.getLogger("mlft")

FISHER_FILE = "fisher.safetensors"
"""A finished stage's Fisher estimate, in its run directory: what later stages' EWC penalty weighs by."""


@dataclass(frozen=True)
class Anchor:
    """The penalty of one stage: strength λ, and the importance per parameter name (None: 1 for every one)."""

    strength: float
    importance: dict[str, torch.Tensor] | None = None


@dataclass(frozen=True)
class StageInputs:
    """What a stage of continual training adds to an ordinary run."""

    replay: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    """Earlier stages' training examples by language, trained on with the stage's own."""
    anchor: Anchor | None = None
    """The penalty towards the weights the stage starts from (trainer.continual.regulariser)."""


def anchored(model: torch.nn.Module, anchor: Anchor) -> dict[str, torch.nn.Parameter]:
    """The trainable parameters the penalty covers: all for L2; for EWC those with an importance of their shape
    (a compact embedding matrix or a new head of another size has none)."""
    trainable = {name: p for name, p in model.named_parameters() if p.requires_grad}
    if anchor.importance is None:
        return trainable
    importance = anchor.importance
    return {name: p for name, p in trainable.items() if name in importance and importance[name].shape == p.shape}


def penalty(params: dict[str, torch.nn.Parameter], start: dict[str, torch.Tensor], anchor: Anchor) -> torch.Tensor:
    """λ/2 · Σ F_i (θ_i − θ*_i)²."""
    total = torch.zeros((), device=next(iter(params.values())).device) if params else torch.zeros(())
    for name, p in params.items():
        squared = (p - start[name]) ** 2
        total = total + (squared * anchor.importance[name] if anchor.importance is not None else squared).sum()
    return anchor.strength / 2 * total


def with_rows(anchor: Anchor, name: str, rows: torch.Tensor) -> Anchor:
    """The anchor for a model that trains only `rows` of the embedding matrix `name` (model.compact_embeddings):
    those rows of its importance."""
    if anchor.importance is None or name not in anchor.importance:
        return anchor
    return Anchor(anchor.strength, {**anchor.importance, name: anchor.importance[name][rows]})


def attach_anchor(hooks: Hooks, model: torch.nn.Module, anchor: Anchor) -> None:
    """Adds the penalty to every training pass's loss; θ* = the weights now, before the stage's first step."""
    params = anchored(model, anchor)
    start = {name: p.detach().clone() for name, p in params.items()}
    if anchor.importance is not None:
        anchor = Anchor(anchor.strength, {n: anchor.importance[n].to(p.device) for n, p in params.items()})
    covered = sum(p.numel() for p in params.values())
    log.info("continual: penalty λ=%g over %s parameters", anchor.strength, f"{covered:,}")

    def add(batch: dict[str, torch.Tensor], outputs: object, loss: torch.Tensor) -> torch.Tensor:
        return loss + penalty(params, start, anchor).to(loss.device)

    hooks.add("loss", add, PENALTY)


def estimate_fisher(model: torch.nn.Module, batches: Iterable[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Mean squared loss gradient per trainable parameter over `batches`, scaled to mean 1 over all of them (so
    that λ means the same for ewc and l2). The model is scored without dropout and left unchanged."""
    params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    sums = {name: torch.zeros_like(p, dtype=torch.float32) for name, p in params.items()}
    was_training = model.training
    model.eval()
    count = 0
    device = next(model.parameters()).device
    for batch in batches:
        model.zero_grad(set_to_none=True)
        model(**{k: v.to(device) for k, v in batch.items()}).loss.backward()
        for name, p in params.items():
            if p.grad is not None:
                sums[name] += p.grad.detach().float() ** 2
        count += 1
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    if count == 0:
        raise ValueError("no batches to estimate the Fisher information from")
    # Scaled to mean 1, the number of batches drops out (a mean of means is the same up to that factor).
    mean = sum(float(s.sum()) for s in sums.values()) / max(sum(s.numel() for s in sums.values()), 1)
    scale = mean if mean > 0 else float(count)
    return {name: (s / scale).cpu().contiguous() for name, s in sums.items()}


def save_fisher(fisher: dict[str, torch.Tensor], directory: Path) -> Path:
    path = directory / FISHER_FILE
    save_file(fisher, str(path))
    return path


def load_fisher(paths: list[Path]) -> dict[str, torch.Tensor]:
    """The earlier stages' estimates added up (a parameter important to any earlier stage stays anchored)."""
    total: dict[str, torch.Tensor] = {}
    for path in paths:
        for name, value in load_file(str(path)).items():
            total[name] = total[name] + value if name in total and total[name].shape == value.shape else value
    return total
