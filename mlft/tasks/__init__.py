"""Problem types behind one small protocol; `build_task` picks the implementation by the task's `type`."""

from __future__ import annotations

from typing import Any, Protocol

import torch

from mlft.config import ModelConfig, TaskConfig
from mlft.tasks.sequence_classification import SequenceClassification
from mlft.tasks.token_classification import TokenClassification


class Task(Protocol):
    model_class: Any
    """The transformers Auto class of the model head."""
    pad_to_multiple_of: int
    """Batch widths are rounded up to this (8 suits GPU tensor cores; on CPU padding is only waste)."""
    problem_type: str | None
    labels: list[str]

    def encode(self, examples: list[dict[str, Any]], tokenizer: Any, lang: str) -> list[dict[str, Any]]:
        """Examples -> model features; each feature's `example` is the index of its example."""

    def collate(self, features: list[dict[str, Any]], pad_id: int) -> dict[str, torch.Tensor]:
        """Features -> a padded batch of model inputs (labels included when present)."""

    def outputs(self, logits: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits -> the per-feature tensors evaluation gathers across processes."""

    def decode(
        self, examples: list[dict[str, Any]], features: list[dict[str, Any]], outs: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """Per-feature outputs -> one prediction per example, on the example's own tokens."""

    def score(self, examples: list[dict[str, Any]], predictions: list[dict[str, Any]]) -> dict[str, Any]:
        """Metrics of predictions against the examples' gold labels."""


def build_task(task: TaskConfig, model: ModelConfig, labels: list[str]) -> Task:
    if task.type == "token_classification":
        return TokenClassification(labels, model.max_length, model.stride, task.decoding)
    return SequenceClassification(labels, model.max_length, task.multi_label, model.pooling)
