"""Masked-LM continued pretraining: masking (the recipe, held-out masks that never change, whole words), text
read from every format, and a run through the CLI whose model then serves as the encoder of a task run."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForMaskedLM

from mlft.cli import main
from mlft.models.masked_positions import MaskedPositionsLM
from mlft.tasks.masked_lm import IGNORE, collate, encode, held_out_generator, mask, word_ids, words_of

from conftest import FIXTURES
from helpers import ZH_NER, metrics, read_examples, train

SENTIMENT = FIXTURES / "sentiment"


def feature(n: int, units: list[int] | None = None) -> dict:
    ids = list(range(10, 10 + n))
    return {"input_ids": ids, "units": units if units is not None else list(range(n)), "mask_id": 4, "vocab": 50}


def test_masking_follows_the_recipe_and_never_touches_special_tokens():
    torch.manual_seed(0)
    units = [-1] + list(range(1, 3999)) + [-1]  # a special token at each end
    f = feature(4000, units)
    ids, labels = mask(f, 0.15, None)
    chosen = [i for i, label in enumerate(labels) if label != IGNORE]
    assert 0.13 < len(chosen) / 3998 < 0.17
    assert labels[0] == labels[-1] == IGNORE and ids[0] == 10 and ids[-1] == 10 + 3999
    assert all(labels[i] == f["input_ids"][i] for i in chosen)  # the target is the original token
    replaced = sum(ids[i] == 4 for i in chosen) / len(chosen)
    kept = sum(ids[i] == f["input_ids"][i] for i in chosen) / len(chosen)
    assert 0.75 < replaced < 0.85 and 0.05 < kept < 0.16  # 80% mask token; ~10% kept (+ random hits of itself)


def test_every_feature_gets_at_least_one_target():
    short = feature(3, [-1, 1, -1])
    for seed in range(20):
        _, labels = mask(short, 0.15, torch.Generator().manual_seed(seed))
        assert labels[1] == 11


def test_held_out_masks_depend_on_the_feature_only_not_on_its_batch():
    features = [feature(n) for n in (5, 9, 14)]
    alone = collate(features[2:], 0, 0.15, training=False)
    together = collate(features, 0, 0.15, training=False)
    assert torch.equal(alone["labels"][0], together["labels"][2][: alone["labels"].shape[1]])
    assert torch.equal(collate(features, 0, 0.15, training=False)["input_ids"], together["input_ids"])
    # Training batches draw new masks every time.
    draws = {tuple(collate(features, 0, 0.5, training=True)["labels"][2].tolist()) for _ in range(5)}
    assert len(draws) > 1
    assert held_out_generator(features[0]).initial_seed() != held_out_generator(features[1]).initial_seed()


@pytest.mark.parametrize("kind", ["bert", "xlm-roberta", "distilbert"])
def test_training_scores_masked_positions_only_with_the_models_own_loss_and_gradients(kind):
    from transformers import AutoConfig

    config = AutoConfig.for_model(kind, vocab_size=300, max_position_embeddings=40, **TINY[kind])
    torch.manual_seed(0)
    hooked = MaskedPositionsLM.from_config(config).eval()  # eval: no dropout, so both passes see the same net
    plain = AutoModelForMaskedLM.from_config(config).eval()
    plain.load_state_dict(hooked.state_dict())
    features = [dict(feature(n), vocab=300) for n in (7, 12, 16)]
    batch = collate(features, 0, 0.3, training=False)
    scored = int((batch["labels"] != IGNORE).sum())

    out, reference = hooked(**batch), plain(**batch)
    assert out.logits.shape == (scored, 300) and reference.logits.shape == (3, 16, 300)
    assert out.loss.item() == pytest.approx(reference.loss.item(), rel=1e-5)
    assert torch.allclose(out.logits, reference.logits[batch["labels"] != IGNORE], atol=1e-5)
    out.loss.backward()
    reference.loss.backward()
    for (name, a), b in zip(hooked.named_parameters(), plain.parameters()):
        assert (a.grad is None) == (b.grad is None), name
        if a.grad is not None:
            assert torch.allclose(a.grad, b.grad, atol=1e-6), name
    # Without labels (prediction, export) every position is scored as before.
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    assert torch.allclose(hooked(**inputs).logits, plain(**inputs).logits, atol=1e-6)


TINY = {
    "bert": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64},
    "xlm-roberta": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64},
    "distilbert": {"dim": 32, "n_layers": 2, "n_heads": 2, "hidden_dim": 64},
}


def test_whole_word_masking_masks_every_piece_of_a_chosen_word(tokenizers):
    examples = [{"text": "据新华社报道，上海今天下雨。"}, {"text": "the weather in shanghai was unbelievable today"}]
    for ex, lang in zip(examples, ("zh", "en")):
        [f] = encode([ex], tokenizers["unigram"], lang, 64, whole_word=True)
        for seed in range(10):
            _, labels = mask(f, 0.3, torch.Generator().manual_seed(seed))
            chosen = {u for u, label in zip(f["units"], labels) if label != IGNORE}
            assert chosen
            for position, unit in enumerate(f["units"]):  # all of a word's tokens, or none
                assert (labels[position] != IGNORE) == (unit in chosen)


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_a_tokenised_sentence_is_the_input_the_ner_task_gives_the_encoder(tokenizers, lang):
    # Masked-LM on the packaged NER corpora adapts the encoder to the input NER fine-tuning then feeds it: for
    # Chinese characters no bare `▁` between them (is_split_into_words puts one before each), for English the
    # words' own pieces. Whole-word units are the sentence's words: its tokens, or for Chinese jieba's words.
    from mlft.tasks.alignment import Aligner, encode_words

    tokenizer = tokenizers["unigram"]
    words = list("据新华社报道上海今天下雨") if lang == "zh" else ["the", "weather", "in", "shanghai", "today"]
    [ner] = encode_words(Aligner(tokenizer), words, None, lang, 64, 16)
    [single] = encode([{"tokens": words}], tokenizer, lang, 64, whole_word=False)
    [whole] = encode([{"tokens": words}], tokenizer, lang, 64, whole_word=True)
    assert single["input_ids"] == whole["input_ids"] == ner["input_ids"]
    if lang == "zh":
        assert "▁" not in tokenizer.convert_ids_to_tokens(single["input_ids"])
    inner = len(single["input_ids"]) - 2
    assert single["units"] == [-1, *range(1, inner + 1), -1]
    expected = len(words_of("".join(words), "zh")) if lang == "zh" else len(words)
    assert sorted(set(whole["units"]) - {-1}) == list(range(expected))
    [cut] = encode([{"tokens": words}], tokenizer, lang, 6, whole_word=False)
    assert cut["input_ids"] == [*single["input_ids"][:5], single["input_ids"][-1]]


def test_whole_word_masking_groups_the_characters_of_a_conll_file_and_of_msra_by_jieba_words(e5_tokenizer):
    """A Chinese column file (and the packaged MSRA corpus, read the same way) has a character per token: whole-word
    masking groups them by the segmenter's words, as it does a plain text."""
    pytest.importorskip("jieba")
    from mlft.data.readers import read_conll

    from conftest import FIXTURES

    sentences = [ex["tokens"] for ex in read_conll(FIXTURES / "zh_ner" / "train.conll")][:8]
    try:
        from mlft.data.builtin import read_builtin

        sentences += [ex["tokens"] for ex in read_builtin("builtin:msra", "dev")[:8]]
    except Exception:  # noqa: BLE001 - the offline extra is missing: the column file alone
        pass
    for tokens in sentences:
        [feature] = encode([{"tokens": tokens}], e5_tokenizer, "zh", 256, whole_word=True)  # knows every character
        text, units = "".join(tokens), [u for u in feature["units"] if u >= 0]
        words = words_of(text, "zh")
        assert len(set(units)) == len(words) and (len(words) < len(tokens) or len(tokens) < 3)
        assert units == sorted(units)  # a word's characters together, words in order


