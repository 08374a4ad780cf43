"""The teacher of a distillation run: a finished mlft run whose task, labels and vocabulary match the student's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlft.errors import ConfigError
from mlft.models.compact import CompactVocab, compact


def load_teacher(run_dir: str, task_type: str, labels: list[str], tokenizer: Any, vocab: CompactVocab | None) -> Any:
    """The teacher run's final model, checked against the student; compacted to the student's rows when the
    student trains a compact embedding matrix, so that both read the same input ids."""
    from mlft.runs import load_run

    saved = load_run(Path(run_dir))
    key = "distill.teacher"
    if saved.config.task.type != task_type:
        raise ConfigError(f"{key}: {run_dir} is a {saved.config.task.type} run; the student trains {task_type}")
    if saved.task.labels != labels:
        raise ConfigError(
            f"{key}: the teacher's labels ({', '.join(saved.task.labels)}) differ from the student's "
            f"({', '.join(labels)}); distill on data with the teacher's label set"
        )
    if saved.tokenizer.get_vocab() != tokenizer.get_vocab():
        raise ConfigError(
            f"{key}: the teacher's tokenizer ({len(saved.tokenizer)} tokens) is not the student's "
            f"({len(tokenizer)}): both must read the same input ids"
        )
    teacher = saved.model
    if vocab is not None:
        compact(teacher, vocab.old_ids)
    return teacher
