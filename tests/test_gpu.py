"""Training on a CUDA device. Skipped where there is none; on a GPU machine: pytest tests/test_gpu.py."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from mlft.models.compact import compact, expand, kept_ids

from helpers import ZH_NER, metrics, train

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def test_rows_trained_on_the_gpu_go_back_into_the_pretrained_matrix(tiny_models, tokenizers):
    from transformers import AutoModelForTokenClassification

    model = AutoModelForTokenClassification.from_pretrained(tiny_models["bpe"], num_labels=3)
    before = model.get_input_embeddings().weight.detach().clone()
    kept = kept_ids(tokenizers["bpe"], tokenizers["bpe"](["hello world"])["input_ids"])
    vocab = compact(model, kept)  # on the CPU, as train() does before accelerate moves the model
    model.to("cuda")
    with torch.no_grad():
        model.get_input_embeddings().weight += 1.0
    expand(model, vocab)
    after = model.get_input_embeddings().weight.detach()
    assert after.device.type == "cuda" and after.shape == before.shape
    torch.testing.assert_close(after[kept].cpu(), before[kept] + 1.0)
    unused = sorted(set(range(before.shape[0])) - set(kept))
    assert torch.equal(after[unused].cpu(), before[unused])


@pytest.mark.parametrize("precision", ["no", "bf16"])
def test_ner_trains_evaluates_and_saves_on_the_gpu(tmp_path, tiny_models, precision):
    run = train(
        tmp_path / "run", tiny_models["unigram"], *ZH_NER, "trainer.epochs=2", f"trainer.precision={precision}"
    )
    env = json.loads((run / "env.json").read_text())
    assert env["devices"]["device"].startswith("cuda") and env["devices"]["precision"] == precision
    assert 0.0 <= metrics(run)["test"]["zh"]["f1"] <= 1.0
    saved = load_file(run / "model" / "model.safetensors")
    base = load_file(tiny_models["unigram"] / "model.safetensors")["embeddings.word_embeddings.weight"]
    assert saved["bert.embeddings.word_embeddings.weight"].shape == base.shape


def test_classification_trains_on_the_gpu(sentiment_run):
    # conftest's shared sentiment run trains on whatever device Accelerate picks: here, the GPU.
    assert json.loads((sentiment_run / "env.json").read_text())["devices"]["device"].startswith("cuda")
    assert 0.0 <= metrics(sentiment_run)["test"]["zh"]["accuracy"] <= 1.0
