"""Extractive question answering (SQuAD 1.1/2.0, XQuAD, MLQA, TyDiQA-GoldP, CMRC 2018, DRCD): a question and its
context in, the answer as a span of the context's characters out.

A context is encoded word by word (mlft.tasks.alignment, as NER encodes sentences): runs of letters or digits,
punctuation marks, and each Chinese character or kana, so that a tokenizer piece never straddles an answer's edge
(XLM-R's pieces join Chinese characters: "名医" would hide the answer "医生") and SentencePiece's bare `▁` never
stands before a Chinese character; a word's pieces keep the tokenizer's character offsets within it. A context
longer than model.max_length is cut into windows that overlap by model.stride tokens, the question (cut to
task.max_question_length tokens) in every window, laid out with the tokenizer's own special tokens and segment ids.
A window is labelled with the positions of the first answer that lies wholly inside it, or with position 0 (CLS)
when the answer lies elsewhere or there is none, as transformers' QA examples do. Decoding searches the task.n_best
best starts and ends of every window, keeps spans inside the context of at most task.max_answer_length tokens,
and pools the windows of a question: the best span wins, unless the question may have no answer (task.no_answer)
and the CLS score beats it by more than task.null_threshold.
Scores are per language (mlft.tasks.qa_metrics).
"""

from __future__ import annotations

import logging
import math
import re
import sys
import unicodedata
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from transformers import AutoModelForQuestionAnswering

from mlft.data.readers import Cells
from mlft.errors import DataError
from mlft.tasks import alignment, qa_metrics
from mlft.tasks.alignment import Aligner
from mlft.tasks.cache_key import encoding_key
from mlft.tasks.padding import input_batch
from mlft.tasks.protocol import BATCH, LENGTH, Example, Output, WithoutClasses
from mlft.tasks.types import QuestionAnsweringType

log = logging.getLogger("mlft")
UNLOCATED = -1
"""The start of a gold answer that is no span of its context (CMRC 2018 writes -1): scored, never trained on."""


def answers_of(value: Any, loc: str) -> list[dict[str, Any]]:
    """SQuAD's answers ([{"text", "answer_start"}]) or a hub dataset's ({"text": [...], "answer_start": [...]}) as
    [{"text", "start"}]; a start that is absent or -1 marks an answer that is no span of the context."""
    if isinstance(value, dict):
        texts, starts = value.get("text"), value.get("answer_start")
        if not isinstance(texts, list) or not isinstance(starts, (list, type(None))):
            raise DataError(f'{loc}: answers: expected {{"text": [...], "answer_start": [...]}}, got {value!r}')
        value = [{"text": t, "answer_start": s} for t, s in zip(texts, starts or [None] * len(texts))]
    if not isinstance(value, list):
        raise DataError(f'{loc}: answers: expected a list of {{"text": ..., "answer_start": ...}}, got {value!r}')
    answers = []
    for item in value:
        text = item.get("text") if isinstance(item, dict) else None
        start = item.get("answer_start", item.get("start")) if isinstance(item, dict) else None
        if not isinstance(text, str) or not text.strip() or not isinstance(start, (int, type(None))):
            raise DataError(
                f'{loc}: answers: each is {{"text": "<a non-empty span>", "answer_start": <int>}}, got {item!r}'
            )
        answers.append({"text": text, "start": UNLOCATED if start is None else start})
    return answers


def to_example(record: dict[str, Any], columns: dict[str, Any], loc: str, cells: Cells | None) -> Example:
    """A question with its context and gold answers (none: unanswerable, SQuAD 2.0's `is_impossible`)."""
    if cells is not None:
        raise DataError(f"{loc}: question answering reads SQuAD JSON, JSONL or hub datasets, not tables")
    names = {key: columns.get(key) or key for key in ("question", "context", "answers", "id")}
    for key in ("question", "context", "answers"):
        if names[key] not in record:
            raise DataError(f"{loc}: missing column {names[key]!r} (columns: {', '.join(map(str, record))})")
    question, context = record[names["question"]], record[names["context"]]
    for key, value in (("question", question), ("context", context)):
        if not isinstance(value, str) or not value.strip():
            raise DataError(f"{loc}: {names[key]!r} must be a non-empty string, got {value!r}")
    answers = [] if record.get("is_impossible") is True else answers_of(record[names["answers"]], loc)
    given = record.get(names["id"])
    return {
        "id": str(given) if given is not None else loc,
        "question": question,
        "context": context,
        "answers": answers,
    }


