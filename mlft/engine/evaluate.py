"""Evaluates a model on encoded splits per language: the shared core of training, `mlft eval` and export checks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mlft.data.feature_cache import Encoder
from mlft.engine.predict import predict_features
from mlft.models.lang_adapters import language
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
        with language(accelerator.unwrap_model(model), s.lang):
            outs = predict_features(
                accelerator,
                model,
                s.features,
                task,
                pad_id,
                batch_size,
                progress=progress,
                desc=f"eval {s.split}/{s.lang}",
            )
        preds = task.decode(s.examples, s.features, outs)
        metrics.setdefault(s.split, {})[s.lang] = {"n": len(s.examples), **task.score(s.examples, preds)}
        predictions[(s.split, s.lang)] = preds
    return metrics, predictions
