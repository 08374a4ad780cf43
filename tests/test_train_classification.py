"""Text classification end to end: single-label, multi-label and sentence pairs."""

from __future__ import annotations

import csv

from conftest import FIXTURES
from helpers import metrics, train

SENT = FIXTURES / "sentiment"


def test_single_label_sentiment_with_confusion_matrix(sentiment_run):
    run = sentiment_run
    m = metrics(run)
    test = m["test"]["zh"]
    assert set(test) >= {"accuracy", "macro_f1", "per_class", "confusion_matrix", "n"}
    assert test["accuracy"] > 0.8  # the fixture reviews are easy; chance is 0.5
    assert sum(map(sum, test["confusion_matrix"]["matrix"])) == test["n"] == 12
    rows = list(csv.reader((run / "confusion-test-zh.csv").open()))
    assert rows[0] == ["gold \\ predicted", "neg", "pos"]


def test_multi_label_from_csv(tmp_path, tiny_models):
    run = train(
        tmp_path / "run",
        tiny_models["bpe"],
        "task=multilabel",
        "lang=en",
        "trainer.epochs=10",
        f"data.train={FIXTURES / 'multilabel' / 'train.csv'}",
        f"data.dev={FIXTURES / 'multilabel' / 'dev.csv'}",
        "data.label_separator=|",
    )
    dev = metrics(run)["dev"]["en"]
    assert set(dev["per_class"]) == {"economy", "politics", "sports"}
    assert 0.0 <= dev["micro_f1"] <= 1.0
    first = (run / "predictions" / "dev-en.jsonl").read_text().splitlines()[0]
    assert '"label": [' in first  # a list of labels per text


def test_sentence_pairs_from_tsv(tmp_path, tiny_models):
    run = train(
        tmp_path / "run",
        tiny_models["wordpiece"],
        "task=nli",
        "lang=en",
        "trainer.epochs=2",
        f"data.train={FIXTURES / 'nli' / 'train.tsv'}",
        f"data.dev={FIXTURES / 'nli' / 'dev.tsv'}",
        "data.columns.text=premise",
        "data.columns.text_pair=hypothesis",
    )
    dev = metrics(run)["dev"]["en"]
    assert dev["confusion_matrix"]["labels"] == ["entailment", "neutral", "contradiction"]
    assert dev["n"] == 12


def test_macro_f1_counts_only_classes_the_set_has_or_predicts():
    from mlft.tasks.sequence_classification import score

    examples = [{"label": "entailment"}, {"label": "contradiction"}]
    predictions = [{"label": "entailment"}, {"label": "contradiction"}]
    scored = score(examples, predictions, ["entailment", "neutral", "contradiction"], multi_label=False)
    assert scored["macro_f1"] == 1.0  # neutral, in neither, is no class scored 0
