"""Masked-LM continued pretraining on unlabelled text (language or domain adaptation of an encoder).

Examples are a text (or a sentence's tokens, from column files and the packaged NER corpora); labels are
unused. Training batches mask anew every time they are drawn (dynamic masking, 15% of the units, of which
80% become the mask token, 10% a random token and 10% stay: BERT's recipe). A unit is a token or, with
`task.masking=whole_word`, every token of a word: words are the space-separated ones, or for Chinese the
words of the `jieba` segmenter (as Chinese-BERT-wwm does), in a tokenised sentence (a column file, the packaged
NER corpora: a token per character) as in a plain text.

Held-out sets are masked the same way but from a seed derived from each feature's own tokens, so the held-out
loss is the same for every batch size, process count and run, and "before" and "after" are scored on the same
masked positions. transformers' DataCollatorForLanguageModeling masks a whole batch from one generator, which
would tie the held-out masks to how the set happens to be batched; the recipe itself is its. Training runs the
output layer on the masked positions only (mlft.models.masked_positions): most of a step's cost otherwise.
"""

from __future__ import annotations

import bisect
import math
import re
import sys
import zlib
from typing import Any

import torch

from mlft.data.readers import Cells
from mlft.errors import ConfigError, DataError
from mlft.models.masked_positions import MaskedPositionsLM
from mlft.tasks import alignment
from mlft.tasks.alignment import NO_SPACE_LANGS, Aligner
from mlft.tasks.cache_key import encoding_key
from mlft.tasks.padding import attention_mask, padded
from mlft.tasks.protocol import BATCH, LENGTH, Example, Output, WithoutClasses
from mlft.tasks.types import MaskedLMType

IGNORE = -100  # labels at positions the loss skips (transformers' convention)
MASK_TOKEN, RANDOM_TOKEN = 0.8, 0.1  # of the chosen units: replaced by the mask token, by a random token
HELD_OUT_SEED = 20_190_823  # any constant: held-out masks depend on the tokens only
SEGMENTED = ("zh",)  # languages written without spaces whose words come from a segmenter


def words_of(text: str, lang: str) -> list[tuple[int, int]]:
    """Character spans of the words of `text`: jieba's words for Chinese, else the space-separated ones."""
    if lang.split("-")[0] in SEGMENTED:
        try:
            import jieba
        except ImportError:
            raise ConfigError(
                "task.masking: whole_word on Chinese text needs the jieba segmenter: pip install jieba"
            ) from None
        jieba.setLogLevel(60)  # its dictionary-loading chatter
        return [(start, end) for _, start, end in jieba.tokenize(text)]
    return [m.span() for m in re.finditer(r"\S+", text)]


def word_ids(offsets: list[tuple[int, int]], spans: list[tuple[int, int]]) -> list[int]:
    """The word of each token (-1: a special token), by the word span its first character falls in."""
    ids, w = [], 0
    for start, end in offsets:
        if start == end:
            ids.append(-1)
            continue
        while w + 1 < len(spans) and spans[w][1] <= start:
            w += 1
        ids.append(w)
    return ids


def encode(
    examples: list[Example], tokenizer: Any, lang: str, max_length: int, whole_word: bool
) -> list[dict[str, Any]]:
    """One feature per example (longer texts truncated): input ids and the masking unit of each token (-1: never
    masked). Collation has no tokenizer (features may come from the cache), so each feature also carries the
    mask token's id and the vocabulary size that masking needs."""
    features: list[dict[str, Any]] = []
    vocab, mask_id = len(tokenizer), tokenizer.mask_token_id
    aligner = Aligner(tokenizer) if any("tokens" in ex for ex in examples) else None
    for index, ex in enumerate(examples):
        if aligner is not None and "tokens" in ex:
            ids, words = tokenised(ex["tokens"], aligner, lang, max_length)
            if whole_word:  # the segmenter's words of the sentence, not its tokens (a Chinese token is a character)
                grouped = token_words(ex["tokens"], lang)
                words = [w if w < 0 else grouped[w] for w in words]
        else:
            enc = tokenizer(ex["text"], truncation=True, max_length=max_length, return_offsets_mapping=whole_word)
            ids = enc["input_ids"]
            words = word_ids(enc["offset_mapping"], words_of(ex["text"], lang)) if whole_word else []
        special = tokenizer.get_special_tokens_mask(ids, already_has_special_tokens=True)
        units = [-1 if s else (words[i] if whole_word else i) for i, s in enumerate(special)]
        features.append({"input_ids": ids, "units": units, "example": index, "mask_id": mask_id, "vocab": vocab})
    return features


