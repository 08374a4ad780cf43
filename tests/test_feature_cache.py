"""data.cache: a second encoding of the same examples with the same tokenizer and settings is read from disk."""

from __future__ import annotations

import os
from typing import Any

import pytest

from mlft.config import ModelConfig, TaskConfig
from mlft.data.feature_cache import Encoder, entry_name, from_arrays, to_arrays
from mlft.data.readers import read_conll
from mlft.tasks import build_task

from conftest import FIXTURES
from helpers import ZH_NER, metrics, read_examples, train

NER_LABELS = ["O", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-PER", "I-PER"]


def model_config(max_length: int = 128) -> ModelConfig:
    return ModelConfig(name="tiny", name_or_path="tiny", max_length=max_length)


def ner_task(max_length: int = 128):
    return build_task(
        TaskConfig(name="ner", type="token_classification", metric="f1"), model_config(max_length), NER_LABELS
    )


def test_cached_features_equal_fresh_ones(tmp_path, tokenizers):
    examples = read_conll(FIXTURES / "zh_ner" / "train.conll")
    task = ner_task()
    fresh = task.encode(examples, tokenizers["unigram"], "zh")
    first = Encoder(task, tokenizers["unigram"], tmp_path)
    assert first(examples, "zh") == fresh and first.hits == 0
    assert len(list(tmp_path.glob("*.safetensors"))) == 1
    second = Encoder(task, tokenizers["unigram"], tmp_path)
    cached = second(examples, "zh")
    assert second.hits == 1 and cached == fresh
    assert all(type(p) is tuple for f in cached for p in f["positions"])  # as encode makes them


def test_a_change_to_any_input_is_a_new_entry(tmp_path, tokenizers):
    examples = read_conll(FIXTURES / "zh_ner" / "train.conll")
    Encoder(ner_task(), tokenizers["unigram"], tmp_path)(examples, "zh")
    # State a call leaves on the tokenizer (truncation, padding) is not part of the key.
    tokenizers["unigram"](["a b"], truncation=True, max_length=3, padding="max_length")
    same = Encoder(ner_task(), tokenizers["unigram"], tmp_path)
    same(examples, "zh")
    assert same.hits == 1
    changed_tags = [dict(ex, tags=["O"] * len(ex["tags"])) for ex in examples]
    variants = [
        (ner_task(), tokenizers["wordpiece"], examples, "zh"),  # tokenizer
        (ner_task(max_length=16), tokenizers["unigram"], examples, "zh"),  # encoding setting
        (ner_task(), tokenizers["unigram"], examples, "en"),  # language (word splitting)
        (ner_task(), tokenizers["unigram"], examples[1:], "zh"),  # examples
        (ner_task(), tokenizers["unigram"], changed_tags, "zh"),  # labels
    ]
    for task, tokenizer, exs, lang in variants:
        encode = Encoder(task, tokenizer, tmp_path)
        assert encode(exs, lang) == task.encode(exs, tokenizer, lang) and encode.hits == 0
    assert len(list(tmp_path.glob("*.safetensors"))) == 1 + len(variants)


def test_every_field_of_an_example_is_in_the_key_whatever_the_task_type(tmp_path):
    """A task type with fields of its own (a question and its context): two sets of the same size in one language
    are two entries, and where an example was read from is no part of the key."""

    class Echo:
        def cache_key(self) -> str:
            return "echo"

        def encode(self, examples: list[dict], tokenizer: Any, lang: str) -> list[dict]:
            return [
                {"input_ids": [len(ex["question"]), len(ex["context"])], "example": i} for i, ex in enumerate(examples)
            ]

    first = [{"question": "谁？", "context": "张伟在北京。", "loc": "a.json:1"}]
    other = [{"question": "哪里？", "context": "张伟在北京。", "loc": "a.json:1"}]
    moved = [{**first[0], "loc": "b.json:7"}]
    assert entry_name("k", first, "zh") != entry_name("k", other, "zh")
    assert entry_name("k", first, "zh") == entry_name("k", moved, "zh")
    encode = Encoder(Echo(), None, tmp_path)
    encode.encoding = "echo"  # Echo has no tokenizer to serialize
    assert encode(first, "zh") != encode(other, "zh") and encode.hits == 0


@pytest.mark.parametrize(
    "path, columns, multi_label",
    [
        ("sentiment/zh_train.jsonl", {}, False),
        ("nli/train.tsv", {"text": "premise", "text_pair": "hypothesis"}, False),  # token_type_ids too
        ("multilabel/train.csv", {}, True),  # float label vectors
    ],
)
def test_classification_features_round_trip(tokenizers, path, columns, multi_label):
    columns = {"text": "text", "text_pair": None, "label": "label", "lang": "lang", **columns}
    examples = read_examples(FIXTURES / path, columns=columns, label_separator="|" if multi_label else None)
    labels = sorted({x for ex in examples for x in (ex["label"] if multi_label else [ex["label"]])})
    config = TaskConfig(name="c", type="sequence_classification", metric="accuracy", multi_label=multi_label)
    task = build_task(config, model_config(), labels)
    features = task.encode(examples, tokenizers["wordpiece"], "en")
    stored = to_arrays(features)
    assert stored is not None
    assert from_arrays(*stored) == features


def test_values_the_format_cannot_hold_are_not_cached(tmp_path):
    assert to_arrays([{"input_ids": [1, 2], "labels": None}]) is None
    assert to_arrays([{"input_ids": [1, 2], "flag": True}]) is None
    assert to_arrays([{"input_ids": [1, 2]}, {"input_ids": [3], "labels": 1}]) is None
    assert to_arrays([{"labels": 1}, {"labels": 1.5}]) is None  # int64 would truncate 1.5
    assert to_arrays([{"labels": 1}, {"labels": [1]}]) is None
    assert to_arrays([{"ids": [1]}, {"ids": [(1, 2)]}]) is None


def test_a_damaged_entry_is_rebuilt(tmp_path, tokenizers, caplog):
    examples = read_conll(FIXTURES / "zh_ner" / "train.conll")
    task = ner_task()
    Encoder(task, tokenizers["unigram"], tmp_path)(examples, "zh")
    entry = next(tmp_path.glob("*.safetensors"))
    entry.write_bytes(entry.read_bytes()[:100])
    encode = Encoder(task, tokenizers["unigram"], tmp_path)
    assert encode(examples, "zh") == task.encode(examples, tokenizers["unigram"], "zh")
    assert encode.hits == 0 and "ignoring unreadable" in caplog.text
    assert Encoder(task, tokenizers["unigram"], tmp_path)(examples, "zh") is not None
    assert entry.stat().st_size > 100  # written again whole


def test_second_run_reads_every_set_from_the_cache(tmp_path, tiny_models, monkeypatch):
    monkeypatch.setenv("MLFT_FEATURE_CACHE", str(tmp_path / "cache"))
    first = metrics(train(tmp_path / "a", tiny_models["unigram"], *ZH_NER))
    second = metrics(train(tmp_path / "b", tiny_models["unigram"], *ZH_NER))
    assert first["preprocessing"]["sets_from_cache"] == 0
    assert second["preprocessing"]["sets_from_cache"] == second["preprocessing"]["encoded_sets"] == 3
    assert second["test"] == first["test"] and second["dev"] == first["dev"]
    off = metrics(train(tmp_path / "c", tiny_models["unigram"], *ZH_NER, "data.cache=false"))
    assert off["preprocessing"]["sets_from_cache"] == 0 and off["test"] == first["test"]
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 3
    assert not list((tmp_path / "cache").glob("*.tmp"))


@pytest.mark.parametrize("family", ["wordpiece", "bpe"])
def test_other_tokenizer_families_round_trip(tmp_path, tokenizers, family):
    examples = read_conll(FIXTURES / "en_ner" / "train.conll")
    task = ner_task()
    Encoder(task, tokenizers[family], tmp_path)(examples, "en")
    encode = Encoder(task, tokenizers[family], tmp_path)
    assert encode(examples, "en") == task.encode(examples, tokenizers[family], "en") and encode.hits == 1


def test_past_the_size_limit_the_least_recently_used_entries_go(tmp_path, tokenizers, monkeypatch):
    examples = read_conll(FIXTURES / "zh_ner" / "train.conll")
    task = ner_task()
    encode = Encoder(task, tokenizers["unigram"], tmp_path)
    encode(examples[:4], "zh")
    oldest = next(tmp_path.glob("*.safetensors"))
    encode(examples[4:8], "zh")
    newer = set(tmp_path.glob("*.safetensors")) - {oldest}
    size = oldest.stat().st_size
    os.utime(oldest, (1, 1))  # used long ago
    monkeypatch.setenv("MLFT_FEATURE_CACHE_GB", str(2.5 * size / 1e9))  # room for two entries
    encode(examples[8:12], "zh")
    assert not oldest.exists() and newer <= set(tmp_path.glob("*.safetensors"))
    assert len(list(tmp_path.glob("*.safetensors"))) == 2
    # An entry larger than the whole limit still serves the run that wrote it.
    monkeypatch.setenv("MLFT_FEATURE_CACHE_GB", "0")
    encode(examples, "zh")
    assert len(list(tmp_path.glob("*.safetensors"))) == 1
    again = Encoder(task, tokenizers["unigram"], tmp_path)
    again(examples, "zh")
    assert again.hits == 1