def check_answers(examples: list[Example], repair: bool) -> None:
    """Every located answer must be the span of its context it says; data.repair=true moves one to the occurrence
    of its text nearest to where it says, or keeps it as a gold answer only when the text does not occur."""
    problems = []
    for ex in examples:
        context = ex["context"]
        for answer in ex["answers"]:
            start, text = answer["start"], answer["text"]
            if start == UNLOCATED or context[start : start + len(text)] == text and start >= 0:
                continue
            occurrences = [i for i in range(len(context)) if context.startswith(text, i)]
            if repair:
                answer["start"] = min(occurrences, key=lambda i: abs(i - start)) if occurrences else UNLOCATED
                continue
            found = context[max(start, 0) : max(start, 0) + len(text)]
            fix = (
                f"it occurs at character {occurrences[0]}{' and more' if len(occurrences) > 1 else ''}: "
                "data.repair=true moves it to the nearest occurrence"
                if occurrences
                else "data.repair=true keeps it as a gold answer only (scored, not trained on)"
            )
            problems.append(
                f"{ex['loc']}: question {ex['id']!r}: answer {text!r} at character {start} does not match the "
                f"context there ({found!r}); {fix}"
            )
    if problems:
        raise DataError(problems[:20] + ([f"... {len(problems) - 20} more"] if len(problems) > 20 else []))


def located(ex: Example) -> dict[str, Any] | None:
    """The answer training learns: the first that is a span of the context."""
    return next((a for a in ex["answers"] if a["start"] != UNLOCATED), None)


