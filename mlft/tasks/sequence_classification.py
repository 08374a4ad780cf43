"""Text and text-pair classification, single- or multi-label: examples of a text (and a second text) with a
label (or a list of labels), encode, decode, score, and raw text in, labels with probabilities out.
"""

from __future__ import annotations

import logging
import random
import sys
from collections import Counter
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification

from mlft.data import augment
from mlft.data.augment import Augmenter
from mlft.data.back_translation import back_translate
from mlft.data.readers import Cells
from mlft.errors import DataError
from mlft.models.pooling import MeanPoolingClassifier
from mlft.tasks.alignment import NO_SPACE_LANGS
from mlft.tasks.cache_key import encoding_key
from mlft.tasks.padding import input_batch
from mlft.tasks.protocol import BATCH, Example, Output
from mlft.tasks.types import SequenceClassificationType

log = logging.getLogger("mlft")
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
    batch = input_batch(features, pad_id, pad_to_multiple_of)
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
    # Imported here: scikit-learn brings pandas (a second), which predict and serve never need.
    from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, f1_score

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
    present = [label for label in labels if label in set(gold_l) | set(pred_l)]
    report = classification_report(gold_l, pred_l, labels=labels, output_dict=True, zero_division=0)
    return {
        "accuracy": float(accuracy_score(gold_l, pred_l)),
        # Over the classes the set has or predicts: a class absent from both would count as an F1 of 0.
        "macro_f1": float(f1_score(gold_l, pred_l, labels=present, average="macro", zero_division=0)),
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


def to_example(record: dict[str, Any], columns: dict[str, Any], loc: str, cells: Cells | None) -> Example:
    """A record with a text, an optional second text and a label (a string, an integer or a list of strings; in a
    table, a list is the cell split on data.label_separator). The label keeps its type until `check_spellings`."""
    names = {key: columns.get(key) or key for key in ("text", "text_pair", "label")}

    def get(key: str, required: bool = True) -> Any:
        if names[key] not in record:
            if required:
                raise DataError(f"{loc}: missing column {names[key]!r} (columns: {', '.join(map(str, record))})")
            return None
        return record[names[key]]

    text, label = get("text"), get("label")
    if not isinstance(text, str) or not text.strip():
        raise DataError(f"{loc}: {names['text']!r} must be a non-empty string, got {text!r}")
    if cells is not None and cells.list_separator and isinstance(label, str):
        label = [x.strip() for x in label.split(cells.list_separator) if x.strip()]
    strings = isinstance(label, list) and all(isinstance(v, str) for v in label)
    if not (isinstance(label, (str, int)) and not isinstance(label, bool)) and not strings:
        raise DataError(f"{loc}: {names['label']!r} must be a string, an integer or a list of strings, got {label!r}")
    pair = get("text_pair", required=bool(columns.get("text_pair")))  # a pair column named in data.columns
    if pair == "" and cells is not None:  # an empty cell of a table's pair column
        pair = None
    if pair is not None and not isinstance(pair, str):
        raise DataError(f"{loc}: {names['text_pair']!r} must be a string, got {pair!r}")
    return {"text": text, "text_pair": pair, "label": label}


def check_spellings(examples: list[Example]) -> None:
    """Makes every label a string (a list stays a list), refusing a label written both as a number and as a string
    (1 and "1": the same class to a reader, two classes to a JSON file's author)."""
    spellings: dict[str, tuple[Any, str]] = {}  # label text -> its first raw value and where it occurs
    problems = []
    for ex in examples:
        raw = ex["label"]
        if isinstance(raw, list):
            continue
        first, first_loc = spellings.setdefault(str(raw), (raw, ex["loc"]))
        if type(first) is not type(raw):
            problems.append(
                f"{ex['loc']}: label {raw!r} is the label {first!r} of {first_loc} written as a "
                f"{type(raw).__name__}; write every label the same way"
            )
        ex["label"] = str(raw)
    if problems:
        raise DataError(problems)


class SequenceClassification(SequenceClassificationType):
    """Text (pair) classification with its settings bound; see mlft.tasks.protocol.Task (its declaration:
    mlft.tasks.types)."""

    def __init__(self, labels: list[str], max_length: int, multi_label: bool, pooling: str = "first"):
        self.labels, self.max_length, self.multi_label = labels, max_length, multi_label
        self.model_class: Any = MeanPoolingClassifier if pooling == "mean" else AutoModelForSequenceClassification
        self.pad_to_multiple_of = 1
        probabilities: Literal["softmax", "sigmoid"] = "sigmoid" if multi_label else "softmax"
        self.model_outputs = (Output("logits", (BATCH, "labels"), probabilities),)

    @classmethod
    def build(cls, task: Any, model: Any, labels: list[str]) -> SequenceClassification:
        """From the run's task and model configs."""
        return cls(labels, model.max_length, task.multi_label, model.pooling)

    # Data
    def example(self, record: dict[str, Any], columns: dict[str, Any], loc: str, cells: Cells | None) -> Example:
        return to_example(record, columns, loc, cells)

    def convert_labels(self, examples: list[Example], scheme: str, repair: bool) -> None:
        check_spellings(examples)  # class names need no conversion, only one spelling each

    def label_names(self, example: Example) -> list[str]:
        return example["label"] if isinstance(example["label"], list) else [example["label"]]

    def relabel(self, example: Example, mapping: dict[str, str | None], dropped: Counter) -> Example | None:
        labels = self.label_names(example)
        mapped = [mapping.get(label, label) for label in labels]
        dropped.update(label for label, target in zip(labels, mapped) if target is None)
        kept = [m for m in mapped if m is not None]
        if isinstance(example["label"], list):
            example["label"] = kept
            return example
        if not kept:
            return None
        example["label"] = kept[0]
        return example

    def label_values(self, example: Example) -> list[str]:
        return self.label_names(example)

    def label_set(self, names: list[str], given: bool) -> list[str]:
        return list(names) if given else sorted(set(names))

    def training_problems(self, train: list[Example]) -> list[str]:
        if not train or self.multi_label:
            return []
        lists = [ex["loc"] for ex in train if isinstance(ex["label"], list)]
        if lists:
            return [
                f"{loc}: the label is a list, but task.multi_label is false (one label per text)" for loc in lists[:20]
            ]
        classes = sorted({ex["label"] for ex in train})
        if len(classes) < 2:
            where = train[0]["loc"].rsplit(":", 1)[0]
            only = f"every training example has the label {classes[0]!r}"
            return [f"{where}: {only}; a classifier needs at least two classes"]
        return []

    def filter_training(
        self, examples: list[Example], max_length: int | None, keep_unlabelled: float
    ) -> list[Example]:
        """`max_length` counts characters; every text has a label, so `keep_unlabelled` does not apply."""
        if max_length is not None:
            examples = [ex for ex in examples if len(ex["text"]) <= max_length]
        return examples

    # Model
    def model_inputs(self, tokenizer: Any) -> tuple[str, ...]:
        """Segment ids too where the tokenizer makes them (BERT types): the two texts of a pair are told apart."""
        names = ("input_ids", "attention_mask")
        return (*names, "token_type_ids") if "token_type_ids" in tokenizer.model_input_names else names

    def head_config(self) -> dict[str, Any]:
        return {
            "num_labels": len(self.labels),
            "id2label": dict(enumerate(self.labels)),
            "label2id": {label: i for i, label in enumerate(self.labels)},
            "problem_type": "multi_label_classification" if self.multi_label else "single_label_classification",
        }

    def cache_key(self) -> str:
        settings = {"labels": self.labels, "max_length": self.max_length, "multi_label": self.multi_label}
        return encoding_key({"task": self.name, **settings}, sys.modules[__name__])

    def encode(self, examples: list[Example], tokenizer: Any, lang: str) -> list[dict[str, Any]]:
        return encode(examples, tokenizer, self.labels, self.max_length, self.multi_label)

    def collate(self, features: list[dict[str, Any]], pad_id: int, training: bool = False) -> dict[str, torch.Tensor]:
        return collate(features, pad_id, self.pad_to_multiple_of)

    def outputs(self, scores: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return outputs(scores["logits"], self.multi_label)

    def decode(
        self, examples: list[Example], features: list[dict[str, Any]], outs: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        return decode(examples, features, outs, self.labels, self.multi_label)

    def augmenters(self, config: Any, examples: list[Example], lang: str) -> dict[str, Augmenter]:
        """EDA (swap, delete; with synonyms also replace and insert) and code-switching of the text's words
        (data.augment); a pair's second text stays as it is, so that its relation to the first is kept."""
        alpha = config.eda
        synonyms = augment.read_word_lists(config.synonyms, "data.augment.synonyms") if config.synonyms else None
        changes: dict[str, Callable[[list[str], random.Random], list[str]]] = {}
        if alpha:
            changes["eda_swap"] = lambda w, rng: augment.eda_swap(w, alpha, rng)
            changes["eda_delete"] = lambda w, rng: augment.eda_delete(w, alpha, rng)
        if alpha and synonyms:
            changes["eda_synonyms"] = lambda w, rng: augment.eda_synonyms(w, synonyms, alpha, rng)
            changes["eda_insert"] = lambda w, rng: augment.eda_insert(w, synonyms, alpha, rng)
        if config.code_switch:
            dictionary = augment.read_word_lists(config.dictionary, "data.augment.dictionary")
            changes["code_switch"] = lambda w, rng: augment.code_switch_words(w, dictionary, config.code_switch, rng)
        methods = {name: _on_words(change, lang) for name, change in changes.items()}
        if config.back_translation:
            paraphrase = back_translate([ex["text"] for ex in examples], config.back_translation, config.bt_langs)
            empty = sum(not paraphrase[ex["text"]].strip() for ex in examples)
            if empty:
                log.warning(
                    "back-translation: %d of %d texts came back empty from %s and add nothing",
                    empty,
                    len(examples),
                    " -> ".join(config.back_translation),
                )
            methods["back_translation"] = lambda ex, rng: {**ex, "text": paraphrase[ex["text"]] or ex["text"]}
        return methods

    def evaluate_inputs(self, examples: list[Example], predictions: list[dict[str, Any]]) -> tuple[list, list]:
        """(predictions, references) for an `evaluate` module: class ids, or 0/1 rows per text (multi-label)."""
        index = {label: i for i, label in enumerate(self.labels)}
        if self.multi_label:
            rows = [[int(label in chosen) for label in self.labels] for chosen in (p["label"] for p in predictions)]
            return rows, [[int(label in ex["label"]) for label in self.labels] for ex in examples]
        return [index[p["label"]] for p in predictions], [index[ex["label"]] for ex in examples]

    def score(self, examples: list[Example], predictions: list[dict[str, Any]]) -> dict[str, Any]:
        return score(examples, predictions, self.labels, self.multi_label)

    # Raw input
    def from_request(self, request: str | dict[str, Any], lang: str) -> tuple[Example | None, Any]:
        """A text, or a pair as text<TAB>text ({"text": ..., "text_pair": ...} in JSON)."""
        if isinstance(request, str):
            first, tab, second = request.partition("\t")
            example = {"text": first, "text_pair": second} if tab else {"text": request}
        else:
            text, pair = request.get("text"), request.get("text_pair")
            if not isinstance(text, str) or not isinstance(pair, (str, type(None))):
                raise DataError('expected {"text": "..."} ({"text": "...", "text_pair": "..."} for a pair)')
            example = {"text": text} if pair is None else {"text": text, "text_pair": pair}
        return (example if example["text"].strip() else None), None

    def to_record(self, request: str | dict[str, Any], context: Any, prediction: dict[str, Any] | None) -> dict:
        given = {"text": request} if isinstance(request, str) else {k: v for k, v in request.items() if k != "lang"}
        return {**given, "label": None, **(prediction or {})}

    def vocabulary_texts(self, examples: list[Example]) -> list[str]:
        return []


def _on_words(
    change: Callable[[list[str], random.Random], list[str]], default_lang: str
) -> Callable[[Example, random.Random], Example]:
    """A change of word lists applied to an example's text: words are space-separated, or for Chinese, Japanese,
    Thai, ... characters (jieba's words for Chinese when it is installed), joined back the same way."""

    def method(ex: Example, rng: random.Random) -> Example:
        lang = ex.get("lang") or default_lang
        if lang in NO_SPACE_LANGS:
            return {**ex, "text": "".join(change(_unspaced_words(ex["text"], lang), rng))}
        return {**ex, "text": " ".join(change(ex["text"].split(), rng))}

    return method


def _unspaced_words(text: str, lang: str) -> list[str]:
    if lang.split("-")[0] == "zh":
        try:
            import jieba
        except ImportError:
            return [ch for ch in text if not ch.isspace()]
        jieba.setLogLevel(60)  # its dictionary-loading chatter
        return [w for w in jieba.lcut(text) if w.strip()]
    return [ch for ch in text if not ch.isspace()]
