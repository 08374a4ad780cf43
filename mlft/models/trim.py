"""Vocabulary trimming (Ushio et al. 2023): keep only the pieces a language set uses, and their embedding rows.

multilingual-e5-small spends 96M of its 117M parameters on 250k embedding rows; one language's text
uses a few thousand of them. The kept pieces are the special and added tokens plus every piece that
the full tokenizer produces on the given texts. For Unigram (SentencePiece) and WordPiece tokenizers
the segmentation of those texts is then unchanged: the best (Unigram) or longest-match (WordPiece)
segmentation under the full vocabulary uses only kept pieces, and a subset of the vocabulary offers
no better one. Text with pieces outside the kept set falls back to smaller pieces or `<unk>`.
BPE is not supported: its merges would have to be pruned consistently too.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from mlft.errors import ConfigError, DataError

SUPPORTED = ("Unigram", "WordPiece")


# Tokenizer probes that code reading a tokenizer relies on (mlft.tasks.alignment detects `▁` and spaces with these).
PROBES = ["a", " a"]


def used_ids(tokenizer: Any, token_lists: Iterable[list[int]]) -> set[int]:
    """The ids the texts use, plus every special and added token and the pieces of PROBES."""
    keep = set(tokenizer.all_special_ids) | {int(i) for i in tokenizer.added_tokens_decoder}
    for ids in tokenizer(PROBES, add_special_tokens=False)["input_ids"]:
        keep.update(ids)
    for ids in token_lists:
        keep.update(ids)
    return keep


def vocab_file_words(path: Path, min_count: int = 1) -> list[str]:
    """The texts of a vocabulary file: plain text (one text per line), or a frequency list (`word<TAB>count`,
    words counted fewer than `min_count` times left out). A line may hold either form."""
    if not path.is_file():
        raise ConfigError(f"vocab_file: file not found: {path}")
    texts = []
    with path.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8").rstrip("\r\n")
            except UnicodeDecodeError as err:
                raise DataError(f"{path}:{number}: not UTF-8 ({err.reason} at byte {err.start})") from None
            word, tab, count = line.rpartition("\t")
            if tab and count.strip().isdigit():
                if int(count) >= min_count and word.strip():
                    texts.append(word.strip())
            elif line.strip():
                texts.append(line.strip())
    if not texts:
        raise DataError(f"{path}:1: no text or words (with min count {min_count}) in the vocabulary file")
    return texts


def _remap_post_processor(node: Any, new_id: dict[int, int]) -> None:
    """Rewrites the special-token ids inside a post-processor (Template, Roberta/Bert, Sequence) in place."""
    if isinstance(node, dict):
        if node.get("type") in ("RobertaProcessing", "BertProcessing"):
            for key in ("sep", "cls"):
                token, old = node[key]
                node[key] = [token, new_id[old]]
        if node.get("type") == "TemplateProcessing":
            for special in node.get("special_tokens", {}).values():
                special["ids"] = [new_id[i] for i in special["ids"]]
        for child in node.get("processors", []) or []:
            _remap_post_processor(child, new_id)


def trim_tokenizer_json(data: dict[str, Any], keep: set[int]) -> tuple[dict[str, Any], list[int]]:
    """A tokenizer.json keeping the ids in `keep` (renumbered in their old order); returns it and the old ids."""
    model = data["model"]
    kind = model.get("type")
    if kind not in SUPPORTED:
        raise ConfigError(f"trim_vocab: {kind} tokenizers are not supported (supported: {', '.join(SUPPORTED)})")
    size = len(model["vocab"])
    added = {t["id"] for t in data.get("added_tokens", [])}
    old_ids = sorted(i for i in keep if i < size or i in added)
    new_id = {old: new for new, old in enumerate(old_ids)}
    if kind == "Unigram":
        model["vocab"] = [model["vocab"][i] for i in old_ids if i < size]
        if model.get("unk_id") is not None:
            model["unk_id"] = new_id[model["unk_id"]]
    else:
        by_id = {i: piece for piece, i in model["vocab"].items()}
        model["vocab"] = {by_id[i]: new_id[i] for i in old_ids if i in by_id}
    for token in data.get("added_tokens", []):
        token["id"] = new_id[token["id"]]
    _remap_post_processor(data.get("post_processor"), new_id)
    return data, old_ids


def trim(model: Any, tokenizer: Any, keep: set[int]) -> tuple[Any, Any]:
    """A new (model, tokenizer) pair with only the `keep` ids; the model's input embedding rows follow."""
    from transformers import AutoTokenizer

    if not tokenizer.is_fast:
        raise ConfigError("trim_vocab: needs a fast tokenizer (tokenizer.json)")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        tokenizer.save_pretrained(folder)
        for slow_file in ("sentencepiece.bpe.model", "spiece.model", "vocab.txt"):
            (folder / slow_file).unlink(missing_ok=True)  # the slow tokenizer's files would disagree with the new ids
        data, old_ids = trim_tokenizer_json(json.loads((folder / "tokenizer.json").read_text()), keep)
        (folder / "tokenizer.json").write_text(json.dumps(data, ensure_ascii=False))
        new_id = {old: new for new, old in enumerate(old_ids)}
        config_file = folder / "tokenizer_config.json"
        config = json.loads(config_file.read_text())
        decoder = config.get("added_tokens_decoder", {})
        config["added_tokens_decoder"] = {str(new_id[int(k)]): v for k, v in decoder.items()}
        config.pop("vocab_file", None)
        config_file.write_text(json.dumps(config, ensure_ascii=False, indent=2))
        trimmed_tokenizer = AutoTokenizer.from_pretrained(folder)
    embeddings = model.get_input_embeddings()
    rows = embeddings.weight.data[torch.tensor(old_ids)].clone()
    new_embeddings = torch.nn.Embedding(len(old_ids), rows.shape[1], padding_idx=new_id.get(tokenizer.pad_token_id))
    new_embeddings.weight.data.copy_(rows)
    model.set_input_embeddings(new_embeddings)
    model.config.vocab_size = len(old_ids)
    if getattr(model.config, "pad_token_id", None) is not None:
        model.config.pad_token_id = new_id[model.config.pad_token_id]
    return model, trimmed_tokenizer
