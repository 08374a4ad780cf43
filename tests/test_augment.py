"""Training-data augmentation (data.augment): each method keeps labels aligned, is deterministic from the seed,
is counted in metrics.json, never touches dev or test, and is refused where it does not fit the task."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from mlft.data import augment
from mlft.data.schemes import to_spans
from mlft.errors import DataError

from conftest import FIXTURES
from helpers import NER_DATASETS, ZH_NER, cli_error, metrics, train

AUG = FIXTURES / "augment"
SENT = FIXTURES / "sentiment"
SENTENCE = (["Angela", "Merkel", "lives", "in", "Berlin", "."], ["B-PER", "I-PER", "O", "O", "B-LOC", "O"])


def entities(example):
    tokens, tags = example
    spans, problems = to_spans(tags, "IOB2")
    assert not problems  # valid IOB2
    return [(tuple(tokens[a:b]), kind) for a, b, kind in spans]


def test_mention_replacement_swaps_mentions_of_the_same_type_only():
    pool = {"PER": [["John", "Smith"], ["Anna"]], "LOC": [["Paris"]]}
    for seed in range(20):
        new = augment.replace_mentions(SENTENCE, pool, 1.0, random.Random(seed))
        assert [kind for _, kind in entities(new)] == ["PER", "LOC"]
        assert entities(new)[0][0] in {("John", "Smith"), ("Anna",)} and entities(new)[1][0] == ("Paris",)
        assert [t for t, tag in zip(*new) if tag == "O"] == ["lives", "in", "."]  # context untouched
    again = [augment.replace_mentions(SENTENCE, pool, 0.5, random.Random(7)) for _ in range(2)]
    assert again[0] == again[1]  # the seed decides


def test_segment_shuffling_keeps_each_segment_and_its_tags():
    for seed in range(20):
        tokens, tags = augment.shuffle_segments(SENTENCE, 1.0, random.Random(seed))
        assert Counter(tokens[:2]) == Counter(["Angela", "Merkel"]) and tags == SENTENCE[1]
        assert Counter(tokens[2:4]) == Counter(["lives", "in"]) and tokens[4:] == ["Berlin", "."]


def test_code_switching_continues_a_tag_over_a_translation_of_several_words(tmp_path):
    dictionary = augment.read_word_lists(str(AUG / "en_zh.txt"), "data.augment.dictionary")
    assert dictionary["day"] == [["一", "天"]] and dictionary["Angela Merkel"] == [["默克尔"]]
    sentence = (["Paris", "day", "works"], ["B-LOC", "O", "O"])
    tokens, tags = augment.code_switch_tagged(
        sentence, {"Paris": [["巴", "黎"]], "day": [["一", "天"]]}, 1.0, random.Random(0)
    )
    assert tokens == ["巴", "黎", "一", "天", "works"] and tags == ["B-LOC", "I-LOC", "O", "O", "O"]


def test_eda_operations():
    words = ["the", "room", "was", "clean", "and", "the", "staff", "kind"]
    rng = random.Random(3)
    assert Counter(augment.eda_swap(words, 0.3, rng)) == Counter(words)
    deleted = augment.eda_delete(words, 0.3, rng)
    assert 0 < len(deleted) < len(words) and all(w in words for w in deleted)
    synonyms = {"clean": [["tidy"]], "kind": [["friendly"]]}
    replaced = augment.eda_synonyms(words, synonyms, 0.25, rng)
    assert set(replaced) - set(words) <= {"tidy", "friendly"} and replaced != words
    inserted = augment.eda_insert(words, synonyms, 0.25, rng)
    assert len(inserted) == len(words) + 2 and Counter(inserted) - Counter(words) <= Counter(["tidy", "friendly"] * 2)


def test_word_list_files_are_checked_with_file_and_line(tmp_path):
    bad = tmp_path / "syn.txt"
    bad.write_text("# comment\nclean\ttidy\nlonely\n")
    with pytest.raises(DataError, match=f"{bad}:3: expected a word and at least one alternative"):
        augment.read_word_lists(str(bad), "data.augment.synonyms")


def test_a_ner_run_adds_counted_augmented_sentences_to_training_only(tmp_path, tiny_models, caplog):
    caplog.set_level("INFO", logger="mlft")
    aug = ["data.augment.mention_replacement=0.5", "data.augment.shuffle_segments=0.3", "data.augment.copies=2"]
    run = train(tmp_path / "run", tiny_models["unigram"], "task=ner", "lang=zh", "trainer.epochs=1", *ZH_NER, *aug)
    m = metrics(run)
    added = m["augmentation"]["added"]
    assert set(added) == {"mention_replacement", "shuffle_segments"} and 0 < added["mention_replacement"] <= 2 * 48
    assert m["throughput"]["train_samples"] == 48 + m["augmentation"]["total"]  # one epoch over them all
    assert m["dev"]["zh"]["n"] == 16 and m["test"]["zh"]["n"] == 16  # dev and test as they were
    assert f"augmentation: {m['augmentation']['total']} examples added to 48 training examples" in caplog.text


def test_the_seed_decides_and_each_method_draws_on_its_own():
    examples = [{"tokens": list(SENTENCE[0]), "tags": list(SENTENCE[1]), "loc": f"f:{i}"} for i in range(5)]
    pool = {"PER": [["Anna"], ["John", "Smith"]], "LOC": [["Paris"], ["Rome"]]}

    def mention(ex, rng):
        tokens, tags = augment.replace_mentions((ex["tokens"], ex["tags"]), pool, 0.7, rng)
        return {**ex, "tokens": tokens, "tags": tags}

    def shuffle(ex, rng):
        tokens, tags = augment.shuffle_segments((ex["tokens"], ex["tags"]), 1.0, rng)
        return {**ex, "tokens": tokens, "tags": tags}

    both = augment.augment(examples, {"mention": mention, "shuffle": shuffle}, 3, seed=1)
    assert both == augment.augment(examples, {"mention": mention, "shuffle": shuffle}, 3, seed=1)
    alone = augment.augment(examples, {"mention": mention}, 3, seed=1)
    assert [x for x in both[0] if "mention" in x["loc"]] == alone[0]  # another method on does not change it
    assert augment.augment(examples, {"mention": mention}, 3, seed=2) != alone
    for i in range(5):  # copies of one example differ from each other and from it
        copies = [(x["tokens"], x["tags"]) for x in both[0] if x["loc"].startswith(f"f:{i} (mention")]
        assert len(set(map(str, copies))) == len(copies) and (examples[i]["tokens"], examples[i]["tags"]) not in copies


def test_code_switching_for_english_to_chinese_transfer(tmp_path, tiny_models):
    run = train(
        tmp_path / "run", tiny_models["unigram"], "task=ner", "lang.train=[en]", "lang.eval=[en,zh]", NER_DATASETS,
        "trainer.epochs=1", "data.augment.code_switch=0.5", f"data.augment.dictionary={AUG / 'en_zh.txt'}",
    )  # fmt: skip
    assert metrics(run)["augmentation"]["added"]["code_switch"] > 0


def test_classification_eda_with_synonyms(tmp_path, tiny_models):
    run = train(
        tmp_path / "run", tiny_models["wordpiece"], "task=sentiment", "lang=zh", "trainer.epochs=1",
        f"data.train={SENT / 'zh_train.jsonl'}", f"data.dev={SENT / 'zh_dev.jsonl'}",
        "data.augment.eda=0.2", f"data.augment.synonyms={AUG / 'synonyms_zh.txt'}",
    )  # fmt: skip
    added = metrics(run)["augmentation"]["added"]
    assert set(added) == {"eda_swap", "eda_delete", "eda_synonyms", "eda_insert"} and added["eda_synonyms"] > 0


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["task=ner", *ZH_NER, "data.augment.eda=0.1"], "data.augment.eda: only for classification"),
        (["task=sentiment", "data.augment.mention_replacement=0.3"], "data.augment.mention_replacement: only for NER"),
        (["task=ner", *ZH_NER, "data.augment.code_switch=0.3"], "data.augment.dictionary: required with"),
        (
            ["task=ner", *ZH_NER, "data.augment.shuffle_segments=1.5"],
            "data.augment.shuffle_segments: must be in [0, 1]",
        ),
        (["task=sentiment", "data.augment.eda=0.1", "data.augment.synonyms=nope.txt"], "file not found: nope.txt"),
        (
            ["task=ner", *ZH_NER, "data.augment.back_translation=[a,b]"],
            "data.augment.back_translation: two translation",
        ),
    ],
)
def test_augmentation_that_does_not_fit_is_a_config_error(tmp_path, tiny_models, overrides, message, capsys):
    data = [] if "task=ner" in overrides else [f"data.train={SENT / 'zh_train.jsonl'}"]
    model = f"model={tiny_models['wordpiece']}"
    assert message in cli_error(
        capsys, "train", model, f"hydra.run.dir={tmp_path / 'run'}", "lang=zh", *data, *overrides
    )


def tiny_marian(directory):
    """A random two-layer Marian translation model with a test tokenizer: it translates into nonsense, which is
    all the plumbing needs."""
    import torch
    from transformers import MarianConfig, MarianMTModel

    from conftest import build_tokenizer

    tokenizer = build_tokenizer("bpe")
    torch.manual_seed(0)
    config = MarianConfig(
        vocab_size=len(tokenizer), d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=128,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id, forced_eos_token_id=tokenizer.eos_token_id,
    )  # fmt: skip
    MarianMTModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.mark.slow  # two runs, each translating every training text twice
def test_back_translation_through_two_translation_models_is_cached(tmp_path, tiny_models, monkeypatch, caplog):
    monkeypatch.setenv("MLFT_CACHE", str(tmp_path / "cache"))
    caplog.set_level("INFO", logger="mlft")
    there, back = tiny_marian(tmp_path / "to-pivot"), tiny_marian(tmp_path / "back")
    args = [
        "task=sentiment", "lang=en", "trainer.epochs=1", f"data.train={SENT / 'en_train.jsonl'}",
        f"data.dev={SENT / 'en_dev.jsonl'}", f"data.augment.back_translation=[{there},{back}]",
    ]  # fmt: skip
    run = train(tmp_path / "run", tiny_models["bpe"], *args)
    added = metrics(run)["augmentation"]["added"]["back_translation"]
    train_texts = {json.loads(x)["text"] for x in (SENT / "en_train.jsonl").read_text().splitlines()}
    assert 0 < added <= len(train_texts) * 4  # at most one paraphrase per training example
    [cached] = (tmp_path / "cache" / "back-translation").glob("*.json")
    paraphrases = json.loads(cached.read_text())
    assert set(paraphrases) == train_texts and any(p != t for t, p in paraphrases.items())
    assert "through" in caplog.text
    caplog.clear()
    again = train(tmp_path / "again", tiny_models["bpe"], *args)
    assert "from the cache" in caplog.text and metrics(again)["augmentation"] == metrics(run)["augmentation"]


def test_the_cedict_dictionary_script_inverts_whole_word_senses():
    import sys

    from conftest import ROOT

    sys.path.insert(0, str(ROOT / "scripts"))
    import cedict_dictionary

    lines = [
        "# CC-CEDICT",
        "城市 城市 [cheng2 shi4] /city/town/CL:座[zuo4]/",
        "公司 公司 [gong1 si1] /(business) company/firm/corporation/",
        "倫敦 伦敦 [Lun2 dun1] /London, capital of United Kingdom/",
        "3C 3C [san1 C] /abbr. for computers/",
    ]
    assert cedict_dictionary.invert(lines) == {
        "city": ["城市"],
        "town": ["城市"],
        "firm": ["公司"],
        "corporation": ["公司"],
    }


def test_back_translation_that_returns_empty_texts_says_so(tmp_path, tiny_models, monkeypatch, caplog):
    import mlft.tasks.sequence_classification as classification

    def translate(texts, models, langs):
        return {t: ("" if i % 2 else t + " again") for i, t in enumerate(texts)}

    monkeypatch.setattr(classification, "back_translate", translate)
    caplog.set_level("INFO", logger="mlft")
    args = ["task=sentiment", "lang=en", "trainer.epochs=1", f"data.train={SENT / 'en_train.jsonl'}"]
    train(tmp_path / "run", tiny_models["bpe"], *args, "data.augment.back_translation=[a,b]")
    assert "back-translation: " in caplog.text and "texts came back empty from a -> b and add nothing" in caplog.text
