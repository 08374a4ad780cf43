"""Engine options: accumulation, bf16 on CPU, cosine schedule, step evaluation, early stopping, decay groups."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForTokenClassification

from mlft.config import OptimizerConfig
from mlft.engine.optim import build_optimizer, build_scheduler, param_groups, warmup_steps
from mlft.errors import ConfigError
from mlft.models.freeze import encoder_layers, freeze

from helpers import ZH_NER, metrics, train


def test_no_weight_decay_on_biases_and_layernorm(tiny_models):
    model = AutoModelForTokenClassification.from_pretrained(tiny_models["wordpiece"], num_labels=3)
    decay, no_decay = param_groups(model, 0.01, 1e-4)
    names = {id(p): n for n, p in model.named_parameters()}
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    assert all(not names[id(p)].endswith("bias") and "LayerNorm" not in names[id(p)] for p in decay["params"])
    assert any("LayerNorm" in names[id(p)] for p in no_decay["params"])


def test_head_learning_rate_and_frozen_layers(tiny_models):
    model = AutoModelForTokenClassification.from_pretrained(tiny_models["wordpiece"], num_labels=3)
    freeze(model, embeddings=False, layers=1)
    names = {id(p): n for n, p in model.named_parameters()}
    groups = param_groups(model, 0.01, 1e-4, head_lr=1e-3)
    trained = {names[id(p)]: g["lr"] for g in groups for p in g["params"]}
    assert trained["classifier.weight"] == trained["classifier.bias"] == 1e-3
    assert trained["bert.encoder.layer.1.output.dense.weight"] == 1e-4
    assert not any(n.startswith(("bert.embeddings.", "bert.encoder.layer.0.")) for n in trained)
    assert len(encoder_layers(model, "model.freeze_layers")) == 2


def test_layer_decay_gives_each_layer_its_learning_rate(tiny_models):
    model = AutoModelForTokenClassification.from_pretrained(tiny_models["wordpiece"], num_labels=3)
    names = {id(p): n for n, p in model.named_parameters()}
    groups = param_groups(model, 0.01, 1e-3, layer_decay=0.5)
    lr = {names[id(p)]: g["lr"] for g in groups for p in g["params"]}
    assert len(lr) == len(names)  # every parameter in exactly one group
    # Two layers: the head at lr, layer 1 at lr/2, layer 0 at lr/4, the embeddings (and their LayerNorm) at lr/8.
    assert lr["classifier.weight"] == lr["classifier.bias"] == pytest.approx(1e-3)
    assert lr["bert.encoder.layer.1.attention.self.query.weight"] == pytest.approx(5e-4)
    assert lr["bert.encoder.layer.1.output.LayerNorm.bias"] == pytest.approx(5e-4)
    assert lr["bert.encoder.layer.0.output.dense.weight"] == pytest.approx(2.5e-4)
    assert (
        lr["bert.embeddings.word_embeddings.weight"]
        == lr["bert.embeddings.LayerNorm.weight"]
        == pytest.approx(1.25e-4)
    )
    # head_lr still sets the head's rate; decay and no-decay groups stay apart.
    groups = param_groups(model, 0.01, 1e-3, head_lr=1e-2, layer_decay=0.5)
    lr = {names[id(p)]: (g["lr"], g["weight_decay"]) for g in groups for p in g["params"]}
    assert lr["classifier.weight"] == (1e-2, 0.01) and lr["classifier.bias"] == (1e-2, 0.0)
    assert lr["bert.encoder.layer.0.output.dense.bias"] == (pytest.approx(2.5e-4), 0.0)


def test_the_optimizer_takes_layer_decay_from_the_config(tiny_models):
    model = AutoModelForTokenClassification.from_pretrained(tiny_models["wordpiece"], num_labels=3)
    optimizer = build_optimizer(model, OptimizerConfig(name="adamw", lr=1e-3, layer_decay=0.5))
    assert sorted({g["lr"] for g in optimizer.param_groups}) == pytest.approx([1.25e-4, 2.5e-4, 5e-4, 1e-3])


def test_eval_before_scores_the_untrained_model_of_any_task(tiny_models, tmp_path):
    run = train(tmp_path / "run", tiny_models["unigram"], "task=ner", "lang=zh", "trainer.eval_before=true", *ZH_NER)
    m = metrics(run)
    assert m["before"]["dev"]["zh"]["n"] == m["dev"]["zh"]["n"] and "f1" in m["before"]["test"]["zh"]
    assert "before training" in (run / "report.md").read_text()


def test_layer_decay_trains_through_the_cli(tiny_models, tmp_path):
    run = train(tmp_path / "run", tiny_models["unigram"], "task=ner", "lang=zh", "optimizer.layer_decay=0.8", *ZH_NER)
    assert metrics(run)["dev"]["zh"]["n"] > 0


def test_freezing_more_layers_than_the_model_has_is_a_config_error(tiny_models):
    model = AutoModelForTokenClassification.from_pretrained(tiny_models["wordpiece"], num_labels=3)
    with pytest.raises(ConfigError, match="model.freeze_layers: the model has 2 layers, got 5"):
        freeze(model, embeddings=True, layers=5)


def test_warmup_then_cosine_decay():
    cfg = OptimizerConfig(name="adamw", lr=1.0, schedule="cosine", warmup_fraction=0.1)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = build_scheduler(optimizer, cfg, total_steps=100)
    lrs = []
    for _ in range(100):
        lrs.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    assert warmup_steps(cfg, 100) == 10
    assert lrs[0] == 0.0 and abs(lrs[10] - 1.0) < 1e-9 and lrs[99] < 0.01
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))


def test_accumulation_bf16_step_evaluation_and_early_stopping(tmp_path, tiny_models):
    run = train(
        tmp_path / "run",
        tiny_models["unigram"],
        "trainer.epochs=20",
        "trainer.grad_accum=2",
        "trainer.precision=bf16",
        "optimizer=adamw_cosine",
        "trainer.eval_strategy=steps",
        "trainer.eval_steps=2",
        "trainer.early_stopping_patience=2",
        "optimizer.lr=1e-9",
        *ZH_NER,
    )
    history = metrics(run)["history"]
    # 48 sentences / batch 8 / accumulation 2 = 3 optimizer steps per epoch; with a learning rate that changes
    # nothing, the first evaluation is the best and training stops two evaluations later.
    assert [h["step"] for h in history] == [2, 4, 6]
    assert metrics(run)["selection"]["best_step"] == 2
    stopped = metrics(run)["techniques"]["early_stopping"]
    assert stopped["patience"] == 2 and stopped["stopped"]["step"] == 6 and "step 2's" in stopped["stopped"]["why"]
    assert "early stopping at step 6" in (run / "train.log").read_text()


def test_without_progress_bars_the_log_says_how_far_training_and_evaluation_are(
    tiny_models, tmp_path, caplog, monkeypatch
):
    """Output to a file (CI, nohup): a line per trainer.log_seconds with step, loss, lr, speed and time left."""
    import re

    from mlft.engine import predict

    monkeypatch.setattr(predict, "EVAL_LOG_SECONDS", 1e-9)
    caplog.set_level("INFO", logger="mlft")
    train(tmp_path / "lines", tiny_models["unigram"], "trainer.epochs=2", "trainer.log_seconds=1e-9", *ZH_NER)
    steps = [r.getMessage() for r in caplog.records if r.getMessage().startswith("step ")]
    line = re.compile(
        r"step (\d+)/(\d+) \(\d+%\) · loss \d+\.\d{4} · lr \d\.\d\de[-+]\d\d · [\d.]+ samples/s · \d+m\d\ds left"
    )
    assert steps and all(line.fullmatch(s) for s in steps), steps[:3]
    numbers = [int(line.fullmatch(s).group(1)) for s in steps]  # type: ignore[union-attr]
    assert numbers == list(range(1, numbers[-1] + 1)) and numbers[-1] == int(line.fullmatch(steps[-1]).group(2))  # type: ignore[union-attr]
    assert any(re.fullmatch(r"eval (dev|test)/zh: \d+ of \d+ features", r.getMessage()) for r in caplog.records)

    caplog.clear()
    train(tmp_path / "quiet", tiny_models["unigram"], "trainer.epochs=1", "trainer.log_seconds=0", *ZH_NER)
    assert not [r for r in caplog.records if r.getMessage().startswith("step ")]
