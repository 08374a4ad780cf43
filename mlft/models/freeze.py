"""Which encoder parameters train: frozen word embeddings, or embeddings plus the lowest layers."""

from __future__ import annotations

import torch
from transformers import PreTrainedModel

from mlft.errors import ConfigError


def encoder_layers(model: torch.nn.Module, key: str) -> torch.nn.ModuleList:
    """The stack of transformer blocks: `encoder.layer` in BERT/XLM-R, `transformer.layer` in DistilBERT, ..."""
    base = getattr(model, "base_model", model)
    for name, module in base.named_modules():
        if isinstance(module, torch.nn.ModuleList) and name.rsplit(".", 1)[-1] in ("layer", "layers"):
            return module
    raise ConfigError(f"{key}: cannot find the transformer layers of {type(model).__name__}")


def freeze(model: PreTrainedModel, embeddings: bool, layers: int) -> None:
    """Freezing the lowest `layers` blocks freezes everything under them too, so backward stops at the first
    trainable block: that saves compute, which freezing the word embeddings alone does not."""
    if embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
    if layers <= 0:
        return
    stack = encoder_layers(model, "model.freeze_layers")
    if layers > len(stack):
        raise ConfigError(f"model.freeze_layers: the model has {len(stack)} layers, got {layers}")
    model.get_input_embeddings().requires_grad_(False)
    base = getattr(model, "base_model", model)
    for module in base.modules():  # position/type embeddings and their LayerNorm sit beside the word embeddings
        if module is not base and "embeddings" in type(module).__name__.lower():
            module.requires_grad_(False)
    for block in stack[:layers]:
        block.requires_grad_(False)


def is_head(name: str, model: torch.nn.Module) -> bool:
    """Parameters outside the pretrained encoder: the task head (classifier, pooler of a new head)."""
    prefix = getattr(model, "base_model_prefix", "")
    return not (prefix and name.startswith(prefix + "."))
