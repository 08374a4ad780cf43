"""Structured pruning (prune.*): head and neuron importance against finite differences, the cut model against the
full model with the same units gated off, and a pruned run through eval, predict, export and further training."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import BertConfig, BertForTokenClassification

from mlft.cli import main
from mlft.commands.saved import load_run
from mlft.models import pruning, rebuild
from mlft.models.load import load_model

from conftest import build_model_dir
from helpers import ZH_NER, cli_error, metrics, train


def tiny_tagger(seed: int = 0) -> BertForTokenClassification:
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=60,
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=4,
        intermediate_size=48,
        num_labels=3,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    return BertForTokenClassification(config).eval()


def batch(seed: int = 1) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, 60, (3, 10), generator=generator)
    mask = torch.ones_like(ids)
    mask[0, 7:] = 0
    return {"input_ids": ids, "attention_mask": mask, "labels": torch.randint(0, 3, (3, 10), generator=generator)}


def gated_loss(model: torch.nn.Module, heads: list[torch.Tensor], neurons: list[torch.Tensor]) -> torch.Tensor:
    """The model's loss with every head's and neuron's output multiplied by its gate value."""
    handles = []
    for block, h, n in zip(pruning.blocks(model, "test"), heads, neurons, strict=True):
        handles.append(block.out.register_forward_pre_hook(pruning._gate_heads(h, block.head_size)))
        handles.append(block.down.register_forward_pre_hook(pruning._gate_neurons(n)))
    try:
        with torch.no_grad():
            return model(**batch()).loss
    finally:
        for handle in handles:
            handle.remove()


def test_importance_is_the_loss_gradient_of_each_units_gate():
    model = tiny_tagger().double()
    head_scores, neuron_scores = pruning.importance(model, [batch()])
    ones = {"heads": [torch.ones(4, dtype=torch.float64)] * 3, "neurons": [torch.ones(48, dtype=torch.float64)] * 3}
    eps = 1e-5
    cases = [("heads", head_scores, 0, 1), ("heads", head_scores, 2, 3)]
    cases += [("neurons", neuron_scores, 1, 5), ("neurons", neuron_scores, 2, 40)]
    for kind, scores, layer, unit in cases:
        losses = []
        for step in (eps, -eps):  # the loss with this one gate moved up, then down
            gates = {k: [g.clone() for g in v] for k, v in ones.items()}
            gates[kind][layer][unit] += step
            losses.append(gated_loss(model, gates["heads"], gates["neurons"]))
        numeric = (losses[0] - losses[1]) / (2 * eps)
        assert float(scores[layer][unit]) == pytest.approx(abs(float(numeric)), rel=1e-4, abs=1e-8)
    # Scoring leaves the model as it was: no hooks, no gradients, its mode kept.
    assert not model.training and all(p.grad is None for p in model.parameters())
    assert all(not b.out._forward_pre_hooks for b in pruning.blocks(model, "test"))


def test_choose_ranks_over_the_model_after_normalising_each_layer_and_keeps_one_unit_per_layer():
    # Layer 1's raw scores are ~100x layer 0's; normalised per layer (L2) they are about the same, so the 6 units
    # removed are layer 2's three zeros, then the lowest normalised: layer 1's 10 (0.080), layer 0's 0.1 (0.082)
    # and layer 0's 0.2 (0.163), before layer 1's 30 (0.241).
    scores = [
        torch.tensor([0.1, 0.9, 0.2, 0.8]),
        torch.tensor([10.0, 90.0, 30.0, 80.0]),
        torch.tensor([0.0, 0.0, 0.0, 1.0]),
    ]
    assert pruning.choose(scores, 0.5) == [[1, 3], [1, 2, 3], [3]]
    assert pruning.choose(scores, 0.0) == [[0, 1, 2, 3]] * 3
    # Asked to remove nearly everything, each layer keeps its best unit.
    assert pruning.choose(scores, 0.99) == [[1], [1], [3]]


