"""End to end NER: a tiny model trained through the CLI, its run directory, eval, predict, reproduction."""

from __future__ import annotations

import dataclasses
import json

import pytest
from transformers import AutoModelForTokenClassification, AutoTokenizer, pipeline

from mlft.cli import main

from conftest import FIXTURES
from helpers import ZH_NER, metrics, train

RUN_FILES = {
    ".hydra",
    "checkpoints",
    "config.yaml",
    "env.json",
    "languages.json",
    "metrics.csv",
    "plots",
    "metrics.json",
    "model",
    "predictions",
    "report.md",
    "tensorboard",
    "train.log",
}


def test_run_directory_holds_the_reproducible_record(ner_run):
    assert {p.name for p in ner_run.iterdir()} == RUN_FILES
    logged = (ner_run / "train.log").read_text()
    assert f"run directory: {ner_run}" in logged and "dev f1 = " in logged and "training: " in logged
    assert {p.name for p in (ner_run / ".hydra").iterdir()} == {"config.yaml", "overrides.yaml"}
    assert {"dev-f1.png", "test-f1.png"} <= {p.name for p in (ner_run / "plots").iterdir()}
    assert {p.name for p in (ner_run / "predictions").iterdir()} == {"dev-zh.jsonl", "test-zh.jsonl"}
    checkpoints = {p.name for p in (ner_run / "checkpoints").iterdir()}
    assert checkpoints == {"best", "step-48", "embedding_rows.json"}
    env = json.loads((ner_run / "env.json").read_text())
    assert env["seed"] == 42 and env["versions"]["torch"]
    assert env["data"]["train/zh"]["fingerprint"].startswith("sha256:")
    m = metrics(ner_run)
    assert set(m["test"]["zh"]) >= {"f1", "precision", "recall", "accuracy", "per_type", "n"}
    assert m["test"]["zh"]["n"] == 16
    assert "| test | zh | 16 |" in (ner_run / "report.md").read_text()
    assert set(m["preprocessing"]) == {"load_data_seconds", "encode_seconds", "encoded_sets", "sets_from_cache"}
    assert m["throughput"]["train_samples"] == 48 * 8 and m["throughput"]["samples_per_second"] > 0


def test_training_learns_the_task(ner_run):
    m = metrics(ner_run)
    assert m["history"][0]["score"] < m["selection"]["best_score"]
    assert m["test"]["zh"]["f1"] > 0.5  # random init scores ~0.0 on this data


def test_saved_model_loads_with_plain_transformers_and_pipeline(ner_run):
    model = AutoModelForTokenClassification.from_pretrained(ner_run / "model")
    tokenizer = AutoTokenizer.from_pretrained(ner_run / "model")
    assert model.config.id2label[0] == "O" and model.config.label2id["B-PER"] > 0
    tagger = pipeline("token-classification", model=model, tokenizer=tokenizer)
    assert isinstance(tagger("张伟在北京工作。"), list)


def test_rerunning_the_saved_config_gives_the_same_metrics(ner_run, tmp_path):
    main(
        [
            "train",
            "--config-path",
            str(ner_run / ".hydra"),
            "--config-name",
            "config",
            f"hydra.run.dir={tmp_path / 'again'}",
        ]
    )
    first, second = metrics(ner_run), metrics(tmp_path / "again")
    assert second["test"] == first["test"]
    assert second["dev"] == first["dev"]


def test_existing_run_directory_is_never_overwritten(ner_run, tiny_models):
    before = (ner_run / "metrics.json").read_bytes()
    with pytest.raises(SystemExit) as exit_info:
        train(ner_run, tiny_models["unigram"], "trainer.epochs=1", *ZH_NER)
    assert exit_info.value.code == 2
    assert (ner_run / "metrics.json").read_bytes() == before


def test_eval_reproduces_the_run_metrics(ner_run, capsys):
    main(["eval", f"run={ner_run}", "split=[test]"])
    out_dirs = list((ner_run / "evals").iterdir())
    again = json.loads((out_dirs[-1] / "metrics.json").read_text())
    assert again["test"]["zh"]["f1"] == pytest.approx(metrics(ner_run)["test"]["zh"]["f1"])
    assert "| test | zh |" in capsys.readouterr().out


def test_predict_writes_entities_with_character_offsets(ner_run, tmp_path):
    output = tmp_path / "preds.jsonl"
    main(["predict", f"run={ner_run}", f"input={FIXTURES / 'zh_texts.txt'}", f"output={output}"])
    records = [json.loads(line) for line in output.read_text().splitlines()]
    lines = (FIXTURES / "zh_texts.txt").read_text().splitlines()
    assert [r["text"] for r in records] == lines
    assert records[1] == {"text": "", "entities": []}
    assert len(lines[3]) > 128  # longer than the model input: windowed
    found = [e for r in records for e in r["entities"]]
    assert found, "a model with test F1 > 0.5 finds entities"
    for record in records:
        for entity in record["entities"]:
            assert record["text"][entity["start"] : entity["end"]] == entity["text"]
            assert entity["type"] in {"PER", "LOC", "ORG"}
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", f"run={ner_run}", f"input={FIXTURES / 'zh_texts.txt'}", f"output={output}"])
    assert exit_info.value.code == 2


def test_predict_precision_overrides_the_runs_autocast(ner_run, capsys):
    import torch

    from mlft.commands.predict import Predictor
    from mlft.commands.saved import load_run

    def linear_output_dtypes(saved, precision: str) -> tuple[set, list[dict]]:
        dtypes: set = set()
        predictor = Predictor(saved, cpu=True, progress=False, precision=precision)
        linear = next(m for m in predictor.saved.model.modules() if isinstance(m, torch.nn.Linear))
        linear.register_forward_hook(lambda module, args, out: dtypes.add(out.dtype))
        return dtypes, predictor(lines, "zh")

    lines = (FIXTURES / "zh_texts.txt").read_text().splitlines()
    dtypes, bf16 = linear_output_dtypes(load_run(ner_run), "bf16")
    assert dtypes == {torch.bfloat16}
    assert [r["text"] for r in bf16] == lines
    # A run trained in bf16 predicts in fp32 with precision=no (a CPU without bf16 instructions).
    for precision, dtype in (("no", torch.float32), ("run", torch.bfloat16)):
        saved = load_run(ner_run)
        saved = dataclasses.replace(
            saved,
            config=dataclasses.replace(
                saved.config, trainer=dataclasses.replace(saved.config.trainer, precision="bf16")
            ),
        )
        assert linear_output_dtypes(saved, precision)[0] == {dtype}
    for record in bf16:
        for entity in record["entities"]:
            assert record["text"][entity["start"] : entity["end"]] == entity["text"]
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", f"run={ner_run}", f"input={FIXTURES / 'zh_texts.txt'}", "precision=fp8"])
    assert exit_info.value.code == 2
    assert "precision" in capsys.readouterr().err
