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

from conftest import FIXTURES
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


def assert_eval_and_adapter_reproduce(run, kind, base_model):
    """`mlft eval` reports the run's test metrics again, and adapter/ loaded on the base model in a fresh
    PeftModel computes what the merged model/ does."""
    from peft import PeftModel

    main(["eval", f"run={run}", "split=[test]"])
    evaluated = json.loads(next((run / "evals").iterdir()).joinpath("metrics.json").read_text())
    assert evaluated["test"]["zh"] == metrics(run)["test"]["zh"]
    merged = kind.from_pretrained(run / "model").eval()
    base = kind.from_pretrained(base_model, num_labels=merged.config.num_labels)
    unmerged = PeftModel.from_pretrained(base, run / "adapter").eval()
    ids = torch.tensor([[2, 40, 41, 42, 43, 3]])
    with torch.no_grad():
        torch.testing.assert_close(merged(input_ids=ids).logits, unmerged(input_ids=ids).logits, rtol=1e-4, atol=1e-5)


def test_the_merged_model_reproduces_the_reported_metrics_and_the_unmerged_adapter(lora_run, tiny_models, tmp_path):
    from transformers import AutoModelForTokenClassification

    assert_eval_and_adapter_reproduce(lora_run, AutoModelForTokenClassification, tiny_models["unigram"])


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


SENTIMENT = [f"data.{split}={FIXTURES / 'sentiment' / f'zh_{split}.jsonl'}" for split in ("train", "dev", "test")]


@pytest.mark.parametrize(
    "method,extra,marker",
    [
        ("loha", [], "hada_w1"),
        ("lokr", [], "lokr_w1"),
        ("lora", ["peft.use_dora=true"], "lora_magnitude_vector"),
        ("lora", ["peft.use_rslora=true", "peft.r=4"], "lora_A"),
        ("adalora", ["peft.r=2", "peft.init_r=6"], "lora_E"),
    ],
)
@pytest.mark.parametrize("task,data", [("ner", ZH_NER), ("sentiment", SENTIMENT)])
def test_each_adapter_method_trains_saves_only_itself_and_merges(
    method, extra, marker, task, data, tmp_path, tiny_models
):
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification

    run = train(
        tmp_path / "run",
        tiny_models["wordpiece"],
        f"task={task}",
        "lang=zh",
        "trainer.epochs=2",
        f"peft={method}",
        "peft.lr=1e-2",
        *extra,
        *data,
    )
    adapter = load_file(run / "checkpoints" / "best" / "adapter_model.safetensors")
    assert any(marker in name for name in adapter)  # the method's own weights, and only adapter and head
    assert all(marker.split("_")[0] in name or "classifier" in name for name in adapter), sorted(adapter)
    assert not any(marker in name for name in load_file(run / "model" / "model.safetensors"))  # merged
    summary = json.loads((run / "env.json").read_text())["model"]
    assert 0 < summary["trainable_parameters"] < summary["parameters"] / 2
    kind = AutoModelForTokenClassification if task == "ner" else AutoModelForSequenceClassification
    assert_eval_and_adapter_reproduce(run, kind, tiny_models["wordpiece"])


