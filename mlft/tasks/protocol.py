"""What every task type provides: the one seam between a problem type and the rest of mlft.

A task type is a class registered in `mlft.tasks.TASKS` under the name `task.type` selects. Everything that
differs between problem types lives behind these members: how a data record becomes an example and is
checked, its labels, encoding and batching, decoding and scoring, the model head, and how raw text is
predicted. Readers, the training loop, reports, export and serving only call them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

from mlft.data.readers import Cells

if TYPE_CHECKING:  # checking a config reads the task types' declarations without importing torch
    import torch

Example = dict[str, Any]
"""One example in a task's standard fields, plus `loc` (file:line) and optionally `lang`."""

BATCH, LENGTH = "batch", "length"
"""The axes of a model input or output that vary between calls (an exported graph's dynamic axes)."""


@dataclass(frozen=True)
class Output:
    """One output of the model a task reads, as the task declares it; ensembles, distillation, R-Drop and the ONNX
    export handle every declared output alike."""

    name: str
    """The output's name: a key of the model's return value, and the output of an exported graph."""
    axes: tuple[str, ...]
    """What each axis is: BATCH, LENGTH (the input's positions) or what the last axis ranges over (labels,
    vocabulary). The last axis holds scores of one distribution; with LENGTH before it, one per position, counted
    where the batch's `labels` are set (NER); a QA start score ranges over the positions themselves."""
    probabilities: Literal["softmax", "sigmoid"] = "softmax"
    """How scores become probabilities: one distribution over the last axis (softmax), or one yes/no per entry
    (sigmoid: multi-label)."""

    @property
    def per_position(self) -> bool:
        """One distribution per input position (masked by the batch's labels), not one per row."""
        return LENGTH in self.axes[:-1]


class Task(Protocol):
    name: str
    """The registry key (task.type)."""
    metrics: dict[str, bool]
    """Reported metrics in table order -> whether higher is better. task.metric must be one of them."""
    model_class: Any
    """The transformers Auto class (or a compatible class) of the model with its head."""
    pipeline_tag: str
    """The Hub pipeline tag of an exported model."""
    peft_task_type: str
    """The `peft` TaskType of the head (TOKEN_CLS, SEQ_CLS, ...; mlft.config.MASKED_LM for a masked-LM
    head, which peft has no type for); empty: the task type trains full weights only."""
    plain_files: str | None
    """What a data file that is not JSONL, CSV or TSV holds for this task: "conll" (one token and tag per line),
    "text" (one text per line), or None (no such files)."""
    fields: tuple[str, ...]
    """The standard fields every record must have (data.columns names the column of each)."""
    optional_fields: tuple[str, ...]
    """Fields a record may have (a pair's second text, a question's id); data.columns may name their columns too."""
    column_fallbacks: dict[str, tuple[str, ...]]
    """Column names hub datasets commonly use for a field, tried when the configured one is absent."""
    labels: list[str]
    pad_to_multiple_of: int
    """Batch widths are rounded up to this (8 suits GPU tensor cores; on CPU padding is only waste)."""
    evaluate_before: bool
    """Whether a run also scores the model before training (the change is the result: masked-LM adaptation)."""

    # Data: records in, checked examples out.
    def example(self, record: dict[str, Any], columns: dict[str, Any], loc: str, cells: Cells | None) -> Example:
        """A data record -> a standard example; raises DataError naming `loc`. `columns`: the column of each field
        that is not named like the field. `cells`: the record comes from a table (CSV/TSV), so every value is a
        string, and this says how lists are spelled in it."""

    def convert_labels(self, examples: list[Example], scheme: str, repair: bool) -> None:
        """Converts labels in place to the scheme the task trains on (NER: IOB2); raises DataError with every
        invalid one."""

    def label_names(self, example: Example) -> list[str]:
        """The names a label map renames (entity types, classes)."""

    def relabel(self, example: Example, mapping: dict[str, str | None], dropped: Counter) -> Example | None:
        """The example with its label names mapped (None drops a name; counted in `dropped`); None drops it."""

    def label_values(self, example: Example) -> list[str]:
        """The values of `labels` the example uses (NER: its tags; classification: its classes)."""

    def label_set(self, names: list[str], given: bool) -> list[str]:
        """The model's labels: from the training data's label names, or `given` by the config (task.labels;
        NER: O and B-/I- per type either way; classification: sorted, or as given)."""

    def training_problems(self, train: list[Example]) -> list[str]:
        """Training data nothing can be learnt from (one class, no entity, ...), each naming where."""

    def filter_training(
        self, examples: list[Example], max_length: int | None, keep_unlabelled: float
    ) -> list[Example]:
        """Training examples within `max_length` (the task's unit) and, where examples can lack labels (NER
        sentences without entities), a seeded `keep_unlabelled` fraction of those."""

    # Model: examples -> features -> batches -> outputs -> predictions -> metrics.
    model_outputs: tuple[Output, ...]
    """The model outputs the task reads (logits; or start and end scores), in the order an exported graph has them."""

    def model_inputs(self, tokenizer: Any) -> tuple[str, ...]:
        """The tensors a batch gives the model (input_ids, attention_mask, token_type_ids, ...), in the order an
        exported graph takes them."""

    def head_config(self) -> dict[str, Any]:
        """Config keys of the model head for `labels` (num_labels, id2label, label2id, problem_type)."""

    def cache_key(self) -> str:
        """Everything `encode` depends on besides tokenizer, language and examples (settings, code)."""

    def encode(self, examples: list[Example], tokenizer: Any, lang: str) -> list[dict[str, Any]]:
        """Examples -> model features; each feature's `example` is the index of its example."""

    def collate(self, features: list[dict[str, Any]], pad_id: int, training: bool = False) -> dict[str, torch.Tensor]:
        """Features -> a padded batch of model inputs (labels included when present). `training`: a training batch,
        which may be randomised (masking); evaluation batches must be the same every time."""

    def outputs(self, scores: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The declared model outputs of a batch (and the batch) -> the per-feature tensors evaluation gathers
        across processes."""

    def decode(
        self, examples: list[Example], features: list[dict[str, Any]], outs: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """Per-feature outputs -> one prediction per example, on the example's own tokens."""

    def score(self, examples: list[Example], predictions: list[dict[str, Any]]) -> dict[str, Any]:
        """Metrics of predictions against the examples' gold labels (every key of `metrics` included)."""

    # Raw input: what `mlft predict` and `mlft serve` read and write.
    def from_request(self, request: str | dict[str, Any], lang: str) -> tuple[Example, Any]:
        """A line of raw text, or a JSON object of the task's fields -> an example and what `to_record` needs to
        map the prediction back onto the input; raises DataError saying what is wrong (the caller says where)."""

    def to_record(self, request: str | dict[str, Any], context: Any, prediction: dict[str, Any] | None) -> dict:
        """The JSON record of a prediction (None: an empty line, predicted as nothing)."""

    def vocabulary_texts(self, examples: list[Example]) -> list[str]:
        """Extra strings whose pieces a trimmed vocabulary must keep, besides what `encode` feeds the model."""


class WithoutClasses:
    """The label members of a task type whose examples have no classes (masked-LM text, QA answer spans)."""

    def label_names(self, example: Example) -> list[str]:
        return []

    def relabel(self, example: Example, mapping: dict[str, str | None], dropped: Counter) -> Example | None:
        return example

    def label_values(self, example: Example) -> list[str]:
        return []

    def label_set(self, names: list[str], given: bool) -> list[str]:
        return []
