"""PEFT runs (peft=lora|ia3): only the adapter and the head train; model/ is the merged plain model, adapter/ the
unmerged one; eval, export and plain transformers see an ordinary model."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from mlft.cli import main
from mlft.config import PeftConfig
from mlft.engine.optim import param_groups
from mlft.models.adapters import add_adapter

from helpers import ZH_NER, metrics, train


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, tiny_models):
    root = tmp_path_factory.mktemp("lora")
    # The tiny encoder is random: only a large step gets the adapter and head anywhere in 8 epochs.
    return train(
        root / "run",
        tiny_models["unigram"],
        "task=ner",
        "lang=zh",
        "trainer.epochs=8",
        "peft=lora",
        "peft.r=16",
        "peft.lr=5e-2",
        *ZH_NER,
    )


def test_lora_trains_only_the_adapter_and_the_head_and_saves_a_merged_model(lora_run, tiny_models):
    base = load_file(tiny_models["unigram"] / "model.safetensors")
    merged = load_file(lora_run / "model" / "model.safetensors")
    assert not any("lora" in name or "modules_to_save" in name for name in merged)  # a plain model
    for name, tensor in base.items():
        key = f"bert.{name}"
        if key not in merged:  # the pooler: token classification does not use it
            continue
        if "attention.self.query.weight" in name or "attention.self.value.weight" in name:
            assert not torch.equal(merged[key], tensor), name  # the adapter was folded into these
        else:
            assert torch.equal(merged[key], tensor), name  # everything else is the base model's
    assert {"adapter_config.json", "adapter_model.safetensors"} <= {p.name for p in (lora_run / "adapter").iterdir()}
    # The best checkpoint holds only the adapter: a fraction of the model's size.
    best = lora_run / "checkpoints" / "best" / "adapter_model.safetensors"
    assert best.stat().st_size < (lora_run / "model" / "model.safetensors").stat().st_size / 5
    assert metrics(lora_run)["test"]["zh"]["f1"] > 0.2  # it learns (untrained: ~0.03)


def test_the_merged_model_reproduces_the_reported_metrics_and_the_unmerged_adapter(lora_run, tiny_models, tmp_path):
    main(["eval", f"run={lora_run}", "split=[test]"])
    evaluated = json.loads(next((lora_run / "evals").iterdir()).joinpath("metrics.json").read_text())
    assert evaluated["test"]["zh"] == metrics(lora_run)["test"]["zh"]
    from peft import PeftModel
    from transformers import AutoModelForTokenClassification

    merged = AutoModelForTokenClassification.from_pretrained(lora_run / "model").eval()
    base = AutoModelForTokenClassification.from_pretrained(tiny_models["unigram"], num_labels=merged.config.num_labels)
    unmerged = PeftModel.from_pretrained(base, lora_run / "adapter").eval()
    ids = torch.tensor([[2, 40, 41, 42, 43, 3]])
    with torch.no_grad():
        torch.testing.assert_close(merged(input_ids=ids).logits, unmerged(input_ids=ids).logits, rtol=1e-4, atol=1e-5)


def test_hf_export_of_a_lora_run_is_a_plain_model_with_the_method_in_its_card(lora_run, tmp_path):
    out = tmp_path / "hf"
    main(["export", f"run={lora_run}", "format=hf", f"out={out}"])
    assert not (out / "adapter_config.json").exists()
    assert "**Fine-tuning:** lora (r=16, alpha=16" in (out / "README.md").read_text()


@pytest.mark.parametrize("method", ["lora", "ia3"])
def test_adapter_groups_use_the_adapter_lr_and_the_head_its_own(method, tiny_models):
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(tiny_models["wordpiece"], num_labels=2)
    peft_model = add_adapter(model, PeftConfig(name=method, method=method), "SEQ_CLS")
    groups = param_groups(peft_model, weight_decay=0.01, lr=5e-4, head_lr=1e-2)
    trainable = {id(p) for p in peft_model.parameters() if p.requires_grad}
    assert {id(p) for g in groups for p in g["params"]} == trainable
    names = {id(p): n for n, p in peft_model.named_parameters()}
    for group in groups:
        heads = {"classifier" in names[id(p)] for p in group["params"]}
        assert heads == {group["lr"] == 1e-2}, group["lr"]  # the head gets head_lr, the adapter lr
    assert any(method in names[id(p)] for g in groups for p in g["params"] if g["lr"] == 5e-4)


def test_ia3_run_merges_too(tmp_path, tiny_models):
    run = train(
        tmp_path / "ia3", tiny_models["wordpiece"], "task=ner", "lang=zh", "trainer.epochs=1", "peft=ia3", *ZH_NER
    )
    merged = load_file(run / "model" / "model.safetensors")
    assert not any("ia3" in name for name in merged) and (run / "adapter" / "adapter_config.json").is_file()


@pytest.mark.parametrize(
    "override,message",
    [
        ("peft.r=0", "peft.r: must be >= 1, got 0"),
        ("peft.dropout=1.5", "peft.dropout: must be in [0, 1), got 1.5"),
        ("model.freeze_layers=1", "model.freeze_layers: conflicts with peft=lora"),
        ("peft.target_modules=[nope]", "peft.target_modules:"),
    ],
)
def test_bad_peft_settings_are_config_errors(override, message, tmp_path, tiny_models, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train(tmp_path / "bad", tiny_models["wordpiece"], "task=ner", "lang=zh", "peft=lora", override, *ZH_NER)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
