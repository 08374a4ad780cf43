"""model.pooling=mean: the mean-pooling classifier ignores padding, saves and loads like a transformers model, and a
run with it evaluates, exports (ONNX, HF) and trains with LoRA like a first-token run."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModel
from transformers.utils import logging as hf_logging

from mlft.cli import main
from mlft.errors import ConfigError
from mlft.models.pooling import MeanPoolingClassifier

from conftest import FIXTURES
from helpers import metrics, train

SENT = FIXTURES / "sentiment"
DATA = [f"data.{split}={SENT / f'zh_{split}.jsonl'}" for split in ("train", "dev", "test")]
LABELS = {"num_labels": 2, "id2label": {0: "neg", 1: "pos"}, "label2id": {"neg": 0, "pos": 1}}


@pytest.fixture(scope="module")
def mean_run(tmp_path_factory, tiny_models):
    root = tmp_path_factory.mktemp("mean")
    return train(root / "run", tiny_models["wordpiece"], "task=sentiment", "lang=zh", "model.pooling=mean",
                 "trainer.epochs=6", *DATA)  # fmt: skip


def test_the_head_ignores_padding(tiny_models):
    torch.manual_seed(0)
    model = MeanPoolingClassifier.from_pretrained(tiny_models["wordpiece"], **LABELS).eval()
    ids = torch.tensor([[2, 5, 6, 7, 3]])
    alone = model(ids, torch.ones_like(ids)).logits
    padded = torch.cat([ids, torch.zeros((1, 4), dtype=torch.long)], dim=1)
    mask = torch.cat([torch.ones_like(ids), torch.zeros((1, 4), dtype=torch.long)], dim=1)
    torch.testing.assert_close(model(padded, mask).logits, alone, rtol=0, atol=1e-5)
    assert not torch.allclose(model(padded, torch.ones_like(padded)).logits, alone, atol=1e-3)


def test_saved_head_reloads_whole_and_its_encoder_loads_with_automodel(tiny_models, tmp_path, caplog):
    torch.manual_seed(0)
    model = MeanPoolingClassifier.from_pretrained(tiny_models["wordpiece"], **LABELS).eval()
    model.save_pretrained(tmp_path)
    saved = load_file(tmp_path / "model.safetensors")
    assert {name.split(".")[0] for name in saved} == {"bert", "classifier"}  # the Auto heads' layout, no pooler
    assert json.loads((tmp_path / "config.json").read_text())["mlft_pooling"] == "mean"
    ids = torch.tensor([[2, 5, 6, 7, 3], [2, 8, 3, 0, 0]])
    mask = (ids != 0).long()
    verbosity = hf_logging.get_verbosity()  # the CLI, run in-process by other tests, lowers it
    hf_logging.set_verbosity_warning()
    try:
        caplog.clear()
        again = MeanPoolingClassifier.from_pretrained(tmp_path).eval()
        assert "LOAD REPORT" not in caplog.text  # the expected pooler/classifier keys are checked, not reported
        encoder = AutoModel.from_pretrained(tmp_path).eval()
        assert "LOAD REPORT" in caplog.text  # a plain AutoModel load still reports them
    finally:
        hf_logging.set_verbosity(verbosity)
    torch.testing.assert_close(again(ids, mask).logits, model(ids, mask).logits, rtol=0, atol=0)
    torch.testing.assert_close(
        encoder(input_ids=ids, attention_mask=mask).last_hidden_state,
        model.bert(input_ids=ids, attention_mask=mask).last_hidden_state,
    )


def test_sharded_and_damaged_saves(tiny_models, tmp_path):
    torch.manual_seed(0)
    model = MeanPoolingClassifier.from_pretrained(tiny_models["wordpiece"], **LABELS).eval()
    model.save_pretrained(tmp_path / "sharded", max_shard_size="20KB")
    assert not (tmp_path / "sharded" / "model.safetensors").exists()
    ids = torch.tensor([[2, 5, 6, 7, 3]])
    again = MeanPoolingClassifier.from_pretrained(tmp_path / "sharded").eval()
    torch.testing.assert_close(again(ids).logits, model(ids).logits, rtol=0, atol=0)

    model.save_pretrained(tmp_path / "damaged")
    weights = load_file(tmp_path / "damaged" / "model.safetensors")
    del weights["bert.encoder.layer.0.output.dense.weight"]
    save_file(weights, tmp_path / "damaged" / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ConfigError, match="does not match its config.json"):
        MeanPoolingClassifier.from_pretrained(tmp_path / "damaged")
    del weights["classifier.weight"]
    save_file(weights, tmp_path / "damaged" / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ConfigError, match="no classifier weights"):
        MeanPoolingClassifier.from_pretrained(tmp_path / "damaged")


def test_a_new_label_set_gets_a_new_classifier_only_when_asked(tiny_models, tmp_path):
    MeanPoolingClassifier.from_pretrained(tiny_models["wordpiece"], **LABELS).save_pretrained(tmp_path)
    three = {"num_labels": 3, "id2label": {0: "a", 1: "b", 2: "c"}, "label2id": {"a": 0, "b": 1, "c": 2}}
    with pytest.raises(ConfigError, match="classifies into 2 labels"):
        MeanPoolingClassifier.from_pretrained(tmp_path, **three)
    model = MeanPoolingClassifier.from_pretrained(tmp_path, ignore_mismatched_sizes=True, **three)
    assert model.classifier.out_features == 3
    saved = load_file(tmp_path / "model.safetensors")
    embeddings = "bert.embeddings.word_embeddings.weight"
    torch.testing.assert_close(model.get_input_embeddings().weight, saved[embeddings])


def test_a_mean_pooling_run_evaluates_and_exports_like_itself(mean_run, tmp_path):
    assert metrics(mean_run)["test"]["zh"]["accuracy"] > 0.8  # the fixture reviews are easy; chance is 0.5
    main(["eval", f"run={mean_run}", "split=[test]"])
    evaluated = json.loads(next((mean_run / "evals").iterdir()).joinpath("metrics.json").read_text())
    assert evaluated["test"]["zh"] == metrics(mean_run)["test"]["zh"]
    # Both exports pass the parity gate (export exits 2 when the artifact scores below the run).
    main(["export", f"run={mean_run}", "format=onnx", f"out={tmp_path / 'onnx'}"])
    main(["export", f"run={mean_run}", "format=hf", f"out={tmp_path / 'hf'}"])
    assert "MeanPoolingClassifier.from_pretrained" in (tmp_path / "hf" / "README.md").read_text()
    assert json.loads((mean_run / "model" / "config.json").read_text())["mlft_pooling"] == "mean"
    # The model card's snippet loads the HF export as the run's model.
    ids = torch.tensor([[2, 5, 6, 7, 3], [2, 8, 3, 0, 0]])
    exported = MeanPoolingClassifier.from_pretrained(tmp_path / "hf").eval()
    trained = MeanPoolingClassifier.from_pretrained(mean_run / "model").eval()
    torch.testing.assert_close(exported(ids, (ids != 0).long()).logits, trained(ids, (ids != 0).long()).logits)
    texts = tmp_path / "texts.txt"
    texts.write_text("非常满意，下次还来。\n价格太贵，不值得。\n")
    outputs = {}
    for name, source in (("run", f"run={mean_run}"), ("onnx", f"model={tmp_path / 'onnx'}")):
        main(["predict", source, f"input={texts}", f"output={tmp_path / name}.jsonl"])
        outputs[name] = [json.loads(line) for line in (tmp_path / f"{name}.jsonl").read_text().splitlines()]
    for run_pred, onnx_pred in zip(outputs["run"], outputs["onnx"]):
        assert run_pred["label"] == onnx_pred["label"]
        assert run_pred["score"] == pytest.approx(onnx_pred["score"], abs=1e-4)


def test_lora_trains_the_mean_pooling_classifier(tmp_path, tiny_models):
    run = train(tmp_path / "run", tiny_models["wordpiece"], "task=sentiment", "lang=zh", "model.pooling=mean",
                "peft=lora", "peft.lr=5e-2", "trainer.epochs=2", *DATA)  # fmt: skip
    adapter = load_file(run / "adapter" / "adapter_model.safetensors")
    assert any("classifier" in name for name in adapter)  # the head is saved with the adapter: it trained
    assert any("lora_A" in name for name in adapter)
    main(["eval", f"run={run}", "split=[test]"])
    evaluated = json.loads(next((run / "evals").iterdir()).joinpath("metrics.json").read_text())
    assert evaluated["test"]["zh"] == metrics(run)["test"]["zh"]