def test_chinese_words_come_from_the_segmenter():
    pytest.importorskip("jieba")
    text = "上海今天下雨"
    spans = words_of(text, "zh")
    assert "".join(text[a:b] for a, b in spans) == text and len(spans) < len(text)  # words, not characters
    assert words_of("hello big world", "en") == [(0, 5), (6, 9), (10, 15)]
    assert word_ids([(0, 0), (0, 2), (2, 3), (4, 6), (0, 0)], [(0, 3), (4, 6)]) == [-1, 0, 0, 1, -1]


def test_text_comes_from_lines_tables_jsonl_and_column_files(tmp_path):
    lines = tmp_path / "texts.txt"
    lines.write_text("first text\n\nsecond text\n")
    table = tmp_path / "texts.csv"
    table.write_text("body,score\nfrom a table,3\n")
    assert [ex["text"] for ex in read_examples(lines, "masked_lm")] == ["first text", "second text"]
    assert [ex["loc"] for ex in read_examples(lines, "masked_lm")] == [f"{lines}:1", f"{lines}:3"]
    assert read_examples(table, "masked_lm", columns={"text": "body"})[0]["text"] == "from a table"
    assert read_examples(SENTIMENT / "zh_train.jsonl", "masked_lm")[0]["text"] == "早餐丰富，环境优美。"
    assert read_examples(FIXTURES / "zh_ner" / "train.conll", "masked_lm", columns={})[0]["tokens"][:2]


