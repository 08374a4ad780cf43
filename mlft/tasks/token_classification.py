"""Token classification (NER): examples of tokens and tags, exact word alignment, decoding on the dataset's own
tokens, strict entity-level seqeval F1, and raw text in, entities with character offsets out.

Gold tags always come from the examples themselves, never from subtoken labels, so truncation or
tokenization can never change what is scored.
"""

from __future__ import annotations

import random
import re
import sys
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from transformers import AutoModelForTokenClassification

from mlft.data import augment
from mlft.data.augment import Augmenter
from mlft.data.readers import Cells
from mlft.data.schemes import ALIASES, guess_scheme, iob2_labels, split_tag, to_iob2
from mlft.errors import DataError
from mlft.tasks import alignment
from mlft.tasks.alignment import NO_SPACE_LANGS, Aligner, encode_words
from mlft.tasks.cache_key import encoding_key
from mlft.tasks.padding import attention_mask, padded
from mlft.tasks.protocol import BATCH, LENGTH, Example, Output
from mlft.tasks.types import TokenClassificationType
from mlft.tasks.viterbi import transitions, viterbi

_WORD = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def encode(
    examples: list[Example], aligner: Aligner, labels: list[str], lang: str, max_length: int, stride: int
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


def decode(
    examples: list[Example],
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


def score(examples: list[Example], predictions: list[dict[str, Any]]) -> dict[str, Any]:
    """Strict entity-level seqeval P/R/F1 (overall and per type) and token accuracy."""
    # Imported here: seqeval brings scikit-learn and pandas (a second), which predict and serve never need.
    from seqeval.metrics import accuracy_score, classification_report
    from seqeval.scheme import IOB2

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


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def to_example(record: dict[str, Any], columns: dict[str, Any], loc: str, cells: Cells | None) -> Example:
    """A record with a token list and a tag list (a table holds both space-separated) -> an example."""
    names = {key: columns.get(key) or key for key in ("tokens", "tags")}
    for name in names.values():
        if name not in record:
            raise DataError(f"{loc}: missing column {name!r} (columns: {', '.join(map(str, record))})")
    tokens, tags = record[names["tokens"]], record[names["tags"]]
    if cells is not None:
        tokens, tags = str(tokens).split(), str(tags).split()
    if not _strings(tokens) or not _strings(tags):
        raise DataError(f"{loc}: {names['tokens']!r} and {names['tags']!r} must be lists of strings")
    if len(tokens) != len(tags):
        raise DataError(f"{loc}: {len(tokens)} tokens but {len(tags)} tags")
    if not tokens:
        raise DataError(f"{loc}: empty sentence")
    return {"tokens": tokens, "tags": tags}


def convert_tags(examples: list[Example], scheme: str, repair: bool) -> None:
    """Converts tags in place to IOB2; every invalid transition is reported as file:line."""
    problems = []
    given = [tag for ex in examples for tag in ex["tags"]]  # before conversion: what a hint reads
    for ex in examples:
        tags, found = to_iob2(ex["tags"], scheme, repair=repair)
        ex["tags"] = tags
        for p in found:
            # Column files have one token per line, so the token's own line can be named.
            where = f"{ex['file']}:{ex['first_line'] + p.index}" if "first_line" in ex else ex["loc"]
            fix = "data.repair=true repairs it" if p.repairable else "fix the tag, or set data.scheme to the file's"
            problems.append(f"{where}: {p.message} (data.scheme={scheme}; {fix})")
    if problems:
        raise DataError(problems if len(problems) < 3 else _scheme_hint(examples, given, scheme) or problems)


def _scheme_hint(examples: list[Example], given: list[str], scheme: str) -> list[str] | None:
    """One line for a file read with the wrong scheme, instead of a problem per tag, when another scheme fits every
    tag it uses."""
    guess = guess_scheme(given)
    if guess is None or ALIASES.get(scheme, scheme) == guess:
        return None
    where = examples[0].get("file") or examples[0]["loc"].rsplit(":", 1)[0]
    return [f"{where}: the tags look like {guess}, not {scheme}: set data.scheme={guess}"]


class TokenClassification(TokenClassificationType):
    """The NER task with its settings bound; see mlft.tasks.protocol.Task (its declaration: mlft.tasks.types)."""

    model_class: Any = AutoModelForTokenClassification
    model_outputs = (Output("logits", (BATCH, LENGTH, "labels")),)

    def __init__(self, labels: list[str], max_length: int, stride: int, decoding: str = "viterbi"):
        self.labels, self.max_length, self.stride, self.decoding = labels, max_length, stride, decoding
        self.pad_to_multiple_of = 1
        self._aligner: Aligner | None = None

    @classmethod
    def build(cls, task: Any, model: Any, labels: list[str]) -> TokenClassification:
        """From the run's task and model configs."""
        return cls(labels, model.max_length, model.stride, task.decoding)

    # Data
    def example(self, record: dict[str, Any], columns: dict[str, Any], loc: str, cells: Cells | None) -> Example:
        return to_example(record, columns, loc, cells)

    def convert_labels(self, examples: list[Example], scheme: str, repair: bool) -> None:
        convert_tags(examples, scheme, repair)

    def label_names(self, example: Example) -> list[str]:
        return [split_tag(t)[1] for t in example["tags"] if t != "O"]

    def relabel(self, example: Example, mapping: dict[str, str | None], dropped: Counter) -> Example | None:
        tags = []
        for tag in example["tags"]:
            if tag == "O":
                tags.append(tag)
                continue
            prefix, label = split_tag(tag)
            target = mapping.get(label, label)
            if target is None:
                dropped[label] += prefix == "B"  # counted once per entity
                tags.append("O")
            else:
                tags.append(f"{prefix}-{target}")
        example["tags"] = tags
        return example

    def label_values(self, example: Example) -> list[str]:
        return example["tags"]

    def label_set(self, names: list[str], given: bool) -> list[str]:
        # A given label list may name tags (B-PER) or types (PER); either way the model gets O and B-/I- per type.
        types = {split_tag(n)[1] for n in names if n != "O"} if given else set(names)
        return iob2_labels(sorted(types))

    def training_problems(self, train: list[Example]) -> list[str]:
        if train and all(t == "O" for ex in train for t in ex["tags"]):
            where = train[0]["loc"].rsplit(":", 1)[0]
            return [f"{where}: the training data has no entities (every tag is O); nothing to learn"]
        return []

    def filter_training(
        self, examples: list[Example], max_length: int | None, keep_unlabelled: float
    ) -> list[Example]:
        if max_length is not None:
            examples = [ex for ex in examples if len(ex["tokens"]) <= max_length]
        if keep_unlabelled < 1.0:
            rng = random.Random(0)
            examples = [ex for ex in examples if any(t != "O" for t in ex["tags"]) or rng.random() < keep_unlabelled]
        return examples

    # Model
    def model_inputs(self, tokenizer: Any) -> tuple[str, ...]:
        return ("input_ids", "attention_mask")  # one segment: token type ids stay at the model's default

    def head_config(self) -> dict[str, Any]:
        return {
            "num_labels": len(self.labels),
            "id2label": dict(enumerate(self.labels)),
            "label2id": {label: i for i, label in enumerate(self.labels)},
        }

    def cache_key(self) -> str:
        settings = {"labels": self.labels, "max_length": self.max_length, "stride": self.stride}
        return encoding_key({"task": self.name, **settings}, sys.modules[__name__], alignment)

    def encode(self, examples: list[Example], tokenizer: Any, lang: str) -> list[dict[str, Any]]:
        # One aligner per tokenizer: building it reads the whole vocabulary (250k pieces for XLM-R), which
        # dominated the latency of small `mlft serve` requests.
        if self._aligner is None or self._aligner.tokenizer is not tokenizer:
            self._aligner = Aligner(tokenizer)
        return encode(examples, self._aligner, self.labels, lang, self.max_length, self.stride)

    def collate(self, features: list[dict[str, Any]], pad_id: int, training: bool = False) -> dict[str, torch.Tensor]:
        return collate(features, pad_id, self.pad_to_multiple_of)

    def outputs(self, scores: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """What evaluation keeps of the logits: log-probabilities of every label at every position."""
        return {"logprobs": scores["logits"].float().log_softmax(-1)}

    def decode(
        self, examples: list[Example], features: list[dict[str, Any]], outs: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        return decode(examples, features, outs, self.labels, self.decoding)

    def augmenters(self, config: Any, examples: list[Example], lang: str) -> dict[str, Augmenter]:
        """Mention replacement, segment shuffling and code-switching of tagged sentences (data.augment)."""
        methods: dict[str, Augmenter] = {}

        def tagged(change: Callable[[tuple[list[str], list[str]], random.Random], tuple[list[str], list[str]]]):
            def method(ex: Example, rng: random.Random) -> Example:
                tokens, tags = change((ex["tokens"], ex["tags"]), rng)
                return {**ex, "tokens": tokens, "tags": tags}

            return method

        if config.mention_replacement:
            pool = augment.mentions([(ex["tokens"], ex["tags"]) for ex in examples])
            p = config.mention_replacement
            methods["mention_replacement"] = tagged(lambda x, rng: augment.replace_mentions(x, pool, p, rng))
        if config.shuffle_segments:
            methods["shuffle_segments"] = tagged(
                lambda x, rng: augment.shuffle_segments(x, config.shuffle_segments, rng)
            )
        if config.code_switch:
            dictionary = augment.read_word_lists(config.dictionary, "data.augment.dictionary")
            methods["code_switch"] = tagged(
                lambda x, rng: augment.code_switch_tagged(x, dictionary, config.code_switch, rng)
            )
        return methods

    def evaluate_inputs(self, examples: list[Example], predictions: list[dict[str, Any]]) -> tuple[list, list]:
        """(predictions, references) for an `evaluate` module: tag sequences, as seqeval takes them."""
        return [p["tags"] for p in predictions], [ex["tags"] for ex in examples]

    def score(self, examples: list[Example], predictions: list[dict[str, Any]]) -> dict[str, Any]:
        return score(examples, predictions)

    # Raw input
    def from_request(self, request: str | dict[str, Any], lang: str) -> tuple[Example | None, Any]:
        """A text ({"text": ...} in JSON); no pre-tokenization needed: characters for zh/ja/th, words and
        punctuation otherwise."""
        text = request if isinstance(request, str) else request.get("text")
        if not isinstance(text, str):
            raise DataError('expected {"text": "..."}')
        tokens, spans = split_text(text, lang)
        return ({"tokens": tokens} if tokens else None), spans

    def to_record(self, request: str | dict[str, Any], context: Any, prediction: dict[str, Any] | None) -> dict:
        text = request if isinstance(request, str) else request["text"]
        return {"text": text, "entities": entities(text, context, prediction) if prediction else []}

    def vocabulary_texts(self, examples: list[Example]) -> list[str]:
        # Each word is encoded on its own before SentencePiece's `▁` is dropped (mlft.tasks.alignment): the
        # pieces of that first step must stay too, or a trimmed tokenizer would segment words differently.
        words = sorted({w for ex in examples for w in ex["tokens"]})
        return words + [" " + w for w in words]