def test_a_pruned_model_computes_what_the_full_model_computes_with_those_units_gated_off():
    model = tiny_tagger()
    kept_heads = [[0, 2], [1, 2, 3], [3]]
    kept_neurons = [list(range(0, 48, 2)), list(range(10)), [7, 30, 47]]
    heads = [torch.tensor([float(h in kept) for h in range(4)]) for kept in kept_heads]
    neurons = [torch.tensor([float(n in kept) for n in range(48)]) for kept in kept_neurons]
    expected = gated_loss(model, heads, neurons)
    with torch.no_grad():
        full_logits = model(**batch()).logits
    before = sum(p.numel() for p in model.parameters())
    pruning.prune(model, kept_heads, kept_neurons)
    with torch.no_grad():
        out = model(**batch())
    assert float(out.loss) == pytest.approx(float(expected), abs=1e-5)
    assert not torch.allclose(out.logits, full_logits)  # the units removed did matter
    assert pruning.sizes(model) == {"heads": [2, 3, 1], "neurons": [24, 10, 3]}
    assert model.config.mlft_pruned == pruning.sizes(model)
    # 6 of 12 heads go (each: 3 x (32 x 8 weights + 8 biases) of query/key/value and 8 x 32 of the output
    # projection) and 107 of 144 neurons (each: 32 weights + 1 bias in, 32 weights out).
    head_params, neuron_params = 3 * (32 * 8 + 8) + 8 * 32, 32 + 1 + 32
    assert sum(p.numel() for p in model.parameters()) == before - 6 * head_params - 107 * neuron_params


def test_a_pruned_model_saves_and_loads_back_with_its_sizes(tmp_path):
    model = tiny_tagger()
    pruning.prune(model, [[1], [0, 3], [0, 1, 2]], [list(range(5)), list(range(48)), [3]])
    model.save_pretrained(tmp_path / "pruned")
    loaded = rebuild.pretrained(BertForTokenClassification.from_pretrained, str(tmp_path / "pruned")).eval()
    assert pruning.sizes(loaded) == pruning.sizes(model)
    with torch.no_grad():
        assert torch.equal(loaded(**batch()).logits, model(**batch()).logits)
    # Recorded sizes that do not fit the model are refused, not re-initialised.
    config = json.loads((tmp_path / "pruned" / "config.json").read_text())
    config["mlft_pruned"]["heads"][0] = 9
    (tmp_path / "pruned" / "config.json").write_text(json.dumps(config))
    with pytest.raises(Exception, match="mlft_pruned"):
        rebuild.pretrained(BertForTokenClassification.from_pretrained, str(tmp_path / "pruned"))


# A pruned run


@pytest.fixture(scope="module")
def four_heads(tmp_path_factory) -> Path:
    """A tiny BERT with 4 heads a layer (the shared tiny models have 2)."""
    return build_model_dir(tmp_path_factory.mktemp("four-heads"), "unigram", layers=3, heads=4)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, four_heads) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("pruning")
    base = train(root / "base", four_heads, "task=ner", *ZH_NER, "trainer.epochs=3")
    pruned = train(
        root / "pruned",
        base / "model",
        "task=ner",
        *ZH_NER,
        "trainer.epochs=1",
        "prune.heads=0.5",
        "prune.neurons=0.5",
        "trainer.eval_before=true",
    )
    return base, pruned


def test_a_pruned_run_records_what_it_removed_and_saves_a_smaller_model(runs):
    base, pruned = runs
    record = metrics(pruned)["pruning"]
    assert record["heads"] == {"share": 0.5, "before": 12, "after": 6}
    assert record["neurons"] == {"share": 0.5, "before": 192, "after": 96}
    assert record["parameters"]["after"] < record["parameters"]["before"]
    saved = json.loads((pruned / "model" / "config.json").read_text())["mlft_pruned"]
    assert sum(saved["heads"]) == 6 and sum(saved["neurons"]) == 96
    assert saved == record["layers"]
    size = (pruned / "model" / "model.safetensors").stat().st_size
    assert size < 0.9 * (base / "model" / "model.safetensors").stat().st_size


