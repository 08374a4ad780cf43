"""NER alignment round trips: gold tags -> subtoken labels -> decoded word tags, for every tokenizer family."""

from __future__ import annotations

import pytest
import torch
from seqeval.metrics.sequence_labeling import get_entities

from mlft.data.readers import read_conll
from mlft.data.schemes import iob2_labels
from mlft.tasks.alignment import METASPACE, Aligner, windows
from mlft.tasks.token_classification import TokenClassification

from conftest import FIXTURES

ZH = read_conll(FIXTURES / "zh_ner" / "train.conll")
EN = read_conll(FIXTURES / "en_ner" / "train.conll")
LABELS = iob2_labels(["LOC", "ORG", "PER"])


def perfect_outputs(features):
    """What a model that predicts every subtoken label correctly would output."""
    outs = []
    for f in features:
        labels = torch.tensor(f["labels"]).clamp(min=0)
        logprobs = torch.full((len(labels), len(LABELS)), -20.0).scatter(1, labels[:, None], 0.0)
        outs.append({"logprobs": logprobs})
    return outs


def round_trip(tokenizer, examples, lang, max_length=128, stride=8):
    task = TokenClassification(LABELS, max_length, stride)
    features = task.encode(examples, tokenizer, lang)
    predictions = task.decode(examples, features, perfect_outputs(features))
    return features, predictions


def long_sentence(examples, n=12):
    merged = {"tokens": [], "tags": []}
    for ex in examples[:n]:
        merged["tokens"] += ex["tokens"]
        merged["tags"] += ex["tags"]
    return merged


@pytest.mark.parametrize("family", ["wordpiece", "unigram", "bpe"])
@pytest.mark.parametrize("lang,examples", [("zh", ZH), ("en", EN)])
def test_round_trip_reproduces_every_gold_entity(tokenizers, family, lang, examples):
    tokenizer = tokenizers[family]
    features, predictions = round_trip(tokenizer, examples, lang)
    for ex, pred in zip(examples, predictions):
        assert get_entities(pred["tags"]) == get_entities(ex["tags"])
        assert pred["tags"] == ex["tags"]
    assert len(features) == len(examples)  # short sentences: one window each


@pytest.mark.parametrize("family", ["wordpiece", "unigram", "bpe"])
@pytest.mark.parametrize("lang,examples", [("zh", ZH), ("en", EN)])
def test_sentence_longer_than_max_length_is_windowed_without_losing_entities(tokenizers, family, lang, examples):
    sentence = long_sentence(examples)
    features, predictions = round_trip(tokenizers[family], [sentence], lang, max_length=24, stride=6)
    assert len(features) > 2
    assert all(len(f["input_ids"]) <= 24 for f in features)
    owned = sorted(word for f in features for _, word in f["positions"])
    assert owned == list(range(len(sentence["tokens"])))  # every word predicted exactly once
    assert get_entities(predictions[0]["tags"]) == get_entities(sentence["tags"])


@pytest.mark.parametrize("family", ["wordpiece", "unigram", "bpe"])
def test_word_without_subtokens_still_gets_a_prediction(tokenizers, family):
    tokenizer = tokenizers[family]
    example = {
        "tokens": ["张", "伟", "\u200b", "在", "北", "京"],
        "tags": ["B-PER", "I-PER", "I-PER", "O", "B-LOC", "I-LOC"],
    }
    aligner = Aligner(tokenizer)
    assert all(len(p) >= 1 for p in aligner.pieces(example["tokens"], space_before=False))
    if family == "wordpiece":  # BERT's normalizer deletes the zero-width space: zero subtokens
        assert tokenizer("\u200b", add_special_tokens=False)["input_ids"] == []
    _, predictions = round_trip(tokenizer, [example], "zh")
    assert predictions[0]["tags"] == example["tags"]


def test_windows_cover_every_word_once_even_when_one_word_is_too_long():
    spans = windows([3, 50, 2, 2, 2, 2], capacity=6, stride=2)
    owned = sorted(w for s in spans for w in s.owned)
    assert owned == [0, 1, 2, 3, 4, 5]
    assert all(s.end > s.start for s in spans)


def test_e5_tokenizer_labels_characters_not_the_bare_prefix(e5_tokenizer):
    """transformers' run_ner.py labels `▁` (F1 0.00 on MSRA); mlft must label the character itself."""
    naive = e5_tokenizer(ZH[0]["tokens"], is_split_into_words=True).tokens()
    assert naive.count(METASPACE) >= len(ZH[0]["tokens"]) // 2  # the failure mode is real for this tokenizer
    task = TokenClassification(LABELS, 128, 16)
    features = task.encode(ZH, e5_tokenizer, "zh")
    for f in features:
        pieces = e5_tokenizer.convert_ids_to_tokens(f["input_ids"])
        labelled = [pieces[pos] for pos, _ in f["positions"]]
        assert METASPACE not in labelled
        assert all(p.strip(METASPACE) for p in labelled)
    # One subtoken per Chinese character: no wasted length.
    assert sum(len(f["input_ids"]) - 2 for f in features) == sum(len(ex["tokens"]) for ex in ZH)
    predictions = task.decode(ZH, features, perfect_outputs(features))
    assert [p["tags"] for p in predictions] == [ex["tags"] for ex in ZH]


def test_e5_tokenizer_round_trip_on_english_and_long_input(e5_tokenizer):
    features, predictions = round_trip(e5_tokenizer, EN, "en")
    assert [p["tags"] for p in predictions] == [ex["tags"] for ex in EN]
    sentence = long_sentence(ZH, 20)
    features, predictions = round_trip(e5_tokenizer, [sentence], "zh", max_length=64, stride=16)
    assert len(features) > 1
    assert predictions[0]["tags"] == sentence["tags"]
