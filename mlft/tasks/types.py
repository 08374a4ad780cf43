"""What each built-in task type declares about itself: its name, example fields, metrics, head type and the config
problems it checks. This is what validating a config needs, so it imports no torch, transformers or scikit-learn
(they take seconds to import, and a config error should not): each task module's class inherits its declaration
here and `implementation` names that class, imported only to build the task.
"""

from __future__ import annotations

from typing import Any

from mlft.config import MASKED_LM


class TokenClassificationType:
    name = "token_classification"
    implementation = "mlft.tasks.token_classification:TokenClassification"
    metrics = {"f1": True, "precision": True, "recall": True, "accuracy": True}
    pipeline_tag = "token-classification"
    peft_task_type = "TOKEN_CLS"
    plain_files: str | None = "conll"
    evaluate_before = False
    fields: tuple[str, ...] = ("tokens", "tags")
    optional_fields: tuple[str, ...] = ()
    column_fallbacks: dict[str, tuple[str, ...]] = {"tags": ("ner_tags",)}
    evaluate_module = True
    """Its predictions can go to an evaluate module (task.evaluate)."""

    @staticmethod
    def config_problems(task: Any, model: Any) -> list[str]:
        return ["task.multi_label: only for type=sequence_classification"] if task.multi_label else []


class SequenceClassificationType:
    name = "sequence_classification"
    implementation = "mlft.tasks.sequence_classification:SequenceClassification"
    metrics = {"accuracy": True, "macro_f1": True, "micro_f1": True}
    pipeline_tag = "text-classification"
    peft_task_type = "SEQ_CLS"
    plain_files: str | None = None
    evaluate_before = False
    fields: tuple[str, ...] = ("text", "label")
    optional_fields: tuple[str, ...] = ("text_pair",)
    column_fallbacks: dict[str, tuple[str, ...]] = {
        "text": ("sentence", "premise", "sentence1"),
        "text_pair": ("hypothesis", "sentence2"),
    }
    evaluate_module = True

    @staticmethod
    def config_problems(task: Any, model: Any) -> list[str]:
        return []


class MaskedLMType:
    name = "masked_lm"
    implementation = "mlft.tasks.masked_lm:MaskedLM"
    metrics = {"loss": False, "perplexity": False, "accuracy": True}
    pipeline_tag = "fill-mask"
    peft_task_type = MASKED_LM  # an adapter trained this way is a language adapter
    plain_files: str | None = "text"
    evaluate_before = True  # the change of held-out loss is what the run is for
    fields: tuple[str, ...] = ("text",)
    optional_fields: tuple[str, ...] = ("tokens",)  # a tokenised sentence (column files, packaged NER corpora)
    column_fallbacks: dict[str, tuple[str, ...]] = {"text": ("sentence", "premise", "sentence1")}
    evaluate_module = False

    @staticmethod
    def config_problems(task: Any, model: Any) -> list[str]:
        problems = ["task.multi_label: only for type=sequence_classification"] if task.multi_label else []
        if task.label_map is not None:
            problems.append("task.label_map: masked-LM text has no labels to map")
        return problems


class QuestionAnsweringType:
    name = "question_answering"
    implementation = "mlft.tasks.question_answering:QuestionAnswering"
    metrics = {"f1": True, "exact_match": True}
    pipeline_tag = "question-answering"
    peft_task_type = "QUESTION_ANS"
    plain_files: str | None = None
    evaluate_before = False
    fields: tuple[str, ...] = ("question", "context", "answers")
    optional_fields: tuple[str, ...] = ("id",)
    column_fallbacks: dict[str, tuple[str, ...]] = {}
    evaluate_module = True

    @staticmethod
    def config_problems(task: Any, model: Any) -> list[str]:
        problems = [
            f"task.{key}: must be >= 1, got {getattr(task, key)}"
            for key in ("max_question_length", "max_answer_length", "n_best")
            if getattr(task, key) < 1
        ]
        for key in ("multi_label", "label_map", "labels", "class_weights"):
            if getattr(task, key) not in (False, None):
                problems.append(f"task.{key}: question answering has no classes (answers are spans)")
        room = model.max_length - task.max_question_length - 4  # special tokens of a pair: 3 (BERT) or 4 (XLM-R)
        if room <= model.stride:
            problems.append(
                f"model.stride: windows overlap by {model.stride} tokens, but only {room} of model.max_length="
                f"{model.max_length} are left for the context after the question (task.max_question_length="
                f"{task.max_question_length}) and special tokens; lower model.stride or raise model.max_length"
            )
        return problems


BUILT_IN = (TokenClassificationType, SequenceClassificationType, MaskedLMType, QuestionAnsweringType)
