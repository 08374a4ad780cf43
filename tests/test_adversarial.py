"""Adversarial training (trainer.adversarial=fgm): the perturbation, its gradient and a run through the CLI."""

from __future__ import annotations

import pytest
import torch
from hydra import compose, initialize_config_dir
from safetensors.torch import load_file
from transformers import AutoModelForTokenClassification

from mlft.commands.run_config import run_config as validate
from mlft.config import config_dir
from mlft.engine.adversarial import EmbeddingPerturbation
from mlft.errors import ConfigError

from conftest import FIXTURES
from helpers import ZH_NER, metrics, train


def _model_and_batch(tiny_models) -> tuple[torch.nn.Module, dict[str, torch.Tensor]]:
    model = AutoModelForTokenClassification.from_pretrained(
        tiny_models["unigram"], num_labels=3, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0
    )
    torch.manual_seed(0)
    input_ids = torch.randint(5, model.config.vocab_size, (3, 7))
    mask = torch.ones_like(input_ids)
    mask[2, 4:] = 0  # a padded example
    labels = torch.randint(0, 3, (3, 7)).masked_fill(mask == 0, -100)
    return model.train(), {"input_ids": input_ids, "attention_mask": mask, "labels": labels}


def _reference_adversarial_loss(model, batch, epsilon: float) -> tuple[torch.Tensor, torch.Tensor]:
    """FGM written out with inputs_embeds: the word embeddings, their gradient, the moved embeddings' loss."""
    embeds = model.get_input_embeddings()(batch["input_ids"]).detach().requires_grad_(True)
    rest = {k: v for k, v in batch.items() if k != "input_ids"}
    (grad,) = torch.autograd.grad(model(inputs_embeds=embeds, **rest).loss, embeds)
    delta = epsilon * grad / grad.flatten(1).norm(dim=1).view(-1, 1, 1)
    return model(inputs_embeds=embeds.detach() + delta, **rest).loss, delta


@pytest.mark.parametrize("frozen", [False, True])
def test_the_adversarial_pass_moves_each_example_by_epsilon_along_its_gradient(tiny_models, frozen):
    model, batch = _model_and_batch(tiny_models)
    model.get_input_embeddings().weight.requires_grad_(not frozen)
    expected_loss, delta = _reference_adversarial_loss(model, batch, epsilon=0.5)
    assert torch.allclose(delta.flatten(1).norm(dim=1), torch.full((3,), 0.5))

    perturbation = EmbeddingPerturbation(model, epsilon=0.5)
    clean = model(**batch).loss
    clean.backward()
    with perturbation.perturbed():
        adversarial = model(**batch).loss
    assert torch.allclose(adversarial, expected_loss, atol=1e-6)
    assert adversarial > clean  # a step up the gradient raises the loss
    model.zero_grad()
    assert torch.allclose(model(**batch).loss, clean)  # outside the context the embeddings are untouched


def test_a_step_sums_the_gradients_of_both_passes(tiny_models):
    model, batch = _model_and_batch(tiny_models)
    expected_adv, _ = _reference_adversarial_loss(model, batch, epsilon=1.0)
    model.zero_grad()
    weight = model.classifier.weight
    expected = torch.autograd.grad(model(**batch).loss, weight)[0] + torch.autograd.grad(expected_adv, weight)[0]

    perturbation = EmbeddingPerturbation(model, epsilon=1.0)
    model.zero_grad()
    model(**batch).loss.backward()
    with perturbation.perturbed():
        model(**batch).loss.backward()
    assert torch.allclose(weight.grad, expected, atol=1e-6)


def test_the_hook_reaches_the_embeddings_inside_a_peft_wrapper(tiny_models):
    from peft import LoraConfig, get_peft_model

    model, batch = _model_and_batch(tiny_models)
    wrapped = get_peft_model(model, LoraConfig(r=2, target_modules=["query", "value"]))
    assert not wrapped.get_input_embeddings().weight.requires_grad  # LoRA freezes the embeddings
    perturbation = EmbeddingPerturbation(wrapped, epsilon=0.5)
    clean = wrapped(**batch).loss
    clean.backward()
    with perturbation.perturbed():
        adversarial = wrapped(**batch).loss
    assert adversarial > clean


def test_evaluation_and_removal_leave_the_model_as_it_was(tiny_models):
    model, batch = _model_and_batch(tiny_models)
    with torch.inference_mode():
        before = model.eval()(**batch).logits
    perturbation = EmbeddingPerturbation(model, epsilon=1.0)
    with torch.inference_mode():
        assert torch.equal(model(**batch).logits, before)
    with pytest.raises(RuntimeError, match="clean forward and backward pass first"), perturbation.perturbed():
        pass
    perturbation.remove()
    assert not model.get_input_embeddings()._forward_hooks


def test_fgm_trains_through_the_cli_with_frozen_and_compact_embeddings(tmp_path, tiny_models):
    common = ["task=ner", "lang=zh", "trainer.epochs=2", *ZH_NER]
    plain = train(tmp_path / "plain", tiny_models["unigram"], *common)
    fgm = train(tmp_path / "fgm", tiny_models["unigram"], *common, "trainer.adversarial=fgm")
    frozen = train(
        tmp_path / "frozen", tiny_models["unigram"], *common, "trainer.adversarial=fgm", "model.freeze_embeddings=true"
    )
    assert "adversarial: fgm" in (fgm / ".hydra" / "config.yaml").read_text()
    heads = [load_file(run / "model" / "model.safetensors")["classifier.weight"] for run in (plain, fgm, frozen)]
    # The adversarial pass changes what is learned, with trained and with frozen embeddings.
    assert not torch.allclose(heads[0], heads[1]) and not torch.allclose(heads[1], heads[2])
    # Both passes make one optimizer step: the schedule and the evaluations are those of the plain run.
    steps = [[h["step"] for h in metrics(run)["history"]] for run in (plain, fgm, frozen)]
    assert steps[0] == steps[1] == steps[2] and steps[0]


def _problems(*overrides: str) -> list[str]:
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        data = f"data.train={FIXTURES / 'zh_ner' / 'train.conll'}"
        cfg = compose(config_name="config", overrides=[data, *overrides])
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    return err.value.problems


def test_epsilon_must_be_positive_and_the_method_known():
    problems = _problems("trainer.adversarial=fgm", "trainer.adv_epsilon=0")
    assert "trainer.adv_epsilon: must be > 0 with adversarial=fgm, got 0.0" in problems
    problems = _problems("trainer.adversarial=freelb")
    assert any("trainer.adversarial: 'freelb'" in p and "allowed: none, fgm, pgd" in p for p in problems)
