"""Evaluates a model on encoded splits per language: the shared core of training, `mlft eval` and reports."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mlft.data.feature_cache import Encoder
from mlft.engine.loop import predict_features
from mlft.errors import ConfigError
from mlft.tasks import Task


@dataclass
class EvalSet:
    """Examples of one split and language with their encoded features."""

    split: str
    lang: str
    examples: list[dict[str, Any]]
    features: list[dict[str, Any]]


def encode_sets(encode: Encoder, splits: dict[str, dict[str, list[dict[str, Any]]]]) -> list[EvalSet]:
    return [
        EvalSet(split, lang, examples, encode(examples, lang))
        for split in ("dev", "test")
        for lang, examples in splits.get(split, {}).items()
        if examples
    ]


def evaluate_sets(
    accelerator: Any, model: Any, task: Task, pad_id: int, sets: list[EvalSet], batch_size: int, progress: bool = False
) -> tuple[dict[str, dict[str, dict[str, Any]]], dict[tuple[str, str], list[dict[str, Any]]]]:
    """Returns metrics[split][lang] (with `n`) and predictions[(split, lang)]."""
    metrics: dict[str, dict[str, dict[str, Any]]] = {}
    predictions = {}
    for s in sets:
        outs = predict_features(
            accelerator,
            model,
            s.features,
            lambda f: task.collate(f, pad_id),
            task.outputs,
            batch_size,
            progress=progress,
            desc=f"eval {s.split}/{s.lang}",
        )
        preds = task.decode(s.examples, s.features, outs)
        metrics.setdefault(s.split, {})[s.lang] = {"n": len(s.examples), **task.score(s.examples, preds)}
        predictions[(s.split, s.lang)] = preds
    return metrics, predictions


def selection_langs(select: str, train_langs: list[str], dev_langs: list[str]) -> list[str]:
    """The dev languages whose mean score selects the weights.

    source_dev (and last/average, for logging and early stopping): the training languages, as in
    XTREME; every dev language when none of them has a dev set. target_dev: the languages not trained on.
    """
    if select == "target_dev":
        targets = [lang for lang in dev_langs if lang not in train_langs]
        if not targets:
            raise ConfigError(
                f"trainer.select: target_dev needs a dev set in a language not trained on "
                f"(dev languages: {', '.join(dev_langs) or 'none'}; trained on: {', '.join(train_langs)})"
            )
        return targets
    return [lang for lang in dev_langs if lang in train_langs] or list(dev_langs)


def selection_score(dev: dict[str, dict[str, Any]], metric: str, langs: list[str]) -> float | None:
    """Mean `metric` over the dev sets of `langs` (see selection_langs)."""
    present = [lang for lang in langs if lang in dev]
    if not present:
        return None
    return sum(dev[lang][metric] for lang in present) / len(present)
