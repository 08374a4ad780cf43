"""PGD, R-Drop, label smoothing, class weights and dropout overrides: each checked against the formula it
implements, and each through the CLI for what it changes in a run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification

from mlft.engine.adversarial import EmbeddingPerturbation, attach_pgd
from mlft.engine.class_loss import attach_class_loss, balanced_weights
from mlft.engine.hooks import Hooks
from mlft.engine.rdrop import attach_rdrop, symmetric_kl
from mlft.tasks.token_classification import TokenClassification

from conftest import FIXTURES
from helpers import ZH_NER, cli_error, metrics, train

SENT = FIXTURES / "sentiment"
SENTIMENT = [
    "task=sentiment",
    "lang=zh",
    "trainer.epochs=2",
    f"data.train={SENT / 'zh_train.jsonl'}",
    f"data.dev={SENT / 'zh_dev.jsonl'}",
]


def ner_model_and_batch(tiny_models, dropout: float = 0.0):
    model = AutoModelForTokenClassification.from_pretrained(
        tiny_models["unigram"], num_labels=3, hidden_dropout_prob=dropout, attention_probs_dropout_prob=0.0
    )
    torch.manual_seed(0)
    input_ids = torch.randint(5, model.config.vocab_size, (3, 7))
    mask = torch.ones_like(input_ids)
    mask[2, 4:] = 0
    labels = torch.randint(0, 3, (3, 7)).masked_fill(mask == 0, -100)
    return model.train(), {"input_ids": input_ids, "attention_mask": mask, "labels": labels}


# PGD


def reference_pgd(model, batch, epsilon, alpha, steps):
    """PGD written out with inputs_embeds: each step along the gradient at the moved point, projected."""
    embeds = model.get_input_embeddings()(batch["input_ids"]).detach()
    rest = {k: v for k, v in batch.items() if k != "input_ids"}
    delta = torch.zeros_like(embeds)
    for _ in range(steps):
        moved = (embeds + delta).requires_grad_(True)
        (grad,) = torch.autograd.grad(model(inputs_embeds=moved, **rest).loss, moved)
        delta = delta + alpha * grad / grad.flatten(1).norm(dim=1).view(-1, 1, 1)
        norm = delta.flatten(1).norm(dim=1).view(-1, 1, 1)
        delta = delta * (epsilon / norm).clamp(max=1.0)
    return delta


def test_pgd_steps_follow_the_gradient_at_the_moved_point_and_stay_in_the_ball(tiny_models):
    model, batch = ner_model_and_batch(tiny_models)
    expected = reference_pgd(model, batch, epsilon=0.5, alpha=0.3, steps=3)
    perturbation = EmbeddingPerturbation(model, epsilon=0.5)
    model(**batch).loss.backward()
    for _ in range(3):
        perturbation.step(0.3)
        model.zero_grad()
        model(**batch).loss.backward()
    assert torch.allclose(perturbation.delta, expected, atol=1e-5)
    norms = perturbation.delta.flatten(1).norm(dim=1)
    assert torch.all(norms <= 0.5 + 1e-5) and torch.allclose(norms, torch.full((3,), 0.5))  # 0.9 > 0.5: projected


def test_pgd_keeps_the_clean_gradient_plus_the_last_moved_pass_only(tiny_models):
    model, batch = ner_model_and_batch(tiny_models)
    delta = reference_pgd(model, batch, epsilon=1.0, alpha=0.4, steps=2)
    weight = model.classifier.weight
    embeds = model.get_input_embeddings()(batch["input_ids"]).detach()
    rest = {k: v for k, v in batch.items() if k != "input_ids"}
    last = torch.autograd.grad(model(inputs_embeds=embeds + delta, **rest).loss, weight)[0]
    expected = torch.autograd.grad(model(**batch).loss, weight)[0] + last

    hooks = Hooks()
    attach_pgd(hooks, model, epsilon=1.0, alpha=0.4, steps=2, backward=lambda loss: loss.backward())
    model.zero_grad()
    model(**batch).loss.backward()
    passes = []
    hooks.extra_passes[0](lambda: passes.append(1) or model(**batch).loss)
    assert len(passes) == 2
    assert torch.allclose(weight.grad, expected, atol=1e-5)


# R-Drop


def test_rdrop_adds_the_symmetric_kl_of_two_dropout_passes(tiny_models):
    model, batch = ner_model_and_batch(tiny_models, dropout=0.3)
    hooks = Hooks()
    attach_rdrop(hooks, 2.0, TokenClassification.model_outputs)
    for start in hooks.batch_start:
        start(batch)
    assert batch["input_ids"].shape[0] == 6  # the batch stacked on itself
    torch.manual_seed(1)
    outputs = model(**batch)
    loss = hooks.training_loss(batch, outputs)
    first, second = outputs.logits.chunk(2)
    assert not torch.allclose(first, second)  # two dropout masks
    p, q = first.log_softmax(-1), second.log_softmax(-1)
    kl = 0.5 * (F.kl_div(q, p, log_target=True, reduction="none") + F.kl_div(p, q, log_target=True, reduction="none"))
    scored = batch["labels"][:3] != -100
    expected = outputs.loss + 2.0 * (kl.sum(-1) * scored).sum() / scored.sum()
    assert torch.allclose(loss, expected, atol=1e-6) and loss > outputs.loss

    model.eval()  # without dropout both halves agree: no KL
    assert symmetric_kl(model(**batch).logits, batch["labels"]).item() == pytest.approx(0.0, abs=1e-6)


# Label smoothing and class weights


def test_label_smoothing_and_class_weights_are_torch_cross_entropy_of_the_logits(tiny_models):
    model = AutoModelForSequenceClassification.from_pretrained(tiny_models["wordpiece"], num_labels=2)
    torch.manual_seed(0)
    batch = {"input_ids": torch.randint(5, 100, (4, 6)), "labels": torch.tensor([0, 1, 1, 1])}
    batch["attention_mask"] = torch.ones_like(batch["input_ids"])
    outputs = model.eval()(**batch)
    hooks = Hooks()
    attach_class_loss(hooks, smoothing=0.2, weights=[3.0, 1.0], output="logits")
    expected = F.cross_entropy(outputs.logits, batch["labels"], weight=torch.tensor([3.0, 1.0]), label_smoothing=0.2)
    assert torch.allclose(hooks.training_loss(batch, outputs), expected)
    assert not torch.allclose(expected, outputs.loss)


def test_balanced_weights_are_scikit_learns():
    from sklearn.utils.class_weight import compute_class_weight

    train = ["neg"] * 6 + ["pos"] * 2 + ["mid"]
    expected = compute_class_weight("balanced", classes=np.array(["mid", "neg", "pos"]), y=train)
    assert balanced_weights(["mid", "neg", "pos"], train) == pytest.approx(list(expected))
    assert balanced_weights(["a", "b"], ["a", "a"]) == [0.5, 1.0]  # a missing class counts as seen once


def test_runs_record_their_loss_settings_and_rdrop_counts_each_sample_once(tmp_path, tiny_models):
    run = train(
        tmp_path / "weighted",
        tiny_models["wordpiece"],
        *SENTIMENT,
        "task.class_weights=balanced",
        "task.label_smoothing=0.1",
        "trainer.rdrop=1.0",
        "trainer.adversarial=pgd",
        "trainer.adv_steps=2",
    )
    m = metrics(run)
    train_labels = [json.loads(line)["label"] for line in (SENT / "zh_train.jsonl").read_text().splitlines()]
    expected = dict(zip(["neg", "pos"], balanced_weights(["neg", "pos"], train_labels)))
    assert m["loss"] == {"label_smoothing": 0.1, "class_weights": pytest.approx(expected)}
    assert m["throughput"]["train_samples"] == 2 * len(train_labels)  # 2 epochs; the doubled batch counted once
    assert m["techniques"] == {
        "adversarial": {"method": "pgd", "epsilon": 1.0, "alpha": 0.3, "steps": 2},
        "rdrop": {"alpha": 1.0},
    }


@pytest.mark.slow  # two NER runs of 6 epochs; the loss itself is checked above against torch's
def test_label_smoothing_makes_a_ner_model_less_sure(tmp_path, tiny_models):
    """Same data, seed and steps: smoothed targets keep the predicted probabilities further from 1."""
    common = ["task=ner", "lang=zh", "trainer.epochs=6", *ZH_NER]
    sure = train(tmp_path / "plain", tiny_models["unigram"], *common)
    smooth = train(tmp_path / "smooth", tiny_models["unigram"], *common, "task.label_smoothing=0.3")

    def mean_top_score(run):
        rows = [json.loads(x) for x in (run / "predictions" / "test-zh.jsonl").read_text().splitlines()]
        scores = [s for r in rows for s in r["prediction"]["scores"]]
        return sum(scores) / len(scores)

    assert mean_top_score(smooth) < mean_top_score(sure) - 0.02


def test_dropout_overrides_reach_the_model(tmp_path, tiny_models):
    from mlft.config import ModelConfig
    from mlft.models.load import dropout_settings, read_model_config

    bert = read_model_config(str(tiny_models["wordpiece"]), None, False)
    assert dropout_settings(bert, 0.3, 0.05) == {"hidden_dropout_prob": 0.3, "attention_probs_dropout_prob": 0.05}
    assert dropout_settings(bert, None, None) == {}
    run = train(
        tmp_path / "run", tiny_models["wordpiece"], *SENTIMENT, "model.dropout=0.3", "model.attention_dropout=0"
    )
    saved = json.loads((run / "model" / "config.json").read_text())
    assert saved["hidden_dropout_prob"] == 0.3 and saved["attention_probs_dropout_prob"] == 0.0
    assert ModelConfig.__dataclass_fields__["dropout"].default is None  # off by default: the model's own


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["task.class_weights=[1.0,2.0,3.0]"], "task.class_weights: 3 numbers for 2 labels"),
        (["task.label_smoothing=1.0"], "task.label_smoothing: must be in [0, 1), got 1.0"),
        (["model.dropout=-0.1"], "model.dropout: must be in [0, 1), got -0.1"),
        (["trainer.rdrop=-1"], "trainer.rdrop: must be >= 0"),
        (["trainer.adversarial=pgd", "trainer.adv_steps=0"], "trainer.adv_steps: must be >= 1 with adversarial=pgd"),
        (["task=multilabel", "trainer.rdrop=1"], "trainer.rdrop: only for NER and single-label classification"),
        (["task=ner", "task.class_weights=balanced"], "task.class_weights: only for single-label classification"),
    ],
)
def test_bad_regulariser_settings_are_config_errors(tmp_path, tiny_models, overrides, message, capsys):
    err = cli_error(
        capsys,
        "train",
        f"model={tiny_models['wordpiece']}",
        f"hydra.run.dir={tmp_path / 'run'}",
        *SENTIMENT,
        *overrides,
    )
    assert message in err
