"""Shallower encoders: keep N of a model's transformer layers (a distillation student, or simply a faster model).

The kept layers are spread evenly over the stack, first and last included: 6 of 12 keeps layers
0, 2, 4, 7, 9, 11, the choice DistilBERT's student was initialised with. The model is then a normal
transformers model with `num_hidden_layers = N`: it saves, loads, exports and predicts like any other.
"""

from __future__ import annotations

import torch

from mlft.errors import ConfigError
from mlft.models.freeze import encoder_layers
from mlft.models.pruning import is_pruned, mark


def spread(total: int, keep: int) -> list[int]:
    """`keep` indices out of range(total), evenly spaced, first and last included (just the first for one)."""
    if keep == 1:
        return [0]
    return [round(i * (total - 1) / (keep - 1)) for i in range(keep)]


def keep_layers(model: torch.nn.Module, keep: int) -> list[int]:
    """Drops all but `keep` evenly spaced transformer layers (in place); returns the kept layers' old indices."""
    stack = encoder_layers(model, "model.num_layers")
    if not 1 <= keep <= len(stack):
        raise ConfigError(f"model.num_layers: the model has {len(stack)} layers, got {keep}")
    kept = spread(len(stack), keep)
    blocks = [stack[i] for i in kept]
    for i in reversed(range(len(stack))):
        del stack[i]
    stack.extend(blocks)
    # Layers that number themselves (attention caches, some variants) must agree with their new place.
    for new, block in enumerate(stack):
        for module in block.modules():
            if hasattr(module, "layer_idx"):
                module.layer_idx = new  # type: ignore[assignment]
    model.config.num_hidden_layers = keep  # type: ignore[union-attr]
    if is_pruned(model):  # the recorded per-layer sizes follow the kept layers
        mark(model)
    return kept
