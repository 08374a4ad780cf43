"""Adding a task type is one class: a text-regression task defined here, registered, and trained, evaluated,
predicted with and exported through the real CLI, with no other module touched. Its metric is an error
(lower is better), so checkpoint selection and the export's parity gate must follow the task's direction.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from mlft.cli import main
from mlft.errors import DataError
from mlft.tasks import TASKS
from mlft.tasks.cache_key import encoding_key
from mlft.tasks.padding import attention_mask, padded
from mlft.tasks.protocol import BATCH, Output

from conftest import FIXTURES
from helpers import metrics, train


class TextRegression:
    """A number per text (the `label` column), predicted by a one-output head and scored by squared error."""

    name = "text_regression"
    metrics = {"mse": False, "mae": False}
    model_class = AutoModelForSequenceClassification
    pipeline_tag = "text-classification"
    peft_task_type = "SEQ_CLS"
    plain_files = None
    evaluate_before = False
    fields = ("text", "label")
    optional_fields = ()
    column_fallbacks: dict = {}
    model_outputs = (Output("logits", (BATCH, "value")),)

    def __init__(self, labels: list[str], max_length: int):
        self.labels, self.max_length, self.pad_to_multiple_of = labels, max_length, 1

    @classmethod
    def build(cls, task: Any, model: Any, labels: list[str]) -> TextRegression:
        return cls(labels, model.max_length)

    @staticmethod
    def config_problems(task: Any, model: Any) -> list[str]:
        return []

    def example(self, record: dict, columns: dict, loc: str, cells: Any) -> dict:
        text, value = record.get(columns.get("text", "text")), record.get(columns.get("label", "label"))
        try:
            return {"text": str(text), "label": float(value)}
        except (TypeError, ValueError):
            raise DataError(f"{loc}: label must be a number, got {value!r}") from None

    def convert_labels(self, examples: list[dict], scheme: str, repair: bool) -> None:
        return None

    def label_names(self, example: dict) -> list[str]:
        return []

    def relabel(self, example: dict, mapping: dict, dropped: Counter) -> dict:
        return example

    def label_values(self, example: dict) -> list[str]:
        return []

    def label_set(self, names: list[str], given: bool) -> list[str]:
        return []

    def training_problems(self, train: list[dict]) -> list[str]:
        return []

    def filter_training(self, examples: list[dict], max_length: int | None, keep_unlabelled: float) -> list[dict]:
        return [ex for ex in examples if max_length is None or len(ex["text"]) <= max_length]

    def model_inputs(self, tokenizer: Any) -> tuple[str, ...]:
        return ("input_ids", "attention_mask")

    def head_config(self) -> dict:
        return {"num_labels": 1, "problem_type": "regression"}

    def cache_key(self) -> str:
        return encoding_key({"task": self.name, "max_length": self.max_length}, TextRegression)

    def encode(self, examples: list[dict], tokenizer: Any, lang: str) -> list[dict]:
        encoded = tokenizer([ex["text"] for ex in examples], truncation=True, max_length=self.max_length)
        features = []
        for index, (ids, ex) in enumerate(zip(encoded["input_ids"], examples)):
            feature = {"input_ids": ids, "example": index}
            if "label" in ex:
                feature["labels"] = ex["label"]
            features.append(feature)
        return features

    def collate(self, features: list[dict], pad_id: int, training: bool = False) -> dict[str, torch.Tensor]:
        rows = [f["input_ids"] for f in features]
        ids = padded(rows, pad_id)
        batch = {"input_ids": ids, "attention_mask": attention_mask(rows, ids.shape[1])}
        if "labels" in features[0]:
            batch["labels"] = torch.tensor([f["labels"] for f in features])
        return batch

    def outputs(self, scores: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"value": scores["logits"].float().squeeze(-1)}

    def decode(self, examples: list[dict], features: list[dict], outs: list[dict]) -> list[dict]:
        predictions: list[dict] = [{} for _ in examples]
        for feature, out in zip(features, outs):
            predictions[feature["example"]] = {"value": float(out["value"])}
        return predictions

    def score(self, examples: list[dict], predictions: list[dict]) -> dict:
        errors = [p["value"] - ex["label"] for ex, p in zip(examples, predictions)]
        return {"mse": sum(e * e for e in errors) / len(errors), "mae": sum(abs(e) for e in errors) / len(errors)}

    def from_request(self, request: str | dict, lang: str) -> tuple[dict | None, Any]:
        text = request if isinstance(request, str) else request["text"]
        return ({"text": text} if text.strip() else None), text

    def to_record(self, request: str | dict, context: Any, prediction: dict | None) -> dict:
        return {"text": context, "value": prediction["value"] if prediction else None}

    def vocabulary_texts(self, examples: list[dict]) -> list[str]:
        return []


def scored(source: Path, target: Path) -> Path:
    """The sentiment fixture as regression data: positive 1.0, negative 0.0."""
    lines = [json.loads(line) for line in source.read_text().splitlines()]
    target.write_text(
        "".join(json.dumps({"text": r["text"], "label": float(r["label"] == "pos")}) + "\n" for r in lines)
    )
    return target


def test_a_task_type_defined_outside_the_package_runs_end_to_end(tiny_models, tmp_path, monkeypatch):
    monkeypatch.setitem(TASKS, "text_regression", TextRegression)
    data = {
        split: scored(FIXTURES / "sentiment" / f"zh_{split}.jsonl", tmp_path / f"{split}.jsonl")
        for split in ("train", "dev", "test")
    }
    run = train(
        tmp_path / "run",
        tiny_models["wordpiece"],
        "task=sentiment",  # a preset for the languages; the overrides make it the new type
        "task.name=score",
        "task.type=text_regression",
        "task.metric=mse",
        "lang=zh",
        "trainer.epochs=3",
        *(f"data.{split}={path}" for split, path in data.items()),
    )
    m = metrics(run)
    assert set(m["test"]["zh"]) == {"n", "mse", "mae"} and math.isfinite(m["test"]["zh"]["mse"])
    history = [h["score"] for h in m["history"]]
    assert m["selection"]["best_score"] == min(history)  # lower is better: the smallest error was kept
    record = json.loads((run / "predictions" / "test-zh.jsonl").read_text().splitlines()[0])
    assert isinstance(record["prediction"]["value"], float) and record["label"] in (0.0, 1.0)

    main(["eval", f"run={run}", f"out={tmp_path / 'eval'}"])
    evaluated = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert evaluated["test"]["zh"] == pytest.approx(m["test"]["zh"])

    main(["predict", f"run={run}", f"input={FIXTURES / 'zh_texts.txt'}", f"output={tmp_path / 'p.jsonl'}"])
    records = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert records and all(set(r) == {"text", "value"} for r in records)

    main(["export", f"run={run}", f"out={tmp_path / 'hf'}", "max_drop=0"])
    card = (tmp_path / "hf" / "README.md").read_text()
    assert "| dev lang | mse (run) | mse (export) |" in card and "text-classification" in card
    main(
        ["predict", f"model={tmp_path / 'hf'}", f"input={FIXTURES / 'zh_texts.txt'}", f"output={tmp_path / 'q.jsonl'}"]
    )
    exported = [json.loads(line) for line in (tmp_path / "q.jsonl").read_text().splitlines()]
    assert [r["value"] for r in exported] == pytest.approx([r["value"] for r in records], abs=1e-5)
