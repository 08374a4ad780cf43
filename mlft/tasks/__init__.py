"""Task types: `TASKS` maps `task.type` to the class that implements mlft.tasks.protocol.Task.

Adding a task type is one module with one class (see the protocol) plus one entry here, or, from outside
the package, `TASKS["my_type"] = MyTask` before mlft runs; and a preset in configs/task/. The built-in types are
registered by their declarations (mlft.tasks.types), so that checking a config imports no model library; the
class that implements one is imported when a task is built.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from mlft.config import MASKED_LM, ModelConfig, RunConfig, TaskConfig
from mlft.data.load import LANG
from mlft.metric_spec import module_name
from mlft.tasks.evaluate_metric import EvaluateScored
from mlft.tasks.protocol import Example, Task
from mlft.tasks.types import BUILT_IN, SequenceClassificationType, TokenClassificationType

TASKS: dict[str, Any] = {kind.name: kind for kind in BUILT_IN}
"""task.type -> a class with `build(task_config, model_config, labels)`, `config_problems(task_config, model_config)`
and the members of the Task protocol, or the declaration of one (mlft.tasks.types, naming it in `implementation`)."""

__all__ = ["TASKS", "Example", "Task", "build_task", "config_problems", "higher_is_better"]


def implementation(kind: Any) -> Any:
    """The class that implements a registered task type (imported on first use for a declaration)."""
    path = getattr(kind, "implementation", None)
    if path is None:
        return kind
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def build_task(task: TaskConfig, model: ModelConfig, labels: list[str]) -> Task:
    built = implementation(TASKS[task.type]).build(task, model, labels)
    if task.evaluate:
        higher = task.higher_is_better if task.higher_is_better is not None else True
        return EvaluateScored(built, task.evaluate, higher)  # type: ignore[return-value]
    return built


def higher_is_better(task: TaskConfig) -> bool:
    """The direction of task.metric: a built-in metric's own, else task.higher_is_better (default true)."""
    builtin = TASKS[task.type].metrics if task.type in TASKS else {}
    if task.metric in builtin:
        return builtin[task.metric]
    return task.higher_is_better if task.higher_is_better is not None else True


def config_problems(run: RunConfig) -> list[str]:
    """What the task type says about the run's config: a known type, a metric it reports, its own settings."""
    kind = TASKS.get(run.task.type)
    if kind is None:
        return [f"task.type: {run.task.type!r} is not a task type (allowed: {', '.join(TASKS)})"]
    problems = list(kind.config_problems(run.task, run.model))
    if run.peft.method != "none" and not kind.peft_task_type:
        problems.append(f"peft.method: {run.task.type} runs train full weights (allowed: none)")
    if run.peft.method == "bottleneck" and kind.peft_task_type == MASKED_LM:
        # Its head's output layer is the word embeddings, which bottleneck adapters leave frozen; not built.
        problems.append("peft.method: bottleneck adapters train token and sequence classifiers (for masked-LM: lora)")
    if run.peft.lang_adapters and kind.peft_task_type == MASKED_LM:
        problems.append("peft.lang_adapters: a masked-LM run trains one language adapter (peft=lang_adapter)")
    problems += _column_problems(run, kind)
    return problems + _metric_problems(run.task, kind) + _loss_problems(run, kind) + _augment_problems(run, kind)


def _column_problems(run: RunConfig, kind: Any) -> list[str]:
    """data.columns and task.columns name the columns of the task type's own fields (and of `lang`); a name the
    type has no field of is a mistake, unless it only repeats the default (saved configs of older versions list
    every field of every type that way)."""
    known = (*kind.fields, *kind.optional_fields, LANG)
    problems = []
    for where, columns in (("data.columns", run.data.columns), ("task.columns", run.task.columns)):
        for key, column in columns.items():
            if key not in known and column not in (None, key):
                problems.append(f"{where}.{key}: {kind.name} has no field {key!r} (allowed: {', '.join(known)})")
    return problems