IDEOGRAPHS = re.compile("[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
"""Chinese characters and Japanese kana: each is a word of a context of its own (an answer may begin or end at any
of them), where XLM-R's pieces would join two and SentencePiece would set a bare `▁` before each one tokenized
alone. Thai and other scripts without spaces keep their runs, split by the tokenizer's own pieces."""


def context_words(text: str) -> list[tuple[int, int]]:
    """The character spans of a context's words: runs of letters, digits and their combining marks (Thai vowels),
    single punctuation marks and symbols, and single Chinese characters and kana."""
    spans: list[tuple[int, int]] = []
    run = None
    for i, ch in enumerate(text):
        letter = unicodedata.category(ch)[0] in "LNM" and not IDEOGRAPHS.match(ch)
        if letter:
            run = i if run is None else run
            continue
        if run is not None:
            spans.append((run, i))
            run = None
        if not ch.isspace():
            spans.append((i, i + 1))
    return spans + ([(run, len(text))] if run is not None else [])


class WordPieces:
    """The pieces of each word as the NER encoding gives them (mlft.tasks.alignment: a word tokenized alone, no bare
    `▁` before a word that follows no space), each with its characters in the word, so that an answer can also
    start or end inside a word of several pieces (a Thai run, an agglutinated word). Cached per distinct word."""

    def __init__(self, aligner: Aligner):
        self.aligner = aligner
        self._spans: dict[tuple[str, bool], list[tuple[int, int]]] = {}

    def __call__(self, words: list[str], space_before: bool) -> list[list[tuple[int, int, int]]]:
        """Per word: (id, start, end) of each piece, the characters relative to the word."""
        ids = self.aligner.pieces(words, space_before)
        missing = list({w for w in words if (w, space_before) not in self._spans})
        if missing:
            prefix = " " if space_before and self.aligner.space_sensitive else ""
            tokenizer = self.aligner.tokenizer
            encoded = tokenizer([prefix + w for w in missing], add_special_tokens=False, return_offsets_mapping=True)
            if len(self._spans) > 500_000:  # a long-running server sees unbounded distinct words
                self._spans.clear()
            for word, offsets in zip(missing, encoded["offset_mapping"]):
                shift = len(prefix)
                self._spans[(word, space_before)] = [(max(a - shift, 0), max(b - shift, 0)) for a, b in offsets]
        pieces = []
        for word, word_ids in zip(words, ids):
            spans = self._spans[(word, space_before)]
            if len(spans) == len(word_ids) + 1:  # the aligner dropped a bare `▁`
                spans = spans[1:]
            if len(spans) != len(word_ids):  # an unknown word's stand-in: the whole word
                spans = [(0, len(word))] * len(word_ids)
            pieces.append([(i, a, b) for i, (a, b) in zip(word_ids, spans)])
        return pieces


def span(offsets: list[tuple[int, int]], start: int, end: int) -> tuple[int, int] | None:
    """The first and last token of the characters [start, end) among a window's context tokens, or None when they
    are not all inside the window."""
    inside = [k for k, (a, b) in enumerate(offsets) if a >= 0 and b > a]
    if not inside or start < offsets[inside[0]][0] or end > offsets[inside[-1]][1]:
        return None
    first = next(k for k in inside if offsets[k][1] > start)
    last = next(k for k in reversed(inside) if offsets[k][0] < end)
    return (first, last) if first <= last else None


@dataclass(frozen=True)
class PairTemplate:
    """Where a tokenizer puts its special tokens and segment ids around a question and a context (read off one
    encoded pair): BERT's [CLS] q [SEP] c [SEP] with segments 0 and 1, XLM-R's <s> q </s></s> c </s>."""

    prefix: list[int]
    middle: list[int]
    suffix: list[int]
    types: tuple[list[int], int, list[int], int, list[int]] | None
    """Segment ids of prefix, question, middle, context and suffix; None when the tokenizer makes none."""

    @staticmethod
    def of(tokenizer: Any) -> PairTemplate:
        probe = tokenizer("a", "b")
        ids, segments = probe["input_ids"], probe.sequence_ids()
        first, second = segments.index(0), segments.index(1)
        last_first, last_second = (
            len(segments) - 1 - segments[::-1].index(0),
            len(segments) - 1 - segments[::-1].index(1),
        )
        parts = (slice(0, first), slice(last_first + 1, second), slice(last_second + 1, len(ids)))
        types = probe.get("token_type_ids")
        return PairTemplate(
            ids[parts[0]],
            ids[parts[1]],
            ids[parts[2]],
            (types[parts[0]], types[first], types[parts[1]], types[second], types[parts[2]]) if types else None,
        )

    def build(self, question: list[int], context: list[int]) -> tuple[list[int], list[int] | None, int]:
        """Input ids, segment ids and where the context starts."""
        ids = [*self.prefix, *question, *self.middle, *context, *self.suffix]
        types = None
        if self.types is not None:
            prefix, q, middle, c, suffix = self.types
            types = [*prefix, *[q] * len(question), *middle, *[c] * len(context), *suffix]
        return ids, types, len(self.prefix) + len(question) + len(self.middle)


def encode(
    examples: list[Example],
    pieces_of: WordPieces,
    template: PairTemplate,
    max_length: int,
    stride: int,
    max_question: int,
) -> list[dict[str, Any]]:
    """One feature per window of each context: input ids (and segment ids where the tokenizer has them), the
    character span of the word of each context token ((-1, -1) elsewhere), the CLS position, and with gold answers
    the start and end positions. The question, cut to `max_question` tokens, is in every window; windows overlap by
    `stride` tokens."""
    tokenizer = pieces_of.aligner.tokenizer
    questions = tokenizer([ex["question"].strip() for ex in examples], add_special_tokens=False)["input_ids"]
    room = max_length - len(template.prefix) - len(template.middle) - len(template.suffix)
    features = []
    for index, (ex, question) in enumerate(zip(examples, questions)):
        question = question[:max_question]
        context = ex["context"]
        words = context_words(context)
        # A word after a space is tokenized as one (SentencePiece's `▁`, byte-level BPE's leading space).
        spaced = [start == 0 or context[start - 1].isspace() for start, _ in words]
        texts = [context[a:b] for a, b in words]
        pieces: list[list[tuple[int, int, int]]] = [[] for _ in words]
        for space in (True, False):
            chosen = [i for i, s in enumerate(spaced) if s == space]
            for i, word_pieces in zip(chosen, pieces_of([texts[i] for i in chosen], space_before=space)):
                pieces[i] = word_pieces
        ids_all = [i for word in pieces for i, _, _ in word]
        offsets_all = [(words[w][0] + a, words[w][0] + b) for w, word in enumerate(pieces) for _, a, b in word]
        capacity = max(room - len(question), stride + 1)
        start = 0
        while True:
            end = min(start + capacity, len(ids_all))
            ids, types, first = template.build(question, ids_all[start:end])
            offsets = [(-1, -1)] * first + offsets_all[start:end] + [(-1, -1)] * (len(ids) - first - (end - start))
            feature: dict[str, Any] = {"input_ids": ids, "offsets": offsets, "cls": 0, "example": index}
            if types is not None:
                feature["token_type_ids"] = types
            if "answers" in ex:
                answer = located(ex)
                where = span(offsets, answer["start"], answer["start"] + len(answer["text"])) if answer else None
                feature["start_positions"], feature["end_positions"] = where or (0, 0)
            features.append(feature)
            if end >= len(ids_all):
                break
            start = end - stride
    return features


def collate(features: list[dict[str, Any]], pad_id: int, pad_to_multiple_of: int = 1) -> dict[str, torch.Tensor]:
    batch = input_batch(features, pad_id, pad_to_multiple_of)
    if "start_positions" in features[0]:
        batch["start_positions"] = torch.tensor([f["start_positions"] for f in features])
        batch["end_positions"] = torch.tensor([f["end_positions"] for f in features])
    return batch


def _log_softmax(scores: np.ndarray) -> np.ndarray:
    top = scores.max()
    return scores - top - math.log(np.exp(scores - top).sum())


def decode(
    examples: list[Example],
    features: list[dict[str, Any]],
    outs: list[dict[str, Any]],
    n_best: int,
    max_answer_length: int,
    no_answer: bool,
    null_threshold: float,
) -> list[dict[str, Any]]:
    """Per question: the best span over all its windows, with its characters in the context and its probability
    (start × end, within its window); or no answer (text "") when task.no_answer lets the CLS score win."""
    best: list[tuple[float, int, int, float] | None] = [None] * len(examples)
    null = [math.inf] * len(examples)
    for feature, out in zip(features, outs):
        n, offsets, cls = len(feature["input_ids"]), feature["offsets"], feature["cls"]
        start, end = out["start"][:n].numpy().astype(np.float64), out["end"][:n].numpy().astype(np.float64)
        index = feature["example"]
        null[index] = min(null[index], float(start[cls] + end[cls]))
        start_logp, end_logp = _log_softmax(start), _log_softmax(end)
        for s in np.argsort(start)[::-1][:n_best]:
            if offsets[s][0] < 0 or offsets[s][1] <= offsets[s][0]:
                continue
            for e in np.argsort(end)[::-1][:n_best]:
                if offsets[e][0] < 0 or e < s or e - s + 1 > max_answer_length:
                    continue
                score = float(start[s] + end[e])
                if best[index] is None or score > best[index][0]:  # type: ignore[index]
                    probability = math.exp(start_logp[s] + end_logp[e])
                    best[index] = (score, offsets[s][0], offsets[e][1], probability)
    predictions: list[dict[str, Any]] = []
    for ex, found, null_score in zip(examples, best, null):
        if found is None or (no_answer and null_score - found[0] > null_threshold):
            predictions.append({"text": "", "start": None, "end": None, "score": None})
            continue
        score, a, b, probability = found
        text = ex["context"][a:b]
        a += len(text) - len(text.lstrip())  # a SentencePiece token's span starts at the space before its word
        b -= len(text) - len(text.rstrip())
        predictions.append({"text": ex["context"][a:b], "start": a, "end": b, "score": round(probability, 6)})
    return predictions


def score(examples: list[Example], predictions: list[dict[str, Any]]) -> dict[str, Any]:
    """Exact match and F1 (the best gold answer each, normalised per the example's language), overall and, where
    some questions have no answer, for answerable and unanswerable ones apart."""
    rows = [
        (bool(ex["answers"]), *qa_metrics.best_of([a["text"] for a in ex["answers"]], p["text"], ex.get("lang")))
        for ex, p in zip(examples, predictions)
    ]

    def mean(values: list[float]) -> float:
        return sum(values) / len(values) if values else 0.0

    result: dict[str, Any] = {"f1": mean([f for _, _, f in rows]), "exact_match": mean([e for _, e, _ in rows])}
    unanswerable = [r for r in rows if not r[0]]
    if unanswerable:
        answerable = [r for r in rows if r[0]]
        result["answerable"] = {"n": len(answerable), "f1": mean([f for _, _, f in answerable])}
        result["unanswerable"] = {"n": len(unanswerable), "exact_match": mean([e for _, e, _ in unanswerable])}
    return result


class QuestionAnswering(QuestionAnsweringType, WithoutClasses):
    """Extractive QA with its settings bound; see mlft.tasks.protocol.Task (its declaration: mlft.tasks.types)."""

    model_class: Any = AutoModelForQuestionAnswering
    model_outputs = (Output("start_logits", (BATCH, LENGTH)), Output("end_logits", (BATCH, LENGTH)))

    def __init__(
        self,
        max_length: int,
        stride: int,
        max_question_length: int = 64,
        max_answer_length: int = 30,
        n_best: int = 20,
        no_answer: bool = False,
        null_threshold: float = 0.0,
    ):
        self.max_length, self.stride, self.max_question_length = max_length, stride, max_question_length
        self.max_answer_length, self.n_best = max_answer_length, n_best
        self.no_answer, self.null_threshold = no_answer, null_threshold
        self.labels: list[str] = []  # spans, not classes
        self.pad_to_multiple_of = 1
        self._pieces: WordPieces | None = None
        self._template: PairTemplate | None = None

    @classmethod
    def build(cls, task: Any, model: Any, labels: list[str]) -> QuestionAnswering:
        return cls(
            model.max_length,
            model.stride,
            task.max_question_length,
            task.max_answer_length,
            task.n_best,
            task.no_answer,
            task.null_threshold,
        )

    # Data
    def example(self, record: dict[str, Any], columns: dict[str, Any], loc: str, cells: Cells | None) -> Example:
        return to_example(record, columns, loc, cells)

    def convert_labels(self, examples: list[Example], scheme: str, repair: bool) -> None:
        check_answers(examples, repair)

    def training_problems(self, train: list[Example]) -> list[str]:
        unanswerable = [ex for ex in train if not ex["answers"]]
        if unanswerable and not self.no_answer:
            return [
                f"{unanswerable[0]['loc']}: {len(unanswerable)} training questions have no answer (SQuAD 2.0): set "
                "task.no_answer=true to learn and predict that a context holds none"
            ]
        if not any(located(ex) for ex in train):
            return (
                [f"{train[0]['loc'].rsplit(':', 1)[0]}: no training answer is a span of its context"] if train else []
            )
        return []

    def filter_training(
        self, examples: list[Example], max_length: int | None, keep_unlabelled: float
    ) -> list[Example]:
        """`max_length` counts the context's characters. A question whose answers are all no span of the context
        cannot be trained on (it would be learnt as unanswerable): it is left out, and counted."""
        if max_length is not None:
            examples = [ex for ex in examples if len(ex["context"]) <= max_length]
        kept = [ex for ex in examples if not ex["answers"] or located(ex)]
        if len(kept) < len(examples):
            log.warning("question answering: %d training questions have no answer inside their context; left out of "
                        "training", len(examples) - len(kept))  # fmt: skip
        return kept

    # Model
    def model_inputs(self, tokenizer: Any) -> tuple[str, ...]:
        names = ("input_ids", "attention_mask")
        return (*names, "token_type_ids") if "token_type_ids" in tokenizer.model_input_names else names

    def head_config(self) -> dict[str, Any]:
        return {"num_labels": 2}  # a start and an end score per position

    def cache_key(self) -> str:
        settings = {"max_length": self.max_length, "stride": self.stride, "question": self.max_question_length}
        return encoding_key({"task": self.name, **settings}, sys.modules[__name__], alignment)

    def encode(self, examples: list[Example], tokenizer: Any, lang: str) -> list[dict[str, Any]]:
        # One aligner per tokenizer: building it reads the whole vocabulary (see TokenClassification.encode).
        if self._pieces is None or self._pieces.aligner.tokenizer is not tokenizer:
            self._pieces, self._template = WordPieces(Aligner(tokenizer)), PairTemplate.of(tokenizer)
        assert self._template is not None
        return encode(examples, self._pieces, self._template, self.max_length, self.stride, self.max_question_length)

    def collate(self, features: list[dict[str, Any]], pad_id: int, training: bool = False) -> dict[str, torch.Tensor]:
        return collate(features, pad_id, self.pad_to_multiple_of)

    def outputs(self, scores: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"start": scores["start_logits"].float(), "end": scores["end_logits"].float()}

    def decode(
        self, examples: list[Example], features: list[dict[str, Any]], outs: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        return decode(
            examples, features, outs, self.n_best, self.max_answer_length, self.no_answer, self.null_threshold
        )

    def evaluate_inputs(self, examples: list[Example], predictions: list[dict[str, Any]]) -> tuple[list, list]:
        """(predictions, references) as evaluate's `squad` and `squad_v2` modules take them."""
        preds = [{"id": ex["id"], "prediction_text": p["text"]} for ex, p in zip(examples, predictions)]
        if self.no_answer:
            for p in preds:
                p["no_answer_probability"] = 0.0
        refs = [
            {
                "id": ex["id"],
                "answers": {
                    "text": [a["text"] for a in ex["answers"]],
                    "answer_start": [a["start"] for a in ex["answers"]],
                },
            }
            for ex in examples
        ]
        return preds, refs

    def score(self, examples: list[Example], predictions: list[dict[str, Any]]) -> dict[str, Any]:
        return score(examples, predictions)

    # Raw input
    def from_request(self, request: str | dict[str, Any], lang: str) -> tuple[Example | None, Any]:
        """{"question": ..., "context": ..., "id": ...} in JSON, or question<TAB>context on a line."""
        if isinstance(request, str):
            if not request.strip():
                return None, {}
            first, tab, rest = request.partition("\t")
            if not tab:
                raise DataError('expected question<TAB>context (or a .jsonl of {"question": ..., "context": ...})')
            request = {"question": first, "context": rest}
        asked, context, given = request.get("question"), request.get("context"), request.get("id")
        if not (isinstance(asked, str) and isinstance(context, str) and asked.strip() and context.strip()):
            raise DataError('expected {"question": "...", "context": "..."} (both non-empty)')
        example = {"question": asked, "context": context, "lang": lang}
        return example, {"id": given, "question": asked}

    def to_record(self, request: str | dict[str, Any], context: Any, prediction: dict[str, Any] | None) -> dict:
        given = {k: v for k, v in (context or {}).items() if v is not None}
        p = prediction or {}
        return {**given, "answer": p.get("text"), **{key: p.get(key) for key in ("start", "end", "score")}}

    def vocabulary_texts(self, examples: list[Example]) -> list[str]:
        # Each context word is tokenized alone, with and without the space before it (WordPieces): a trimmed
        # vocabulary must keep the pieces of both, as for NER.
        words = sorted({ex["context"][a:b] for ex in examples for a, b in context_words(ex["context"])})
        return words + [" " + w for w in words]