def tokenised(tokens: list[str], aligner: Aligner, lang: str, max_length: int) -> tuple[list[int], list[int]]:
    """A tokenised sentence's ids, truncated, as the token-classification task encodes it (mlft.tasks.alignment),
    and the word of each id (-1: a special token). `is_split_into_words` would put SentencePiece's bare `▁`
    before every character of a Chinese sentence: half of the masked targets trivial, the length doubled, and an
    input the later NER run never sees."""
    pieces = aligner.pieces(tokens, space_before=lang not in NO_SPACE_LANGS)
    ids = [i for piece in pieces for i in piece][: max_length - 2]
    words = [w for w, piece in enumerate(pieces) for _ in piece][: max_length - 2]
    return [aligner.cls_id, *ids, aligner.sep_id], [-1, *words, -1]


def token_words(tokens: list[str], lang: str) -> list[int]:
    """The word (as words_of finds them in the sentence's text) of each token of a tokenised sentence: for Chinese
    jieba's words of its characters, elsewhere the tokens themselves."""
    joiner = "" if lang in NO_SPACE_LANGS else " "
    starts, position = [], 0
    for token in tokens:
        starts.append(position)
        position += len(token) + len(joiner)
    spans = words_of(joiner.join(tokens), lang)
    ends = [end for _, end in spans]
    return [min(bisect.bisect_right(ends, start), len(spans) - 1) for start in starts]


def mask(feature: dict[str, Any], probability: float, generator: torch.Generator | None) -> tuple[list, list]:
    """(masked input ids, labels) of one feature; at least one unit is chosen, so every feature has a target."""
    ids, units = list(feature["input_ids"]), feature["units"]
    candidates = sorted({u for u in units if u >= 0})
    if not candidates:
        return ids, [IGNORE] * len(ids)
    draws = torch.rand(len(candidates), generator=generator)
    chosen = {u for u, d in zip(candidates, draws.tolist()) if d < probability}
    if not chosen:
        chosen = {candidates[int(draws.argmin())]}
    labels = [IGNORE] * len(ids)
    replace = torch.rand(len(ids), generator=generator).tolist()
    randoms = torch.randint(feature["vocab"], (len(ids),), generator=generator).tolist()
    for position, unit in enumerate(units):
        if unit not in chosen:
            continue
        labels[position] = ids[position]
        if replace[position] < MASK_TOKEN:
            ids[position] = feature["mask_id"]
        elif replace[position] < MASK_TOKEN + RANDOM_TOKEN:
            ids[position] = randoms[position]
    return ids, labels


def held_out_generator(feature: dict[str, Any]) -> torch.Generator:
    digest = zlib.crc32(bytes(str(feature["input_ids"]), "ascii"))
    return torch.Generator().manual_seed(HELD_OUT_SEED ^ digest)


def collate(
    features: list[dict[str, Any]], pad_id: int, probability: float, training: bool
) -> dict[str, torch.Tensor]:
    """Masks and pads; training draws from the global RNG (restored on resume), held-out sets per feature."""
    masked = [mask(f, probability, None if training else held_out_generator(f)) for f in features]
    rows = [ids for ids, _ in masked]
    ids = padded(rows, pad_id)
    return {
        "input_ids": ids,
        "attention_mask": attention_mask(rows, ids.shape[1]),
        "labels": padded([labels for _, labels in masked], IGNORE),
    }