def _augment_problems(run: RunConfig, kind: Any) -> list[str]:
    """data.augment: each method for the task types it keeps labels right for, probabilities in [0, 1]."""
    a = run.data.augment
    ner, classification = kind.name == TokenClassificationType.name, kind.name == SequenceClassificationType.name
    problems = [
        f"data.augment.{key}: must be in [0, 1], got {value}"
        for key, value in vars(a).items()
        if isinstance(value, float) and not 0.0 <= value <= 1.0
    ]
    if a.copies < 1:
        problems.append(f"data.augment.copies: must be >= 1, got {a.copies}")
    for key in ("mention_replacement", "shuffle_segments"):
        if getattr(a, key) and not ner:
            problems.append(f"data.augment.{key}: only for NER (task type token_classification)")
    if a.back_translation is not None and (not classification or len(a.back_translation) != 2):
        problems.append(
            "data.augment.back_translation: two translation models, to the pivot language and back, for "
            "classification (task type sequence_classification)"
        )
    if a.bt_langs is not None and len(a.bt_langs) != 2:
        problems.append("data.augment.bt_langs: the texts' language code and the pivot's, e.g. [zho_Hans, eng_Latn]")
    if a.eda and not classification:
        problems.append("data.augment.eda: only for classification (task type sequence_classification)")
    if a.code_switch and not (ner or classification):
        problems.append("data.augment.code_switch: only for NER and classification")
    if a.code_switch and a.dictionary is None:
        problems.append("data.augment.dictionary: required with data.augment.code_switch (a bilingual dictionary)")
    if a.synonyms is not None and not a.eda:
        problems.append("data.augment.synonyms: used by EDA only; set data.augment.eda (e.g. 0.1)")
    for key in ("synonyms", "dictionary"):
        path = getattr(a, key)
        if path is not None and not Path(path).is_file():
            problems.append(f"data.augment.{key}: file not found: {path}")
    return problems


def _loss_problems(run: RunConfig, kind: Any) -> list[str]:
    """Loss options that need one softmax over labels per token or text (NER, single-label classification)."""
    softmax = kind.name in (TokenClassificationType.name, SequenceClassificationType.name) and not run.task.multi_label
    where = "NER and single-label classification"
    problems = []
    if run.task.label_smoothing and not softmax:
        problems.append(f"task.label_smoothing: only for {where}")
    if run.trainer.rdrop and not softmax:
        problems.append(f"trainer.rdrop: only for {where}")
    if run.task.class_weights is not None and not (softmax and kind.name == SequenceClassificationType.name):
        problems.append("task.class_weights: only for single-label classification (type=sequence_classification)")
    weights, labels = run.task.class_weights, run.task.labels
    if isinstance(weights, list) and labels is not None and len(weights) != len(labels):
        problems.append(
            f"task.class_weights: {len(weights)} numbers for {len(labels)} labels (task.labels: {', '.join(labels)})"
        )
    return problems


def _metric_problems(task: TaskConfig, kind: Any) -> list[str]:
    if task.evaluate is None:
        if task.metric not in kind.metrics:
            allowed = ", ".join(kind.metrics)
            return [f"task.metric: {task.metric!r} is not reported (allowed: {allowed}, or evaluate:<module>)"]
        return (
            ["task.higher_is_better: only for a metric of task.evaluate"] if task.higher_is_better is not None else []
        )
    name = module_name(task.evaluate)
    if not takes_evaluate_module(kind):
        return [
            f"task.evaluate: {task.type} predictions cannot go to an evaluate module (allowed for: "
            + ", ".join(t for t, k in TASKS.items() if takes_evaluate_module(k))
            + ")"
        ]
    if name in kind.metrics:
        return [f"task.evaluate: {name!r} is the built-in metric of that name; use task.metric={name}"]
    own = task.metric == name or task.metric.startswith(name + ".")
    if task.metric not in kind.metrics and not own:
        allowed = ", ".join([*kind.metrics, name, name + ".<key>"])
        return [f"task.metric: {task.metric!r} is not reported (allowed: {allowed})"]
    if task.higher_is_better is not None and not own:
        return ["task.higher_is_better: only for a metric of task.evaluate"]
    return []


def takes_evaluate_module(kind: Any) -> bool:
    """Whether the type's predictions can go to an evaluate module (a class of its own says so by having
    `evaluate_inputs`)."""
    return bool(getattr(kind, "evaluate_module", False)) or hasattr(kind, "evaluate_inputs")
