"""An ensemble of finished runs as one model: the members' probabilities averaged, for every output the task reads.

Each averaged output is the log of the mean probabilities (softmax outputs) or their log-odds (multi-label sigmoid
outputs), so a task's own `outputs` turns it back into exactly the mean probabilities, NER's Viterbi decodes the
averaged per-token distributions, and a QA span search reads the averaged start and end distributions. Members must
agree on what the outputs mean: the same task type, the same labels in the same order, and the same tokenizer (so
one encoding of the input fits all).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from transformers.modeling_outputs import ModelOutput


class Ensemble(torch.nn.Module):
    def __init__(
        self,
        members: list[torch.nn.Module],
        inputs: tuple[str, ...],
        outputs: dict[str, Literal["softmax", "sigmoid"]],
    ):
        """`inputs`: what a batch gives the model; `outputs`: each output averaged, and how it is a probability."""
        super().__init__()
        self.members = torch.nn.ModuleList(members)
        self.inputs, self.outputs = inputs, outputs
        self.config = members[0].config  # what callers read: label maps, model type

    def forward(self, **batch: Any) -> ModelOutput:
        inputs = {k: v for k, v in batch.items() if k in self.inputs and v is not None}
        results = [member(**inputs) for member in self.members]
        averaged = {}
        for name, kind in self.outputs.items():
            scores = [result[name].float() for result in results]
            if kind == "sigmoid":
                mean = torch.stack([x.sigmoid() for x in scores]).mean(0).clamp(1e-7, 1 - 1e-7)
                averaged[name] = mean.log() - (1 - mean).log()
            else:
                averaged[name] = torch.stack([x.softmax(-1) for x in scores]).mean(0).clamp_min(1e-12).log()
        return ModelOutput(**averaged)


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
