"""Bottleneck adapters (peft=bottleneck): the layer computes x + up(relu(down(x))) where the papers put it, only
adapters and head train, the run reloads in a new process with the same predictions, adapter/ alone rebuilds the
model on the base encoder, and the ONNX export computes the same logits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import BertConfig, BertForTokenClassification

from mlft.cli import main
from mlft.commands.saved import load_run
from mlft.models import bottleneck

from conftest import build_model_dir
from helpers import ZH_NER, ZH_SENTIMENT, cli_error, metrics, run_cli, train

BOTTLENECK = ["peft=bottleneck", "peft.lr=5e-3", "trainer.epochs=6"]


def tiny_tagger() -> BertForTokenClassification:
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=60, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48, num_labels=3
    )
    return BertForTokenClassification(config).eval()


def test_a_new_adapter_is_the_identity_and_then_adds_its_bottleneck_before_the_residual():
    model = tiny_tagger()
    ids = torch.randint(4, 60, (2, 7))
    with torch.no_grad():
        before = model(input_ids=ids).logits
    names = bottleneck.add(model, "houlsby", 5)
    assert len(names) == 4  # two per block
    assert model.config.mlft_bottleneck == {"placement": "houlsby", "size": 5}
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, before)
    out = model.bert.encoder.layer[1].output
    torch.nn.init.normal_(out.adapter.up.weight)
    hidden, residual = torch.randn(2, 7, 48), torch.randn(2, 7, 32)
    projected = out.dense.weight @ hidden.unsqueeze(-1)
    projected = projected.squeeze(-1) + out.dense.bias
    adapted = projected + out.adapter.up(torch.relu(out.adapter.down(projected)))
    with torch.no_grad():
        torch.testing.assert_close(out(hidden, residual), out.LayerNorm(adapted + residual))


@pytest.fixture(scope="module")
def base_model(tmp_path_factory) -> Path:
    return build_model_dir(tmp_path_factory.mktemp("bottleneck-base"), "unigram", heads=4)


@pytest.fixture(scope="module")
def ner_run(tmp_path_factory, base_model) -> Path:
    root = tmp_path_factory.mktemp("bottleneck")
    return train(root / "ner", base_model, "task=ner", *ZH_NER, *BOTTLENECK, "peft.reduction_factor=4")


def test_only_the_adapters_and_the_head_train(ner_run, base_model):
    trained = load_file(str(ner_run / "model" / "model.safetensors"))
    base = load_file(str(base_model / "model.safetensors"))
    encoder = {k: v for k, v in trained.items() if k.startswith("bert.") and ".adapter." not in k}
    assert encoder and all(torch.equal(v, base[k.removeprefix("bert.")]) for k, v in encoder.items())
    ups = [v for k, v in trained.items() if k.endswith("adapter.up.weight")]
    assert len(ups) == 2 and all(v.abs().sum() > 0 for v in ups)  # pfeiffer: one per block, trained off zero
    assert json.loads((ner_run / "model" / "config.json").read_text())["mlft_bottleneck"] == {
        "placement": "pfeiffer",
        "size": 8,
    }
    losses = [entry["loss"] for entry in metrics(ner_run)["losses"]]
    assert len(losses) >= 2 and losses[-1] < losses[0]  # the adapters and head learned (the encoder is random)


def test_the_run_predicts_the_same_in_a_new_process(ner_run, tmp_path):
    texts = tmp_path / "texts.txt"
    texts.write_text("张三在北京工作。\n李四去上海。\n")
    here, there = tmp_path / "here.jsonl", tmp_path / "there.jsonl"
    main(["predict", f"run={ner_run}", f"input={texts}", f"output={here}"])
    result = run_cli("predict", f"run={ner_run}", f"input={texts}", f"output={there}")
    assert result.returncode == 0, result.stderr[-1500:]
    assert here.read_text() == there.read_text()
    result = run_cli("eval", f"run={ner_run}", f"out={tmp_path / 'eval'}")
    assert result.returncode == 0, result.stderr[-1500:]
    score = json.loads((tmp_path / "eval" / "metrics.json").read_text())["test"]["zh"]["f1"]
    assert score == pytest.approx(metrics(ner_run)["test"]["zh"]["f1"])


def test_the_adapter_folder_alone_rebuilds_the_model_on_the_base_encoder(ner_run, base_model):
    saved = load_run(ner_run)
    stored = load_file(str(ner_run / "adapter" / bottleneck.ADAPTER_WEIGHTS))
    assert stored and all(".adapter." in k or k.startswith("classifier.") for k in stored)
    model = BertForTokenClassification.from_pretrained(base_model, num_labels=saved.model.config.num_labels).eval()
    bottleneck.load_adapter(model, ner_run / "adapter")
    encoded = saved.tokenizer(["张三在北京工作。"], return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(model(**encoded).logits, saved.model.eval()(**encoded).logits)


def test_the_onnx_export_computes_the_runs_logits(ner_run, tmp_path):
    import onnxruntime

    out = tmp_path / "onnx"
    main(["export", f"run={ner_run}", "format=onnx", f"out={out}"])
    saved = load_run(ner_run)
    encoded = saved.tokenizer(["张三在北京工作。", "李四去上海"], padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = saved.model.eval()(**encoded).logits.numpy()
    session = onnxruntime.InferenceSession(str(out / "model.onnx"))
    got = session.run(None, {i.name: encoded[i.name].numpy() for i in session.get_inputs()})[0]
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_classification_trains_with_houlsby_adapters_and_mean_pooling(base_model, tmp_path):
    run = train(
        tmp_path / "sentiment",
        base_model,
        "task=sentiment",
        *ZH_SENTIMENT,
        *BOTTLENECK,
        "peft.placement=houlsby",
        "model.pooling=mean",
    )
    trained = load_file(str(run / "model" / "model.safetensors"))
    assert sum(k.endswith("adapter.up.weight") for k in trained) == 4
    main(["eval", f"run={run}", f"out={tmp_path / 'eval'}"])
    again = json.loads((tmp_path / "eval" / "metrics.json").read_text())["test"]["zh"]["accuracy"]
    assert again == pytest.approx(metrics(run)["test"]["zh"]["accuracy"])


def test_bottleneck_config_errors(base_model, tmp_path, capsys):
    common = ["train", f"model={base_model}", "trainer.progress=false"]
    err = cli_error(capsys, *common, "task=ner", *ZH_NER, "peft=bottleneck", "peft.reduction_factor=0")
    assert "peft.reduction_factor: must be >= 1" in err
    err = cli_error(capsys, *common, "task=mlm", "peft=bottleneck", f"hydra.run.dir={tmp_path / 'mlm'}")
    assert "bottleneck adapters train token and sequence classifiers" in err
    err = cli_error(capsys, *common, "task=ner", *ZH_NER, "peft=bottleneck", "peft.placement=inside")
    assert "peft.placement" in err
