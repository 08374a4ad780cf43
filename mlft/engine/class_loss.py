"""The training loss of NER and single-label classification recomputed from the label scores when it must differ
from the model's own cross-entropy: label smoothing (Szegedy et al. 2016) and class weights for skewed classes."""

from __future__ import annotations

from collections import Counter
from typing import Any

import torch
import torch.nn.functional as F

from mlft.engine.hooks import REPLACE_LOSS
from mlft.engine.rdrop import IGNORED


def balanced_weights(labels: list[str], train_labels: list[str]) -> list[float]:
    """n / (k × count of the class) per label, as scikit-learn's class_weight="balanced"; a label the training data
    lacks gets the weight of a class seen once."""
    counts = Counter(train_labels)
    n, k = len(train_labels), len(labels)
    return [n / (k * max(counts[label], 1)) for label in labels]


def attach_class_loss(hooks: Any, smoothing: float, weights: list[float] | None, output: str) -> None:
    """Replaces the model's loss first in the chain, so distillation and R-Drop build on it; `output`: the task's
    output of scores over its labels."""
    weight = torch.tensor(weights, dtype=torch.float32) if weights is not None else None

    def loss(batch: dict[str, torch.Tensor], result: Any, model_loss: torch.Tensor) -> torch.Tensor:
        scores = result[output].float()
        w = weight.to(scores.device) if weight is not None else None
        flat = scores.view(-1, scores.shape[-1])
        return F.cross_entropy(
            flat, batch["labels"].view(-1), weight=w, ignore_index=IGNORED, label_smoothing=smoothing
        )

    hooks.add("loss", loss, REPLACE_LOSS)