def test_eval_predict_and_export_of_a_pruned_run(runs, tmp_path, capsys):
    _, pruned = runs
    main(["eval", f"run={pruned}", f"out={tmp_path / 'eval'}"])
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["test"]["zh"]["f1"] == pytest.approx(
        metrics(pruned)["test"]["zh"]["f1"]
    )
    (tmp_path / "in.txt").write_text("张三在北京工作。\n")
    main(["predict", f"run={pruned}", f"input={tmp_path / 'in.txt'}", f"output={tmp_path / 'out.jsonl'}"])
    assert json.loads((tmp_path / "out.jsonl").read_text().splitlines()[0])["text"] == "张三在北京工作。"
    # The ONNX export (also with the graph fused) computes the pruned model's logits.
    import onnxruntime

    saved = load_run(pruned)
    encoded = saved.tokenizer(["张三在北京工作。", "李四去上海"], padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = saved.model.eval()(**encoded).logits.numpy()
    for fuse in ("false", "true"):
        out = tmp_path / f"onnx-{fuse}"
        main(["export", f"run={pruned}", "format=onnx", f"fuse={fuse}", f"out={out}"])
        session = onnxruntime.InferenceSession(str(out / "model.onnx"))
        feed = {i.name: encoded[i.name].numpy() for i in session.get_inputs()}
        np.testing.assert_allclose(session.run(None, feed)[0], expected, atol=1e-4)


def test_a_run_starts_from_a_pruned_model_with_its_weights(runs):
    _, pruned = runs
    task_model = load_run(pruned)
    # The training path's loader (model.name_or_path=<pruned run>/model).
    loaded = load_model(type(task_model.model), str(pruned / "model"), {}, task_model.tokenizer)
    expected = task_model.model.state_dict()
    assert all(torch.equal(value, expected[name]) for name, value in loaded.state_dict().items())


def test_layers_dropped_from_a_pruned_model_keep_the_record_right(runs, tmp_path):
    _, pruned = runs
    student = train(
        tmp_path / "student", pruned / "model", "task=ner", *ZH_NER, "trainer.epochs=1", "model.num_layers=2"
    )
    parent = json.loads((pruned / "model" / "config.json").read_text())["mlft_pruned"]
    record = json.loads((student / "model" / "config.json").read_text())["mlft_pruned"]
    assert record == {
        "heads": [parent["heads"][0], parent["heads"][2]],
        "neurons": [parent["neurons"][0], parent["neurons"][2]],
    }
    assert metrics(student)["test"]["zh"]["n"] > 0


def test_pruning_config_errors(runs, four_heads, tmp_path, capsys):
    base, _ = runs
    common = ["train", "task=ner", *ZH_NER, "trainer.progress=false"]
    err = cli_error(capsys, *common, f"model={base / 'model'}", "prune.heads=1.0", f"hydra.run.dir={tmp_path / 'a'}")
    assert "prune.heads" in err and "[0, 1)" in err
    err = cli_error(
        capsys, *common, f"model={base / 'model'}", "prune.heads=0.5", "peft=lora", f"hydra.run.dir={tmp_path / 'b'}"
    )
    assert "prune" in err and "adapter" in err
    # An encoder without a head trained for the task: its scores would be noise.
    err = cli_error(capsys, *common, f"model={four_heads}", "prune.heads=0.5", f"hydra.run.dir={tmp_path / 'c'}")
    assert "fine-tuned for this task" in err
    assert not (tmp_path / "c").exists() or not any((tmp_path / "c").iterdir())


def test_pruning_composes_with_distillation_from_the_unpruned_run(runs, tmp_path):
    base, _ = runs
    student = train(
        tmp_path / "student",
        base / "model",
        "task=ner",
        *ZH_NER,
        "trainer.epochs=1",
        "prune.heads=0.5",
        f"distill.teacher={base}",
    )
    assert metrics(student)["pruning"]["heads"]["after"] == 6
    assert sum(json.loads((student / "model" / "config.json").read_text())["mlft_pruned"]["heads"]) == 6