def outputs(logits: torch.Tensor, labels: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """Per feature: the summed negative log-likelihood of its masked tokens, their count and how many the
    model ranks first (small tensors to gather, not the vocabulary-wide logits). `logits` are those of the
    masked positions only, in batch order (mlft.models.masked_positions), or of every position (an ONNX model)."""
    if labels is None:
        raise ValueError("masked-LM outputs need the batch's labels")
    scored = labels != IGNORE
    logits = logits.float() if logits.dim() == 2 else logits.float()[scored]
    targets = labels[scored]
    row = scored.nonzero()[:, 0]  # the feature of each masked position
    nll = torch.nn.functional.cross_entropy(logits, targets, reduction="none")
    correct = (logits.argmax(-1) == targets).long()
    zeros = torch.zeros(labels.shape[0], device=labels.device)
    return {
        "nll": zeros.index_add(0, row, nll),
        "count": scored.sum(1),
        "correct": zeros.long().index_add(0, row, correct),
    }


def decode(examples: list[Example], features: list[dict[str, Any]], outs: list[dict[str, Any]]) -> list[dict]:
    predictions: list[dict[str, Any]] = [{} for _ in examples]
    for feature, out in zip(features, outs):
        count = int(out["count"])
        nll = float(out["nll"])
        predictions[feature["example"]] = {
            "loss": nll / count if count else None,
            "masked": count,
            "correct": int(out["correct"]),
            "nll": nll,
        }
    return predictions


def score(predictions: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean loss per masked token, its perplexity, and the share of masked tokens predicted exactly."""
    count = sum(p["masked"] for p in predictions)
    if not count:
        return {"loss": float("nan"), "perplexity": float("nan"), "accuracy": float("nan"), "masked_tokens": 0}
    loss = sum(p["nll"] for p in predictions) / count
    return {
        "loss": loss,
        "perplexity": math.exp(min(loss, 50.0)),
        "accuracy": sum(p["correct"] for p in predictions) / count,
        "masked_tokens": count,
    }


class MaskedLM(MaskedLMType, WithoutClasses):
    """Masked-LM continued pretraining with its settings bound; see mlft.tasks.protocol.Task (its declaration:
    mlft.tasks.types)."""

    model_class: Any = MaskedPositionsLM  # AutoModelForMaskedLM; training scores the masked tokens only
    model_outputs = (Output("logits", (BATCH, LENGTH, "vocabulary")),)

    def __init__(self, max_length: int, probability: float, whole_word: bool):
        self.max_length, self.probability, self.whole_word = max_length, probability, whole_word
        self.labels: list[str] = []
        self.pad_to_multiple_of = 1

    @classmethod
    def build(cls, task: Any, model: Any, labels: list[str]) -> MaskedLM:
        return cls(model.max_length, task.mlm_probability, task.masking == "whole_word")

    # Data: a text, or a sentence's tokens; labels are ignored.
    def example(self, record: dict[str, Any], columns: dict[str, Any], loc: str, cells: Cells | None) -> Example:
        text = record.get(columns.get("text") or "text")
        if isinstance(text, str) and text.strip():
            return {"text": text}
        tokens = record.get(columns.get("tokens") or "tokens")
        if isinstance(tokens, list) and tokens and all(isinstance(t, str) for t in tokens):
            return {"tokens": tokens}
        raise DataError(f"{loc}: {columns.get('text') or 'text'!r} must be a non-empty string, got {text!r}")

    def convert_labels(self, examples: list[Example], scheme: str, repair: bool) -> None:
        return None

    def training_problems(self, train: list[Example]) -> list[str]:
        return []

    def filter_training(
        self, examples: list[Example], max_length: int | None, keep_unlabelled: float
    ) -> list[Example]:
        """`max_length` counts characters (tokens of a tokenised sentence)."""
        if max_length is None:
            return examples
        return [ex for ex in examples if len(ex.get("text") or ex["tokens"]) <= max_length]

    # Model
    def model_inputs(self, tokenizer: Any) -> tuple[str, ...]:
        return ("input_ids", "attention_mask")

    def head_config(self) -> dict[str, Any]:
        return {}

    def cache_key(self) -> str:
        settings = {"task": self.name, "max_length": self.max_length, "whole_word": self.whole_word}
        return encoding_key(settings, sys.modules[__name__], alignment)  # tokenised sentences go through it

    def encode(self, examples: list[Example], tokenizer: Any, lang: str) -> list[dict[str, Any]]:
        if tokenizer.mask_token_id is None:
            raise ConfigError("model.name_or_path: the tokenizer has no mask token, so it cannot do masked-LM")
        return encode(examples, tokenizer, lang, self.max_length, self.whole_word)

    def collate(self, features: list[dict[str, Any]], pad_id: int, training: bool = False) -> dict[str, torch.Tensor]:
        return collate(features, pad_id, self.probability, training)

    def outputs(self, scores: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return outputs(scores["logits"], batch.get("labels"))

    def decode(
        self, examples: list[Example], features: list[dict[str, Any]], outs: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        return decode(examples, features, outs)

    def score(self, examples: list[Example], predictions: list[dict[str, Any]]) -> dict[str, Any]:
        return score(predictions)

    # Raw input: `mlft predict` scores each text (held-out masks).
    def from_request(self, request: str | dict[str, Any], lang: str) -> tuple[Example | None, Any]:
        text = request if isinstance(request, str) else request.get("text")
        if not isinstance(text, str):
            raise DataError('expected {"text": "..."}')
        return ({"text": text} if text.strip() else None), text

    def to_record(self, request: str | dict[str, Any], context: Any, prediction: dict[str, Any] | None) -> dict:
        p = prediction or {}
        text = request if isinstance(request, str) else request["text"]
        return {"text": text, "loss": p.get("loss"), "masked": p.get("masked", 0)}

    def vocabulary_texts(self, examples: list[Example]) -> list[str]:
        return []
