"""Text and text-pair classification, single- or multi-label: encode, decode, score."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, f1_score
from transformers import AutoModelForSequenceClassification

from mlft.models.pooling import MeanPoolingClassifier
from mlft.tasks.padding import attention_mask, padded

MODEL_CLASS = AutoModelForSequenceClassification
THRESHOLD = 0.5  # multi-label: a label is predicted when its sigmoid probability reaches this


def encode(
    examples: list[dict[str, Any]],
    tokenizer: Any,
    labels: list[str],
    max_length: int,
    multi_label: bool,
) -> list[dict[str, Any]]:
    """One feature per example; texts longer than max_length are truncated (longest part first)."""
    label2id = {label: i for i, label in enumerate(labels)}
    texts = [ex["text"] for ex in examples]
    pairs = [ex.get("text_pair") for ex in examples]
    if any(p is not None for p in pairs):
        encoded = tokenizer(texts, [p or "" for p in pairs], truncation="longest_first", max_length=max_length)
    else:
        encoded = tokenizer(texts, truncation=True, max_length=max_length)
    features = []
    for index, ex in enumerate(examples):
        feature: dict[str, Any] = {"input_ids": encoded["input_ids"][index], "example": index}
        if "token_type_ids" in encoded:
            feature["token_type_ids"] = encoded["token_type_ids"][index]
        if "label" in ex:
            gold = ex["label"] if isinstance(ex["label"], list) else [ex["label"]]
            if multi_label:
                vector = [0.0] * len(labels)
                for label in gold:
                    vector[label2id[label]] = 1.0
                feature["labels"] = vector
            else:
                feature["labels"] = label2id[gold[0]]
        features.append(feature)
    return features


def collate(features: list[dict[str, Any]], pad_id: int, pad_to_multiple_of: int = 1) -> dict[str, torch.Tensor]:
    rows = [f["input_ids"] for f in features]
    ids = padded(rows, pad_id, pad_to_multiple_of)
    batch = {"input_ids": ids, "attention_mask": attention_mask(rows, ids.shape[1])}
    if "token_type_ids" in features[0]:
        batch["token_type_ids"] = padded([f["token_type_ids"] for f in features], 0, pad_to_multiple_of)
    if "labels" in features[0]:
        batch["labels"] = torch.tensor([f["labels"] for f in features])
    return batch


def outputs(logits: torch.Tensor, multi_label: bool) -> dict[str, torch.Tensor]:
    logits = logits.float()
    return {"probs": logits.sigmoid() if multi_label else logits.softmax(-1)}


def decode(
    examples: list[dict[str, Any]],
    features: list[dict[str, Any]],
    outs: list[dict[str, Any]],
    labels: list[str],
    multi_label: bool,
) -> list[dict[str, Any]]:
    predictions: list[dict[str, Any]] = [{} for _ in examples]
    for feature, out in zip(features, outs):
        probs = [float(p) for p in out["probs"]]
        if multi_label:
            chosen = [labels[i] for i, p in enumerate(probs) if p >= THRESHOLD]
            predictions[feature["example"]] = {"label": chosen, "scores": dict(zip(labels, probs))}
        else:
            best = int(np.argmax(probs))
            predictions[feature["example"]] = {
                "label": labels[best],
                "score": probs[best],
                "scores": dict(zip(labels, probs)),
            }
    return predictions


def score(
    examples: list[dict[str, Any]], predictions: list[dict[str, Any]], labels: list[str], multi_label: bool
) -> dict[str, Any]:
    """Accuracy, macro/micro F1, a per-class report and (single-label) the confusion matrix."""
    if multi_label:
        index = {label: i for i, label in enumerate(labels)}
        gold = np.zeros((len(examples), len(labels)), dtype=int)
        pred = np.zeros_like(gold)
        for row, (ex, p) in enumerate(zip(examples, predictions)):
            gold[row, [index[x] for x in ex["label"]]] = 1
            pred[row, [index[x] for x in p["label"]]] = 1
        report = classification_report(gold, pred, target_names=labels, output_dict=True, zero_division=0)
        return {
            "accuracy": float(accuracy_score(gold, pred)),  # exact match of the label set
            "macro_f1": float(f1_score(gold, pred, average="macro", zero_division=0)),
            "micro_f1": float(f1_score(gold, pred, average="micro", zero_division=0)),
            "per_class": _per_class(report, labels),
        }
    gold_l = [ex["label"] for ex in examples]
    pred_l = [p["label"] for p in predictions]
    report = classification_report(gold_l, pred_l, labels=labels, output_dict=True, zero_division=0)
    return {
        "accuracy": float(accuracy_score(gold_l, pred_l)),
        "macro_f1": float(f1_score(gold_l, pred_l, labels=labels, average="macro", zero_division=0)),
        "micro_f1": float(f1_score(gold_l, pred_l, labels=labels, average="micro", zero_division=0)),
        "per_class": _per_class(report, labels),
        "confusion_matrix": {"labels": labels, "matrix": confusion_matrix(gold_l, pred_l, labels=labels).tolist()},
    }


def _per_class(report: dict[str, Any], labels: list[str]) -> dict[str, Any]:
    return {
        label: {
            "precision": report[label]["precision"],
            "recall": report[label]["recall"],
            "f1": report[label]["f1-score"],
            "support": int(report[label]["support"]),
        }
        for label in labels
        if label in report
    }


class SequenceClassification:
    """Text (pair) classification with its settings bound; see mlft.tasks.Task."""

    def __init__(self, labels: list[str], max_length: int, multi_label: bool, pooling: str = "first"):
        self.labels, self.max_length, self.multi_label = labels, max_length, multi_label
        self.model_class: Any = MeanPoolingClassifier if pooling == "mean" else MODEL_CLASS
        self.pad_to_multiple_of = 1
        self.problem_type: str | None = "multi_label_classification" if multi_label else "single_label_classification"

    def encode(self, examples: list[dict[str, Any]], tokenizer: Any, lang: str) -> list[dict[str, Any]]:
        return encode(examples, tokenizer, self.labels, self.max_length, self.multi_label)

    def collate(self, features: list[dict[str, Any]], pad_id: int) -> dict[str, torch.Tensor]:
        return collate(features, pad_id, self.pad_to_multiple_of)

    def outputs(self, logits: torch.Tensor) -> dict[str, torch.Tensor]:
        return outputs(logits, self.multi_label)

    def decode(
        self, examples: list[dict[str, Any]], features: list[dict[str, Any]], outs: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        return decode(examples, features, outs, self.labels, self.multi_label)

    def score(self, examples: list[dict[str, Any]], predictions: list[dict[str, Any]]) -> dict[str, Any]:
        return score(examples, predictions, self.labels, self.multi_label)
