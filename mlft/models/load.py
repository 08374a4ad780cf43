"""Loads a tokenizer and an encoder with a task head, with clear errors for paths that are not models."""

from __future__ import annotations

import pickle
from typing import Any

from mlft.errors import ConfigError
from mlft.models.cache import resolve


def load_tokenizer(name_or_path: str, revision: str | None = None, trust_remote_code: bool = False) -> Any:
    from transformers import AutoTokenizer

    name_or_path = resolve(name_or_path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, revision=revision, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        raise ConfigError(
            f"model.name_or_path: cannot load a tokenizer from {name_or_path!r} ({_first_line(err)})"
        ) from None
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError(
            f"model.name_or_path: {name_or_path!r} has no fast tokenizer (tokenizer.json); "
            "mlft needs one for word alignment"
        )
    if tokenizer.pad_token_id is None:
        raise ConfigError(f"model.name_or_path: the tokenizer of {name_or_path!r} has no padding token")
    return tokenizer


# Architectures whose position ids start after the padding index (RoBERTa's convention): they have fewer usable
# positions than max_position_embeddings.
OFFSET_POSITIONS = ("roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "data2vec-text", "xmod")


def check_max_length(name_or_path: str, revision: str | None, trust_remote_code: bool, max_length: int) -> None:
    """model.max_length against the positions the model has, before any data is read or anything trained."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(
            resolve(name_or_path), revision=revision, trust_remote_code=trust_remote_code
        )
    except (OSError, ValueError) as err:
        raise ConfigError(
            f"model.name_or_path: cannot read the config of {name_or_path!r} ({_first_line(err)})"
        ) from None
    positions = getattr(config, "max_position_embeddings", None)
    if positions is None:
        return
    if getattr(config, "model_type", None) in OFFSET_POSITIONS:
        positions -= (config.pad_token_id or 0) + 1
    if max_length > positions:
        raise ConfigError(
            f"model.max_length: {max_length} is more than the {positions} positions of {name_or_path} "
            f"(allowed: 8 to {positions}; longer NER inputs are windowed with model.stride)"
        )


def load_model(
    model_class: Any,
    name_or_path: str,
    head: dict[str, Any],
    tokenizer: Any,
    revision: str | None = None,
    trust_remote_code: bool = False,
) -> Any:
    """Loads the encoder with a fresh head configured by `head` (or the saved head when its labels match)."""
    name_or_path = resolve(name_or_path)
    try:
        model = model_class.from_pretrained(
            name_or_path,
            **head,
            revision=revision,
            trust_remote_code=trust_remote_code,
            ignore_mismatched_sizes=True,
        )
    except pickle.UnpicklingError:
        raise ConfigError(
            f"model.name_or_path: the weights in {name_or_path!r} hold Python objects besides tensors, which mlft "
            "does not unpickle (they can run code); use a model saved as safetensors"
        ) from None
    except (OSError, ValueError) as err:
        raise ConfigError(
            f"model.name_or_path: cannot load a model from {name_or_path!r} ({_first_line(err)})"
        ) from None
    rows = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > rows:
        raise ConfigError(
            f"model.name_or_path: the tokenizer has {len(tokenizer)} tokens but the model only {rows} embedding rows "
            "(tokenizer and model do not belong together)"
        )
    return model


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else type(err).__name__