def test_a_text_file_is_not_classification_data(tmp_path):
    lines = tmp_path / "texts.txt"
    lines.write_text("a text\n")
    with pytest.raises(Exception, match="read as a CoNLL column file .*; sequence_classification reads JSONL"):
        read_examples(lines, "sequence_classification")


def test_masked_lm_run_adapts_the_encoder_and_reports_before_and_after(tiny_models, tmp_path, capsys):
    texts = tmp_path / "train.txt"
    lines = [json.loads(line)["text"] for line in (SENTIMENT / "zh_train.jsonl").read_text().splitlines()]
    texts.write_text("\n".join(lines * 3) + "\n")
    run = train(
        tmp_path / "mlm",
        tiny_models["unigram"],
        "task=mlm",
        "lang=zh",
        f"data.train={texts}",
        f"data.dev={SENTIMENT / 'zh_dev.jsonl'}",
        f"data.test={SENTIMENT / 'zh_test.jsonl'}",
        "trainer.epochs=3",
    )
    result = metrics(run)
    before, after = result["before"]["dev"]["zh"], result["dev"]["zh"]
    assert after["loss"] < before["loss"] - 0.5  # held-out loss on the same masked positions
    assert after["perplexity"] == pytest.approx(2.718281828 ** after["loss"], rel=1e-6)
    assert after["masked_tokens"] == before["masked_tokens"] > 0
    assert "before training" in capsys.readouterr().out
    assert type(AutoModelForMaskedLM.from_pretrained(run / "model")).__name__.endswith("ForMaskedLM")

    # `mlft eval` scores the same masked positions as training did.
    main(["eval", f"run={run}"])
    again = json.loads(next((run / "evals").iterdir()).joinpath("metrics.json").read_text())
    assert again["dev"]["zh"]["loss"] == pytest.approx(after["loss"], abs=1e-5)

    # `mlft predict` scores each line on its held-out masks; `mlft export` writes a masked-LM folder.
    main(["predict", f"run={run}", f"input={FIXTURES / 'zh_texts.txt'}", f"output={tmp_path / 'scores.jsonl'}"])
    scores = [json.loads(line) for line in (tmp_path / "scores.jsonl").read_text().splitlines()]
    scored = [s for s in scores if s["text"].strip()]
    assert scored and all(s["loss"] > 0 and s["masked"] >= 1 for s in scored)
    main(["export", f"run={run}", "format=hf", f"out={tmp_path / 'export'}"])
    assert type(AutoModelForMaskedLM.from_pretrained(tmp_path / "export")).__name__.endswith("ForMaskedLM")

    # The adapted encoder is the starting point of a task run.
    ner = train(tmp_path / "ner", run / "model", "task=ner", "lang=zh", "trainer.epochs=1", *ZH_NER)
    assert metrics(ner)["dev"]["zh"]["n"] > 0


def test_the_head_is_fitted_first_on_a_frozen_encoder_and_carried_into_the_adaptation_run(tiny_models, tmp_path):
    """The two-step recipe of the guide for a model without a masked-LM head: the head alone, then the encoder."""
    data = [f"data.train={SENTIMENT / 'zh_train.jsonl'}", f"data.dev={SENTIMENT / 'zh_dev.jsonl'}"]
    data += [f"data.test={SENTIMENT / 'zh_test.jsonl'}"]
    base = tiny_models["unigram"]
    head = train(
        tmp_path / "head", base, "task=mlm", "lang=zh", *data, "model.freeze_layers=2", "optimizer.head_lr=1e-2"
    )
    fitted = metrics(head)
    assert fitted["dev"]["zh"]["loss"] < fitted["before"]["dev"]["zh"]["loss"]
    start, after = AutoModelForMaskedLM.from_pretrained(base), AutoModelForMaskedLM.from_pretrained(head / "model")
    encoder = dict(after.bert.named_parameters())
    assert all(torch.equal(p, encoder[n]) for n, p in start.bert.named_parameters())  # the encoder did not move
    assert not torch.equal(start.cls.predictions.transform.dense.weight, after.cls.predictions.transform.dense.weight)

    # The second run starts from the fitted head: its "before" is where the first run ended.
    adapted = train(tmp_path / "adapt", head / "model", "task=mlm", "lang=zh", *data, "optimizer.lr=5e-5")
    assert metrics(adapted)["before"]["dev"]["zh"]["loss"] == pytest.approx(fitted["dev"]["zh"]["loss"], abs=1e-5)


def test_masked_lm_settings_are_checked(tiny_models, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", f"model={tiny_models['unigram']}", "task=mlm", "lang=zh", "task.mlm_probability=1.5"])
    assert exit_info.value.code == 2
    assert "task.mlm_probability: must be in (0, 1)" in capsys.readouterr().err
