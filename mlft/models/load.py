"""Loads a tokenizer and an encoder with a task head, with clear errors for paths that are not models."""

from __future__ import annotations

import pickle
from typing import Any

from mlft.errors import ConfigError
from mlft.models.cache import resolve
from mlft.models.rebuild import pretrained


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


def read_model_config(name_or_path: str, revision: str | None, trust_remote_code: bool) -> Any:
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(
            resolve(name_or_path), revision=revision, trust_remote_code=trust_remote_code
        )
    except (OSError, ValueError) as err:
        raise ConfigError(
            f"model.name_or_path: cannot read the config of {name_or_path!r} ({_first_line(err)})"
        ) from None


def check_max_length(config: Any, name_or_path: str, max_length: int) -> None:
    """model.max_length against the positions the model has, before any data is read or anything trained."""
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
    dropout: dict[str, float] | None = None,
) -> Any:
    """Loads the encoder with a fresh head configured by `head` (or the saved head when its labels match);
    `dropout`: config keys that override the model's dropout (see dropout_settings)."""
    name_or_path = resolve(name_or_path)
    try:
        model = pretrained(
            model_class.from_pretrained,
            name_or_path,
            **head,
            **(dropout or {}),
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


HIDDEN_DROPOUT = ("hidden_dropout_prob", "dropout", "hidden_dropout", "dropout_rate", "resid_pdrop")
ATTENTION_DROPOUT = ("attention_probs_dropout_prob", "attention_dropout", "attention_probs_dropout", "attn_pdrop")
"""The config keys model types name their dropout with (BERT/XLM-R/ELECTRA, DistilBERT, DeBERTa, T5, GPT-2)."""


def dropout_settings(config: Any, hidden: float | None, attention: float | None) -> dict[str, float]:
    """Config overrides for model.dropout / model.attention_dropout: every key of that kind the config has; a
    config with none is a ConfigError naming the keys looked for."""
    out: dict[str, float] = {}
    for key, value, names in (
        ("model.dropout", hidden, HIDDEN_DROPOUT),
        ("model.attention_dropout", attention, ATTENTION_DROPOUT),
    ):
        if value is None:
            continue
        found = [name for name in names if hasattr(config, name)]
        if not found:
            raise ConfigError(f"{key}: {config.model_type} configs have none of {', '.join(names)}")
        out.update(dict.fromkeys(found, value))
    return out
