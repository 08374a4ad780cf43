"""Back-translation (Sennrich et al. 2016; for classification, Xie et al. 2020): every training text translated to
a pivot language and back by seq2seq translation models, one paraphrase per text, cached so that a rerun (or
another run on the same texts with the same models) does not translate again.

Marian models translate one direction each (e.g. Helsinki-NLP/opus-mt-zh-en, then opus-mt-en-zh); many-to-many
models (NLLB, M2M100) take language codes (data.augment.bt_langs=[zho_Hans,eng_Latn]) and may be given twice.
Weights load from safetensors only, like every model mlft loads.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from mlft.errors import ConfigError
from mlft.models.cache import cache_root, resolve

log = logging.getLogger("mlft")
BATCH = 16


def cache_file(texts: list[str], models: list[str], langs: list[str] | None) -> Path:
    key = hashlib.sha256(json.dumps([models, langs, texts], ensure_ascii=False).encode()).hexdigest()[:32]
    return cache_root() / "back-translation" / f"{key}.json"


def back_translate(texts: list[str], models: list[str], langs: list[str] | None) -> dict[str, str]:
    """text -> its round trip through the pivot language."""
    unique = list(dict.fromkeys(texts))
    cached = cache_file(unique, models, langs)
    if cached.is_file():
        log.info("back-translation: %d texts from the cache %s", len(unique), cached)
        return json.loads(cached.read_text())
    src, pivot = langs if langs else (None, None)
    log.info("back-translation: %d texts through %s and %s", len(unique), *models)
    there = translate(unique, models[0], src, pivot)
    back = translate(there, models[1], pivot, src)
    result = dict(zip(unique, back))
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_name(cached.name + ".tmp")
    tmp.write_text(json.dumps(result, ensure_ascii=False))
    tmp.replace(cached)
    return result


def translate(texts: list[str], name: str, src: str | None, tgt: str | None) -> list[str]:
    import torch
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(resolve(name))
        model = AutoModelForSeq2SeqLM.from_pretrained(resolve(name), use_safetensors=True)
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise ConfigError(
            f"data.augment.back_translation: cannot load the translation model {name!r} ({first}); it must be a "
            "seq2seq model with safetensors weights"
        ) from None
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = model.to(device)
    model.train(False)  # inference: no dropout
    generate: dict = {"num_beams": 1, "do_sample": False}
    if src is not None:
        tokenizer.src_lang = src
    if tgt is not None:
        generate["forced_bos_token_id"] = tokenizer.convert_tokens_to_ids(tgt)
    # Inputs and outputs both stay within the model's positions (a random or short model has few).
    positions = getattr(model.config, "max_position_embeddings", None) or 512
    out: list[str] = []
    with torch.inference_mode():
        for start in range(0, len(texts), BATCH):
            chunk = texts[start : start + BATCH]
            batch = tokenizer(chunk, return_tensors="pt", padding=True, truncation=True, max_length=positions)
            batch = batch.to(device)
            longest = int(batch["attention_mask"].sum(1).max())
            ids = model.generate(**batch, max_new_tokens=min(2 * longest + 10, positions - 2), **generate)
            out += tokenizer.batch_decode(ids, skip_special_tokens=True)
    return [text.strip() for text in out]