def test_lora_options_need_lora(tmp_path, tiny_models, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train(tmp_path / "bad", tiny_models["wordpiece"], "task=ner", "lang=zh", "peft=loha", "peft.use_dora=true")
    assert exit_info.value.code == 2
    assert "peft.use_dora: a LoRA option, but peft.method is loha (allowed with: lora)" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        train(tmp_path / "bad", tiny_models["wordpiece"], "task=ner", "lang=zh", "peft=adalora", "peft.init_r=4")
    assert exit_info.value.code == 2
    assert "peft.init_r: AdaLoRA prunes from init_r down to r, so it must be >= r (8), got 4" in (
        capsys.readouterr().err
    )


def test_adalora_prunes_ranks_while_training(tmp_path, tiny_models, capsys):
    run = train(
        tmp_path / "run",
        tiny_models["wordpiece"],
        "task=ner",
        "lang=zh",
        "trainer.epochs=3",
        "trainer.batch_size=4",
        "peft=adalora",
        "peft.r=2",
        "peft.init_r=6",
        "trainer.select=last",
        *ZH_NER,
    )
    config = json.loads((run / "adapter" / "adapter_config.json").read_text())
    ranks = config["rank_pattern"]  # the ranks each adapted layer kept (written once pruning started)
    assert ranks and all(len(kept) == 6 for kept in ranks.values())
    assert sum(sum(kept) for kept in ranks.values()) == 2 * len(ranks)  # the last step's budget: r=2 on average
    with pytest.raises(SystemExit) as exit_info:  # its importance statistics are not in the checkpoints
        main(["train", f"resume={run}"])
    assert exit_info.value.code == 2
    assert "resume: an AdaLoRA run cannot continue exactly" in capsys.readouterr().err


@pytest.mark.slow
def test_the_comparison_script_writes_one_row_per_method(tmp_path, tiny_models):
    """scripts/peft_table.py (hours with the real model) checked for plumbing on a tiny model and tiny data."""
    import subprocess
    import sys

    from conftest import ROOT

    out = tmp_path / "peft.md"
    command = [
        sys.executable,
        str(ROOT / "scripts" / "peft_table.py"),
        "--only",
        "msra",
        "--methods",
        "none,lora,bottleneck",
    ]
    command += ["--model", str(tiny_models["unigram"]), "--quick", "--workdir", str(tmp_path / "w"), "--out", str(out)]
    subprocess.run(command, check=True, cwd=ROOT)
    rows = [line for line in out.read_text().splitlines() if line.startswith(("| none", "| lora", "| bottleneck"))]
    assert len(rows) == 3 and "a plumbing check" in out.read_text()
    lora = rows[1].split("|")
    trainable = int(lora[4].split("(")[0].replace(",", ""))
    assert trainable > 0 and float(lora[7]) > 0.1  # the trainable count and a peak RSS in GB


def lora_layers(model, targets: list[str], task_type: str) -> list[str]:
    """The layers of `model` that get a LoRA adapter with these target_modules."""
    wrapped = add_adapter(model, PeftConfig(name="lora", method="lora", target_modules=targets), task_type)
    return sorted(name.removesuffix(".lora_A") for name, _ in wrapped.named_modules() if name.endswith(".lora_A"))


@pytest.mark.parametrize("head", ["token", "first", "mean"])
def test_all_linear_is_on_bert_the_layer_list_the_peft_table_measured(head, tiny_models):
    # peft=lora_all says [all-linear]; docs/results/peft.md measured [query,key,value,dense] on the BERT-type
    # offline model. Both must wrap the same layers, heads of each kind around the encoder included.
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification

    from mlft.models.pooling import MeanPoolingClassifier

    kind = {
        "token": AutoModelForTokenClassification,
        "first": AutoModelForSequenceClassification,
        "mean": MeanPoolingClassifier,
    }[head]
    task_type = "TOKEN_CLS" if head == "token" else "SEQ_CLS"
    path = tiny_models["wordpiece"]
    measured = lora_layers(kind.from_pretrained(path, num_labels=3), ["query", "key", "value", "dense"], task_type)
    assert lora_layers(kind.from_pretrained(path, num_labels=3), ["all-linear"], task_type) == measured
    assert len(measured) >= 12 and not any("classifier" in name for name in measured)  # 6 per block, 2 blocks


def test_lora_all_trains_an_architecture_that_names_its_layers_otherwise(tmp_path, tiny_models):
    # DistilBERT calls its layers q_lin, k_lin, v_lin, out_lin, lin1, lin2: the preset must find them all.
    from transformers import AutoTokenizer, DistilBertConfig, DistilBertModel

    tokenizer = AutoTokenizer.from_pretrained(tiny_models["wordpiece"])
    torch.manual_seed(0)
    config = DistilBertConfig(
        vocab_size=len(tokenizer), dim=32, n_layers=2, n_heads=2, hidden_dim=64, pad_token_id=tokenizer.pad_token_id
    )
    model_dir = tmp_path / "distilbert"
    DistilBertModel(config).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    run = train(tmp_path / "run", model_dir, "task=ner", "lang=zh", "trainer.epochs=1", "peft=lora_all", *ZH_NER)
    adapter = load_file(run / "checkpoints" / "best" / "adapter_model.safetensors")
    wrapped = {name.split(".lora_A")[0].rsplit(".", 1)[-1] for name in adapter if ".lora_A" in name}
    assert wrapped == {"q_lin", "k_lin", "v_lin", "out_lin", "lin1", "lin2"}
    assert sum(".lora_A" in name for name in adapter) == 12 and any("classifier" in name for name in adapter)
    merged = load_file(run / "model" / "model.safetensors")
    assert not any("lora" in name for name in merged)


def test_all_linear_on_a_masked_lm_wraps_the_encoder_and_leaves_the_head_to_train_in_full(tiny_models):
    # A language adapter (task=mlm) with [all-linear] is the same adapter as with the BERT names; the masked-LM
    # head's transform (also called dense) trains in full beside it, never with an adapter of its own.
    from transformers import AutoModelForMaskedLM

    from mlft.config import MASKED_LM

    path = tiny_models["wordpiece"]
    measured = lora_layers(AutoModelForMaskedLM.from_pretrained(path), ["query", "key", "value", "dense"], MASKED_LM)
    assert lora_layers(AutoModelForMaskedLM.from_pretrained(path), ["all-linear"], MASKED_LM) == measured
    assert len(measured) == 12 and not any(".predictions." in name for name in measured)
    wrapped = add_adapter(
        AutoModelForMaskedLM.from_pretrained(path),
        PeftConfig(name="lora", method="lora", target_modules=["all-linear"]),
        MASKED_LM,
    )
    trainable = {name for name, p in wrapped.named_parameters() if p.requires_grad}
    assert any("predictions.transform.dense" in name and "lora" not in name for name in trainable)
