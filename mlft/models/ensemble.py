"""An ensemble of finished runs as one model: the members' probabilities averaged.

The ensemble's "logits" are the log of the mean probabilities (softmax heads) or their log-odds (multi-label
sigmoid heads), so a task's own `outputs` turns them back into exactly the mean probabilities, and NER's Viterbi
decodes the averaged per-token distributions. Members must agree on what the outputs mean: the same task type,
the same labels in the same order, and the same tokenizer (so one encoding of the input fits all).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from transformers.modeling_outputs import ModelOutput


@dataclass
class EnsembleOutput(ModelOutput):
    """A ModelOutput, so that torch.onnx traces the ensemble like any transformers model."""

    logits: torch.Tensor | None = None


class Ensemble(torch.nn.Module):
    def __init__(self, members: list[torch.nn.Module], multi_label: bool):
        super().__init__()
        self.members = torch.nn.ModuleList(members)
        self.multi_label = multi_label
        self.config = members[0].config  # what callers read: label maps, model type

    def forward(
        self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None, **batch: Any
    ) -> EnsembleOutput:
        # The named inputs are what torch.onnx passes by name (it drops what only **batch would take).
        batch.update(input_ids=input_ids, attention_mask=attention_mask)
        inputs = {k: v for k, v in batch.items() if k != "labels" and v is not None}
        logits = [member(**inputs).logits.float() for member in self.members]
        if self.multi_label:
            mean = torch.stack([x.sigmoid() for x in logits]).mean(0).clamp(1e-7, 1 - 1e-7)
            return EnsembleOutput(mean.log() - (1 - mean).log())
        mean = torch.stack([x.softmax(-1) for x in logits]).mean(0)
        return EnsembleOutput(mean.clamp_min(1e-12).log())


@dataclass(frozen=True)
class Member:
    """What must agree between the runs of an ensemble."""

    path: str
    task_type: str
    multi_label: bool
    labels: list[str]
    vocab: dict[str, int]
    routed: bool
    """Whether the run has language adapters (not supported in an ensemble)."""


def member_problems(members: list[Member]) -> list[str]:
    """Why these runs cannot form an ensemble, each naming the run that differs from the first."""
    if len(members) < 2:
        return [f"runs: an ensemble needs at least 2 runs, got {len(members)}"]
    first = members[0]
    problems = []
    for m in members:
        if m.routed:
            problems.append(f"runs: {m.path} has language adapters, which an ensemble cannot route yet")
    for m in members[1:]:
        if (m.task_type, m.multi_label) != (first.task_type, first.multi_label):
            problems.append(f"runs: {m.path} is a {m.task_type} run, {first.path} a {first.task_type} run")
        elif m.labels != first.labels:
            problems.append(
                f"runs: {m.path} has labels {', '.join(m.labels)}; {first.path} has {', '.join(first.labels)}"
            )
        if m.vocab != first.vocab:
            problems.append(f"runs: {m.path} has another tokenizer than {first.path} (the input is encoded once)")
    return problems
