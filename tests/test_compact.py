"""model.compact_embeddings: training the rows the data uses gives the weights that training the full matrix gives."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from mlft.models.compact import ROWS_FILE, compact, expand, kept_ids

from helpers import ZH_NER, metrics, run_cli, train

NO_DECAY = ["optimizer.weight_decay=0", "trainer.epochs=3"]


def test_compact_training_equals_full_matrix_training(tmp_path, tiny_models):
    # Rows the data never feeds get a zero gradient: under AdamW only weight decay moves them, and they never
    # touch the run's data. Without weight decay the two runs must therefore end equal everywhere.
    full = train(tmp_path / "full", tiny_models["unigram"], *ZH_NER, *NO_DECAY, "model.compact_embeddings=false")
    small = train(tmp_path / "compact", tiny_models["unigram"], *ZH_NER, *NO_DECAY)
    rows = json.loads((small / "checkpoints" / ROWS_FILE).read_text())
    base_rows = load_file(tiny_models["unigram"] / "model.safetensors")["embeddings.word_embeddings.weight"]
    assert len(rows) < base_rows.shape[0]
    a, b = (load_file(run / "model" / "model.safetensors") for run in (full, small))
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6)
    assert metrics(full)["test"] == metrics(small)["test"] and metrics(full)["dev"] == metrics(small)["dev"]
    # Rows outside the run's data are the pretrained ones; the step checkpoints hold only the used rows.
    embedding = b["bert.embeddings.word_embeddings.weight"]
    unused = sorted(set(range(base_rows.shape[0])) - set(rows))
    assert torch.equal(embedding[unused], base_rows[unused])
    assert not torch.equal(embedding[rows], base_rows[rows])
    step = next((small / "checkpoints").glob("step-*"))
    assert load_file(step / "model.safetensors")["bert.embeddings.word_embeddings.weight"].shape[0] == len(rows)


def test_padding_keeps_its_id_and_expand_restores_the_full_matrix(tiny_models, tokenizers):
    from transformers import AutoModelForTokenClassification

    model = AutoModelForTokenClassification.from_pretrained(tiny_models["bpe"], num_labels=3)
    tokenizer = tokenizers["bpe"]
    before = model.get_input_embeddings().weight.detach().clone()
    ids = tokenizer(["hello world"], add_special_tokens=True)["input_ids"]
    kept = kept_ids(tokenizer, ids)
    assert kept.index(tokenizer.pad_token_id) == tokenizer.pad_token_id
    vocab = compact(model, kept)
    assert model.get_input_embeddings().num_embeddings == len(kept) == model.config.vocab_size
    assert model.get_input_embeddings().padding_idx == tokenizer.pad_token_id
    with torch.no_grad():
        model.get_input_embeddings().weight += 1.0
    expand(model, vocab)
    after = model.get_input_embeddings().weight.detach()
    assert after.shape == before.shape and model.config.vocab_size == before.shape[0]
    changed = (after != before).any(dim=1).nonzero().flatten().tolist()
    assert changed == kept


def test_resuming_with_data_that_selects_other_rows_is_refused(tmp_path, tiny_models):
    run = train(tmp_path / "run", tiny_models["unigram"], *ZH_NER, "trainer.epochs=1")
    (run / "checkpoints" / ROWS_FILE).write_text(json.dumps([0, 1, 2]))
    result = run_cli("train", f"resume={run}")
    assert result.returncode == 2, result.stderr[-2000:]
    assert "train 3 embedding rows" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("peft", ["none", "lora"])
def test_runs_record_how_many_rows_trained(peft, tmp_path, tiny_models, caplog):
    run = train(tmp_path / "run", tiny_models["unigram"], *ZH_NER, "trainer.epochs=1", f"peft={peft}")
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert ("rows are used by the run's data and trained" in logged) == (peft == "none")
    assert (run / "checkpoints" / ROWS_FILE).is_file() == (peft == "none")
