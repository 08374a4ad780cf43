"""The teacher of a distillation run: a finished run's model whose task, labels and vocabulary match the student's."""

from __future__ import annotations

from typing import Any

from mlft.errors import ConfigError
from mlft.models.compact import CompactVocab, compact


def check_teacher(
    run_dir: str,
    teacher: tuple[str, list[str], Any, Any],
    student: tuple[str, list[str], Any],
    vocab: CompactVocab | None,
) -> Any:
    """The teacher's model, checked against the student: `teacher` is (task type, labels, tokenizer, model),
    `student` (task type, labels, tokenizer). Compacted to the student's rows when the student trains a
    compact embedding matrix, so that both read the same input ids."""
    (teacher_type, teacher_labels, teacher_tokenizer, model), (task_type, labels, tokenizer) = teacher, student
    key = "distill.teacher"
    if teacher_type != task_type:
        raise ConfigError(f"{key}: {run_dir} is a {teacher_type} run; the student trains {task_type}")
    if teacher_labels != labels:
        raise ConfigError(
            f"{key}: the teacher's labels ({', '.join(teacher_labels)}) differ from the student's "
            f"({', '.join(labels)}); distill on data with the teacher's label set"
        )
    if teacher_tokenizer.get_vocab() != tokenizer.get_vocab():
        raise ConfigError(
            f"{key}: the teacher's tokenizer ({len(teacher_tokenizer)} tokens) is not the student's "
            f"({len(tokenizer)}): both must read the same input ids"
        )
    if vocab is not None:
        compact(model, vocab.old_ids)
    return model
