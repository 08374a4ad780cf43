"""Distillation (distill.teacher) and shallower students (model.num_layers): the loss, the layers, the CLI."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModelForTokenClassification

from mlft.cli import main
from mlft.engine.distill import Distiller, soft_loss
from mlft.errors import ConfigError
from mlft.models.depth import keep_layers, spread
from mlft.tasks.protocol import BATCH, LENGTH, Output
from mlft.tasks.token_classification import TokenClassification

from conftest import FIXTURES
from helpers import ZH_NER, metrics, train


def _kl(p_logits: torch.Tensor, q_logits: torch.Tensor) -> float:
    """KL(softmax(p) || softmax(q)) of one position, written out."""
    p, q = p_logits.softmax(-1), q_logits.softmax(-1)
    return float((p * (p.log() - q.log())).sum())


def test_the_soft_loss_is_the_scaled_kl_over_labelled_tokens():
    torch.manual_seed(0)
    student, teacher = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    labels = torch.tensor([[0, -100, 1], [2, 3, -100]])
    t = 2.0
    labelled = [(0, 0), (0, 2), (1, 0), (1, 1)]
    expected = t * t * sum(_kl(teacher[i, j] / t, student[i, j] / t) for i, j in labelled) / len(labelled)
    assert soft_loss(student, teacher, labels, t, multi_label=False).item() == pytest.approx(expected, rel=1e-5)
    # Unlabelled positions do not count; a student that copies the teacher has nothing to learn.
    moved = student.clone()
    moved[0, 1] += 5.0
    assert soft_loss(moved, teacher, labels, t, False).item() == pytest.approx(expected, rel=1e-5)
    assert soft_loss(teacher, teacher, labels, t, False).item() == pytest.approx(0.0, abs=1e-6)


def test_the_soft_loss_of_texts_and_of_multi_label_texts():
    torch.manual_seed(1)
    student, teacher, t = torch.randn(3, 4), torch.randn(3, 4), 3.0
    expected = t * t * sum(_kl(teacher[i] / t, student[i] / t) for i in range(3)) / 3
    assert soft_loss(student, teacher, torch.tensor([0, 1, 2]), t, False).item() == pytest.approx(expected, rel=1e-5)

    # One binary distribution per label: KL(Bernoulli(p) || Bernoulli(q)) summed over labels, averaged over texts.
    p, q = (teacher / t).sigmoid(), (student / t).sigmoid()
    binary = p * (p.log() - q.log()) + (1 - p) * ((1 - p).log() - (1 - q).log())
    expected = t * t * binary.sum(-1).mean().item()
    multi = soft_loss(student, teacher, torch.zeros(3, 4), t, multi_label=True)
    assert multi.item() == pytest.approx(expected, rel=1e-4)
    assert soft_loss(teacher, teacher, torch.zeros(3, 4), t, True).item() == pytest.approx(0.0, abs=1e-5)


def test_a_batch_without_labelled_tokens_gives_zero_not_nan():
    student = torch.randn(1, 2, 3, requires_grad=True)
    loss = soft_loss(student, torch.randn(1, 2, 3), torch.full((1, 2), -100), 2.0, False)
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(student.grad, torch.zeros_like(student))


def test_the_distiller_mixes_gold_and_soft_loss_with_a_frozen_teacher(tiny_models):
    teacher = AutoModelForTokenClassification.from_pretrained(tiny_models["unigram"], num_labels=3)
    teacher.train()
    outputs = TokenClassification.model_outputs
    distiller = Distiller(teacher, 0.25, 2.0, outputs, ("input_ids", "attention_mask"))
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    input_ids = torch.randint(5, teacher.config.vocab_size, (2, 6))
    labels = torch.randint(0, 3, (2, 6))
    batch = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "labels": labels}
    targets = distiller.targets(batch)
    logits = teacher(input_ids=input_ids, attention_mask=batch["attention_mask"]).logits
    assert targets.keys() == {"logits"} and torch.equal(targets["logits"], logits)
    student, gold = torch.randn(2, 6, 3), torch.tensor(0.8)
    mixed = distiller.loss({"logits": student}, gold, batch, targets)
    expected = 0.75 * 0.8 + 0.25 * soft_loss(student, logits, labels, 2.0, False).item()
    assert mixed.item() == pytest.approx(expected)


def test_the_distiller_averages_the_soft_loss_over_every_declared_output():
    outputs = (Output("start_logits", (BATCH, LENGTH)), Output("end_logits", (BATCH, LENGTH)))

    class TwoHeads(torch.nn.Module):
        def forward(self, input_ids, attention_mask):
            return {"start_logits": input_ids.float(), "end_logits": -input_ids.float()}

    distiller = Distiller(TwoHeads(), 0.5, 1.0, outputs, ("input_ids", "attention_mask"))
    batch = {"input_ids": torch.tensor([[1, 2, 3]]), "attention_mask": torch.ones(1, 3), "start_positions": 0}
    targets = distiller.targets(batch)
    student = {"start_logits": torch.zeros(1, 3), "end_logits": torch.zeros(1, 3)}
    soft = [soft_loss(student[k], targets[k], None, 1.0, False).item() for k in ("start_logits", "end_logits")]
    assert distiller.loss(student, torch.tensor(0.0), batch, targets).item() == pytest.approx(0.5 * sum(soft) / 2)


def test_spread_keeps_first_and_last_evenly():
    assert spread(12, 6) == [0, 2, 4, 7, 9, 11]  # DistilBERT's choice
    assert spread(12, 12) == list(range(12))
    assert spread(4, 2) == [0, 3]
    assert spread(4, 1) == [0]


def test_keeping_layers_gives_a_normal_shallower_model(tiny_models, tmp_path):
    config = AutoConfig.from_pretrained(tiny_models["unigram"], num_hidden_layers=4)
    torch.manual_seed(0)
    model = AutoModelForTokenClassification.from_config(config).eval()
    layer3 = {k: v.clone() for k, v in model.bert.encoder.layer[3].state_dict().items()}
    assert keep_layers(model, 2) == [0, 3]
    assert len(model.bert.encoder.layer) == 2 and model.config.num_hidden_layers == 2
    for name, tensor in model.bert.encoder.layer[1].state_dict().items():
        assert torch.equal(tensor, layer3[name])
    model.save_pretrained(tmp_path)
    reloaded = AutoModelForTokenClassification.from_pretrained(tmp_path).eval()
    ids = torch.randint(5, config.vocab_size, (1, 5))
    with torch.no_grad():
        assert torch.allclose(reloaded(input_ids=ids).logits, model(input_ids=ids).logits)
    with pytest.raises(ConfigError, match="model.num_layers: the model has 2 layers, got 3"):
        keep_layers(model, 3)


def test_a_shallow_student_distils_from_a_ner_run(tmp_path, tiny_models, ner_run):
    common = ["task=ner", "lang=zh", "trainer.epochs=2", "model.num_layers=1", *ZH_NER]
    alone = train(tmp_path / "alone", tiny_models["unigram"], *common)
    taught = train(tmp_path / "taught", tiny_models["unigram"], *common, f"distill.teacher={ner_run}")
    config = json.loads((taught / "model" / "config.json").read_text())
    assert config["num_hidden_layers"] == 1
    assert f"teacher: {ner_run}" in (taught / ".hydra" / "config.yaml").read_text()
    heads = [load_file(run / "model" / "model.safetensors")["classifier.weight"] for run in (alone, taught)]
    assert not torch.allclose(heads[0], heads[1])  # the teacher changed what was learned
    assert [h["step"] for h in metrics(alone)["history"]] == [h["step"] for h in metrics(taught)["history"]]
    # The student is a normal model: it predicts from its run directory.
    texts = tmp_path / "texts.txt"
    texts.write_text("张三在北京。\n")
    main(["predict", f"run={taught}", f"input={texts}", f"output={tmp_path / 'out.jsonl'}"])
    assert json.loads((tmp_path / "out.jsonl").read_text())["text"] == "张三在北京。"
    # ... exports, and its model card says what it is.
    main(["export", f"run={taught}", f"out={tmp_path / 'export'}"])
    card = (tmp_path / "export" / "README.md").read_text()
    assert f"**Fine-tuning:** full; 1 of the base model's layers, evenly spaced; distilled from `{ner_run}`" in card


def test_a_classification_student_from_the_teachers_weights_with_the_adversarial_pass(tmp_path, sentiment_run, caplog):
    sentiment = FIXTURES / "sentiment"
    run = train(
        tmp_path / "student",
        sentiment_run / "model",  # the README's recipe: the student starts from the teacher's own layers
        "model.num_layers=1",
        "task=sentiment",
        "lang=zh",
        "trainer.epochs=1",
        f"data.train={sentiment / 'zh_train.jsonl'}",
        f"data.dev={sentiment / 'zh_dev.jsonl'}",
        f"data.test={sentiment / 'zh_test.jsonl'}",
        f"distill.teacher={sentiment_run}",
        "distill.alpha=1.0",
        "trainer.adversarial=fgm",
    )
    assert json.loads((run / "model" / "config.json").read_text())["num_hidden_layers"] == 1
    teacher = load_file(sentiment_run / "model" / "model.safetensors")
    student = load_file(run / "model" / "model.safetensors")
    assert teacher["classifier.weight"].shape == student["classifier.weight"].shape
    assert "accuracy" in metrics(run)["test"]["zh"]
    assert "layers: kept 1 (0 of the pretrained stack)" in caplog.text
    assert f"distillation: teacher {sentiment_run} (alpha 1, temperature 2)" in caplog.text


def test_a_teacher_of_another_task_labels_or_tokenizer_is_refused(
    tmp_path, tiny_models, ner_run, sentiment_run, capsys
):
    ner = ["task=ner", "lang=zh", *ZH_NER]
    unigram, wordpiece = tiny_models["unigram"], tiny_models["wordpiece"]
    no_org = "task.label_map={ORG: null, PER: PER, LOC: LOC}"
    cases = [
        ("a", unigram, [f"distill.teacher={sentiment_run}"], f"{sentiment_run} is a sequence_classification run"),
        (
            "b",
            wordpiece,
            [f"distill.teacher={ner_run}"],
            "the teacher's tokenizer (386 tokens) is not the student's (400)",
        ),
        (
            "c",
            unigram,
            [no_org, f"distill.teacher={ner_run}"],
            "the teacher's labels (O, B-LOC, I-LOC, B-ORG, I-ORG, B-PER, I-PER) differ from the student's",
        ),
    ]
    for name, model, overrides, message in cases:
        with pytest.raises(SystemExit) as exit_info:
            train(tmp_path / name, model, *ner, *overrides)
        assert exit_info.value.code == 2
        assert f"distill.teacher: {message}" in capsys.readouterr().err
        assert not (tmp_path / name).exists()  # nothing trained: the directory is left free


def test_distillation_settings_are_validated(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "train",
                f"hydra.run.dir={tmp_path / 'r'}",
                *ZH_NER,
                f"distill.teacher={tmp_path}",
                "distill.alpha=1.5",
                "distill.temperature=0",
                "model.num_layers=0",
            ]
        )
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "distill.alpha: must be in [0, 1], got 1.5" in err
    assert "distill.temperature: must be > 0, got 0" in err
    assert f"distill.teacher: {tmp_path} is not a run directory (no config.yaml)" in err
    assert "model.num_layers: must be >= 1 (or null), got 0" in err
