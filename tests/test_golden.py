"""Behaviour is pinned: tiny runs of every task kind reproduce the metrics and predictions recorded in
tests/golden/ before the code was restructured (NER, BMES input, sentiment, NLI pairs, multi-label, LoRA,
zero-shot cross-lingual, extractive QA, and `mlft predict` / `mlft eval` of a run).

Scores are compared to 6 decimals, labels, tags and entity offsets exactly. To record anew after a change that
is meant to alter results: MLFT_RECORD_GOLDEN=1 pytest tests/test_golden.py (and say why in the commit).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from mlft.cli import main

from conftest import FIXTURES
from helpers import ZH_NER, train

GOLDEN = Path(__file__).parent / "golden"
RECORD = os.environ.get("MLFT_RECORD_GOLDEN") == "1"
SENT = FIXTURES / "sentiment"
SPLITS = ("train", "dev", "test")
SCENARIOS: dict[str, tuple[str, list[str]]] = {
    "ner": ("unigram", ["task=ner", "lang=zh", "trainer.epochs=4", *ZH_NER]),
    "ner_bmes_wordpiece": (
        "wordpiece",
        ["task=ner", "lang=zh", "trainer.epochs=2", f"data.train={FIXTURES / 'zh_ner' / 'train.bmes'}"]
        + ["data.scheme=BMES", "task.decoding=argmax"],
    ),
    "sentiment": (
        "wordpiece",
        ["task=sentiment", "lang=zh", "trainer.epochs=3", f"data.train={SENT / 'zh_train.jsonl'}"]
        + [f"data.dev={SENT / 'zh_dev.jsonl'}", f"data.test={SENT / 'zh_test.jsonl'}"],
    ),
    "sentiment_mean_pooling": (
        "bpe",
        ["task=sentiment", "lang=zh", "trainer.epochs=2", "model.pooling=mean"]
        + [f"data.train={SENT / 'zh_train.jsonl'}", f"data.test={SENT / 'zh_test.jsonl'}"],
    ),
    "nli": (
        "wordpiece",
        ["task=nli", "lang=en", "trainer.epochs=2", f"data.train={FIXTURES / 'nli' / 'train.tsv'}"]
        + [f"data.dev={FIXTURES / 'nli' / 'dev.tsv'}", "data.columns.text=premise"]
        + ["data.columns.text_pair=hypothesis"],
    ),
    "multilabel": (
        "wordpiece",
        ["task=multilabel", "lang=en", "trainer.epochs=2", f"data.train={FIXTURES / 'multilabel' / 'train.csv'}"]
        + [f"data.dev={FIXTURES / 'multilabel' / 'dev.csv'}", "data.label_separator=|"],
    ),
    "lora": ("unigram", ["task=ner", "lang=zh", "trainer.epochs=3", "peft=lora", "peft.lr=5e-2", *ZH_NER]),
    "qa": (
        "unigram",
        ["task=qa", "lang=zh", "trainer.epochs=10", "model.max_length=48", "model.stride=8"]
        + ["task.max_question_length=16", *(f"data.{s}={FIXTURES / 'qa' / f'zh_{s}.json'}" for s in SPLITS)],
    ),
    "zero_shot": (
        "unigram",
        [
            "task=sentiment",
            "lang=en_to_all",
            "trainer.epochs=2",
            f"task.datasets={{zh: '{SENT}/zh_{{split}}.jsonl', en: '{SENT}/en_{{split}}.jsonl'}}",
            "trainer.lang_sampling.temperature=2",
        ],
    ),
}
PREDICT_INPUT = {"qa": FIXTURES / "qa" / "questions.jsonl"}
"""What `mlft predict` reads where the task does not read lines of text."""
# Fields of metrics.json that measure the machine (seconds, throughput), not the model.
MACHINE = ("preprocessing", "throughput")


def normalised(value):
    """Absolute fixture paths and float noise below 1e-6 removed, so that records compare across checkouts."""
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, str):
        return value.replace(str(FIXTURES), "<fixtures>")
    if isinstance(value, list):
        return [normalised(v) for v in value]
    if isinstance(value, dict):
        return {k: normalised(v) for k, v in value.items()}
    return value


def outputs(run: Path, tmp_path: Path, requests: Path = FIXTURES / "zh_texts.txt") -> dict:
    """What the run reported and predicted, and what `mlft predict` and `mlft eval` make of it."""
    metrics = json.loads((run / "metrics.json").read_text())
    record = {"metrics": {k: v for k, v in metrics.items() if k not in MACHINE}, "predictions": {}}
    for path in sorted((run / "predictions").glob("*.jsonl")):
        record["predictions"][path.name] = [json.loads(line) for line in path.read_text().splitlines()]
    main(["predict", f"run={run}", f"input={requests}", f"output={tmp_path / 'predict.jsonl'}"])
    record["predict"] = [json.loads(line) for line in (tmp_path / "predict.jsonl").read_text().splitlines()]
    main(["eval", f"run={run}", f"out={tmp_path / 'eval'}"])
    evaluated = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    record["eval"] = {split: evaluated[split] for split in ("dev", "test") if split in evaluated}
    return normalised(record)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_runs_reproduce_their_recorded_results(name, tiny_models, tmp_path):
    family, overrides = SCENARIOS[name]
    run = train(tmp_path / "run", tiny_models[family], *overrides)
    got = outputs(run, tmp_path, *([PREDICT_INPUT[name]] if name in PREDICT_INPUT else []))
    path = GOLDEN / f"{name}.json"
    if RECORD:
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(json.dumps(got, indent=1, ensure_ascii=False, sort_keys=True) + "\n")
        pytest.skip(f"recorded {path}")
    expected = json.loads(path.read_text())
    for part in ("metrics", "predictions", "predict", "eval"):
        assert_same(got[part], expected[part], part)


def assert_same(got, expected, where: str) -> None:
    """Equal, floats within 2e-6: another CPU's kernels move a score across the 6th-decimal rounding boundary."""
    if isinstance(expected, float) and isinstance(got, (float, int)):
        assert abs(got - expected) <= 2e-6, f"{where}: {got} != {expected}"
    elif isinstance(expected, dict) and isinstance(got, dict):
        assert got.keys() == expected.keys(), f"{where}: keys {sorted(got)} != {sorted(expected)}"
        for key in expected:
            assert_same(got[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, list) and isinstance(got, list):
        assert len(got) == len(expected), f"{where}: {len(got)} items != {len(expected)}"
        for i, (g, e) in enumerate(zip(got, expected)):
            assert_same(g, e, f"{where}[{i}]")
    else:
        assert got == expected, f"{where}: {got!r} != {expected!r}"
