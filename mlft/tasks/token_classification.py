"""Token classification (NER): encode with exact word alignment, decode to the dataset's own tokens, score.

Gold tags always come from the examples themselves, never from subtoken labels, so truncation or
tokenization can never change what is scored.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import torch
from seqeval.metrics import accuracy_score, classification_report
from seqeval.scheme import IOB2
from transformers import AutoModelForTokenClassification

from mlft.data.schemes import to_iob2
from mlft.tasks.alignment import NO_SPACE_LANGS, Aligner, encode_words
from mlft.tasks.padding import attention_mask, padded
from mlft.tasks.viterbi import transitions, viterbi

MODEL_CLASS = AutoModelForTokenClassification
_WORD = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def encode(
    examples: list[dict[str, Any]], aligner: Aligner, labels: list[str], lang: str, max_length: int, stride: int
) -> list[dict[str, Any]]:
    """One or more features (windows) per example; `example` points back to the sentence."""
    label2id = {label: i for i, label in enumerate(labels)}
    features = []
    for index, ex in enumerate(examples):
        label_ids = [label2id[t] for t in ex["tags"]] if "tags" in ex else None
        for feature in encode_words(aligner, ex["tokens"], label_ids, lang, max_length, stride):
            feature["example"] = index
            features.append(feature)
    return features


def collate(features: list[dict[str, Any]], pad_id: int, pad_to_multiple_of: int = 1) -> dict[str, torch.Tensor]:
    rows = [f["input_ids"] for f in features]
    ids = padded(rows, pad_id, pad_to_multiple_of)
    return {
        "input_ids": ids,
        "attention_mask": attention_mask(rows, ids.shape[1]),
        "labels": padded([f["labels"] for f in features], -100, pad_to_multiple_of),
    }


def outputs(logits: torch.Tensor) -> dict[str, torch.Tensor]:
    """What evaluation keeps of the logits: log-probabilities of every label at every position."""
    return {"logprobs": logits.float().log_softmax(-1)}


def decode(
    examples: list[dict[str, Any]],
    features: list[dict[str, Any]],
    outs: list[dict[str, Any]],
    labels: list[str],
    decoding: str = "viterbi",
) -> list[dict[str, Any]]:
    """Per example: IOB2 tags and their probabilities on the example's own tokens."""
    words = [np.zeros((len(ex["tokens"]), len(labels))) for ex in examples]
    for feature, out in zip(features, outs):
        logprobs = out["logprobs"].numpy()
        for position, word in feature["positions"]:
            words[feature["example"]][word] = logprobs[position]
    start, moves = transitions(labels)
    predictions = []
    for logprobs in words:
        if decoding == "viterbi":
            ids = viterbi(logprobs, start, moves)
            tags = [labels[i] for i in ids]
        else:  # argmax; a predicted I-X after O starts an entity, as in conlleval (gold is never repaired)
            ids = [int(i) for i in logprobs.argmax(-1)]
            tags = to_iob2([labels[i] for i in ids], "IOB2", repair=True)[0]
        scores = [float(np.exp(logprobs[t, i])) for t, i in enumerate(ids)]
        predictions.append({"tags": tags, "scores": scores})
    return predictions


def score(examples: list[dict[str, Any]], predictions: list[dict[str, Any]]) -> dict[str, Any]:
    """Strict entity-level seqeval P/R/F1 (overall and per type) and token accuracy."""
    gold = [ex["tags"] for ex in examples]
    pred = [p["tags"] for p in predictions]
    report = classification_report(gold, pred, mode="strict", scheme=IOB2, output_dict=True, zero_division=0)
    micro = report.get("micro avg", {"precision": 0.0, "recall": 0.0, "f1-score": 0.0, "support": 0})
    per_type = {
        name: {"precision": v["precision"], "recall": v["recall"], "f1": v["f1-score"], "support": int(v["support"])}
        for name, v in report.items()
        if not name.endswith(" avg")
    }
    return {
        "f1": micro["f1-score"],
        "precision": micro["precision"],
        "recall": micro["recall"],
        "accuracy": accuracy_score(gold, pred),
        "entities": int(micro["support"]),
        "per_type": per_type,
    }


def split_text(text: str, lang: str) -> tuple[list[str], list[tuple[int, int]]]:
    """Raw text -> tokens and character spans: characters for zh/ja/th, words and punctuation otherwise."""
    if lang in NO_SPACE_LANGS:
        spans = [(i, i + 1) for i, ch in enumerate(text) if not ch.isspace()]
    else:
        spans = [m.span() for m in _WORD.finditer(text)]
    return [text[a:b] for a, b in spans], spans


def entities(text: str, spans: list[tuple[int, int]], prediction: dict[str, Any]) -> list[dict[str, Any]]:
    """Entities with character offsets into `text` and the mean probability of their tokens."""
    found = []
    start = None
    tags = prediction["tags"] + ["O"]
    for i, tag in enumerate(tags):
        if start is not None and not (tag.startswith("I-") and tag[2:] == tags[start][2:]):
            a, b = spans[start][0], spans[i - 1][1]
            token_scores = prediction["scores"][start:i]
            found.append(
                {
                    "text": text[a:b],
                    "type": tags[start][2:],
                    "start": a,
                    "end": b,
                    "score": round(sum(token_scores) / len(token_scores), 4),
                }
            )
            start = None
        if tag.startswith("B-"):
            start = i
    return found


class TokenClassification:
    """The NER task with its settings bound; see mlft.tasks.Task."""

    model_class = MODEL_CLASS
    problem_type: str | None = None

    def __init__(self, labels: list[str], max_length: int, stride: int, decoding: str = "viterbi"):
        self.labels, self.max_length, self.stride, self.decoding = labels, max_length, stride, decoding
        self.pad_to_multiple_of = 1
        self._aligner: Aligner | None = None

    def encode(self, examples: list[dict[str, Any]], tokenizer: Any, lang: str) -> list[dict[str, Any]]:
        # One aligner per tokenizer: building it reads the whole vocabulary (250k pieces for XLM-R), which
        # dominated the latency of small `mlft serve` requests.
        if self._aligner is None or self._aligner.tokenizer is not tokenizer:
            self._aligner = Aligner(tokenizer)
        return encode(examples, self._aligner, self.labels, lang, self.max_length, self.stride)

    def collate(self, features: list[dict[str, Any]], pad_id: int) -> dict[str, torch.Tensor]:
        return collate(features, pad_id, self.pad_to_multiple_of)

    def outputs(self, logits: torch.Tensor) -> dict[str, torch.Tensor]:
        return outputs(logits)

    def decode(
        self, examples: list[dict[str, Any]], features: list[dict[str, Any]], outs: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        return decode(examples, features, outs, self.labels, self.decoding)

    def score(self, examples: list[dict[str, Any]], predictions: list[dict[str, Any]]) -> dict[str, Any]:
        return score(examples, predictions)
