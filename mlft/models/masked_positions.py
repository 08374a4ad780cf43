"""A masked-LM model whose output layer, when the call has labels, scores only the positions they label.

The output layer maps every position to the whole vocabulary: for multilingual-e5-small (384 hidden units,
250,037 tokens) that is ~4.5 times the encoder's multiply-adds per token, and a (batch, length, 250,037)
tensor of logits, although the loss only reads the ~15% masked positions. Two hooks keep the model's own
forward and loss: one on the model takes the labelled positions from `labels` (and keeps only their labels),
one on the output layer keeps only those positions' hidden states. The logits are then (masked positions,
vocabulary) in row-major order of the batch, and the loss is the same mean over the same positions. A call
without labels (prediction, export) is untouched. Hooks hold no weights: the saved model is a plain one.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import AutoModelForMaskedLM

IGNORE = -100


def score_masked_only(model: Any) -> Any:
    """Installs the two hooks on `model` (a transformers masked-LM model) and returns it."""
    positions: dict[str, torch.Tensor | None] = {"keep": None}

    def take_positions(module: Any, args: tuple, kwargs: dict[str, Any]) -> tuple[tuple, dict[str, Any]]:
        labels = kwargs.get("labels")
        positions["keep"] = None if labels is None else labels != IGNORE
        if labels is not None:
            kwargs = {**kwargs, "labels": labels[positions["keep"]]}
        return args, kwargs

    def keep_positions(module: Any, args: tuple) -> tuple | None:
        keep = positions["keep"]
        if keep is None or args[0].shape[:-1] != keep.shape:
            return None
        return (args[0][keep], *args[1:])

    model.register_forward_pre_hook(take_positions, with_kwargs=True)
    model.get_output_embeddings().register_forward_pre_hook(keep_positions)
    return model


class MaskedPositionsLM:
    """`AutoModelForMaskedLM` with `score_masked_only` installed: the model class of masked-LM runs."""

    @staticmethod
    def from_pretrained(*args: Any, **kwargs: Any) -> Any:
        return score_masked_only(AutoModelForMaskedLM.from_pretrained(*args, **kwargs))

    @staticmethod
    def from_config(*args: Any, **kwargs: Any) -> Any:
        return score_masked_only(AutoModelForMaskedLM.from_config(*args, **kwargs))
