"""Text classification from the mean of the encoder's last hidden states over the real (non-pad) tokens.

Sentence encoders such as multilingual-e5 were pre-trained to represent a text by this mean. The Auto heads of
transformers classify from the first token instead, through a pooler that e5 checkpoints do not contain (it
starts random). The two heads compared: docs/results/offline-default.md.

The model saves like any transformers model: the encoder's weights under its usual prefix (`bert.`, `roberta.`,
...) plus `classifier.`, and `mlft_pooling: mean` in config.json. mlft loads it back with this class; a plain
`AutoModelForSequenceClassification` would load the same weights but classify from the first token.
"""

from __future__ import annotations

import json
from contextlib import nullcontext
from pathlib import Path
from typing import Any, cast

import torch
from safetensors import safe_open
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput
from transformers.utils import SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME

from mlft.errors import ConfigError
from mlft.models.bottleneck import BOTTLENECK_KEY
from mlft.models.rebuild import quiet_load_report

POOLING_KEY = "mlft_pooling"
"""The config.json entry that marks a model saved by this class."""


class MeanPoolingClassifier(PreTrainedModel):
    """An encoder (any `AutoModel`), masked mean pooling, dropout and a linear classifier."""

    config_class = PretrainedConfig  # the encoder's own config class, from AutoConfig
    # The attention implementation is the encoder's: its own from_pretrained/from_config has already checked it.
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True

    def __init__(self, config: PretrainedConfig, encoder: PreTrainedModel):
        super().__init__(config)
        setattr(config, POOLING_KEY, "mean")
        # The encoder sits under its own prefix, so the saved keys are those of the architecture's Auto heads and
        # AutoModel.from_pretrained finds the encoder in a saved mean-pooling model.
        self.base_model_prefix = encoder.base_model_prefix
        if getattr(encoder, "pooler", None) is not None:
            # Unused: it would only cost compute and leave parameters without gradients (an error under DDP).
            setattr(encoder, "pooler", None)  # noqa: B010 (the attribute is typed as a module)
        setattr(self, self.base_model_prefix, encoder)
        dropout: float | None = getattr(config, "classifier_dropout", None)  # as the transformers heads choose it
        if dropout is None:
            dropout = getattr(config, "hidden_dropout_prob", 0.1)
        self.dropout = torch.nn.Dropout(dropout)
        self.classifier = torch.nn.Linear(config.hidden_size, cast(int, config.num_labels))
        self.classifier.weight.data.normal_(0.0, getattr(config, "initializer_range", 0.02))
        self.classifier.bias.data.zero_()
        self.post_init()

    def get_input_embeddings(self) -> torch.nn.Module:
        return self.backbone().get_input_embeddings()

    def set_input_embeddings(self, value: torch.nn.Module) -> None:
        self.backbone().set_input_embeddings(value)

    def backbone(self) -> PreTrainedModel:
        encoder: PreTrainedModel = getattr(self, self.base_model_prefix)
        return encoder

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> SequenceClassifierOutput:
        kwargs = {k: v for k, v in kwargs.items() if k in ("token_type_ids", "inputs_embeds") and v is not None}
        hidden = self.backbone()(input_ids=input_ids, attention_mask=attention_mask, **kwargs).last_hidden_state
        if attention_mask is None:
            attention_mask = torch.ones(hidden.shape[:2], dtype=torch.long, device=hidden.device)
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
        logits = self.classifier(self.dropout(pooled))
        loss = None
        if labels is not None:
            if self.config.problem_type == "multi_label_classification":
                loss = torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), labels.float())
            else:
                loss = torch.nn.functional.cross_entropy(logits.float(), labels.view(-1))
        return SequenceClassifierOutput(loss=loss, logits=logits)

    @classmethod
    def from_pretrained(  # type: ignore[override]
        cls,
        name_or_path: str | Path,
        *,
        revision: str | None = None,
        trust_remote_code: bool = False,
        ignore_mismatched_sizes: bool = False,
        use_safetensors: bool | None = None,
        **config_kwargs: Any,
    ) -> MeanPoolingClassifier:
        """A model this class saved comes back whole; any other encoder checkpoint (a hub id, a first-token model)
        gives its encoder and a new classifier. `config_kwargs` (num_labels, id2label, ...) update the config."""
        config = AutoConfig.from_pretrained(
            name_or_path, revision=revision, trust_remote_code=trust_remote_code, **config_kwargs
        )
        head = _saved_head(Path(name_or_path)) if getattr(config, POOLING_KEY, None) == "mean" else None
        # transformers' own loader reads the encoder (under its prefix) without initialising it first.
        with quiet_load_report() if head is not None else nullcontext():
            encoder, info = AutoModel.from_pretrained(
                name_or_path,
                config=config,
                revision=revision,
                trust_remote_code=trust_remote_code,
                use_safetensors=use_safetensors,
                ignore_mismatched_sizes=ignore_mismatched_sizes,
                output_loading_info=True,
            )
        model = cls(config, encoder)
        if head is None:  # a hub id or another kind of checkpoint: its encoder and a new classifier
            return model
        missing = [k for k in info["missing_keys"] if not k.startswith("pooler.")]
        # Bottleneck adapters (mlft_bottleneck in config.json) are added and read by mlft.models.rebuild.
        adapters = getattr(config, BOTTLENECK_KEY, None) is not None
        unexpected = [
            k
            for k in info["unexpected_keys"]
            if not k.startswith("classifier.") and not (adapters and ".adapter." in k)
        ]
        if missing or unexpected:
            raise ConfigError(
                f"model.name_or_path: {name_or_path} does not match its config.json "
                f"(missing: {sorted(missing)[:5]}, unexpected: {sorted(unexpected)[:5]})"
            )
        if head["classifier.weight"].shape != model.classifier.weight.shape:
            if not ignore_mismatched_sizes:
                raise ConfigError(
                    f"model.name_or_path: {name_or_path} classifies into {head['classifier.weight'].shape[0]} "
                    f"labels, the config asks for {config.num_labels}"
                )
            return model  # a new label set: the new classifier stays
        model.classifier.load_state_dict({k.removeprefix("classifier."): v for k, v in head.items()})
        return model


def _saved_head(folder: Path) -> dict[str, torch.Tensor] | None:
    """The classifier's weights in a local folder (one file or shards); None for hub ids and folders without
    safetensors."""
    names = ("classifier.weight", "classifier.bias")
    if (folder / SAFE_WEIGHTS_NAME).is_file():
        files = {name: folder / SAFE_WEIGHTS_NAME for name in names}
    elif (folder / SAFE_WEIGHTS_INDEX_NAME).is_file():
        weight_map = json.loads((folder / SAFE_WEIGHTS_INDEX_NAME).read_text())["weight_map"]
        files = {name: folder / weight_map[name] for name in names if name in weight_map}
    else:
        return None
    head = {}
    for name, file in files.items():
        with safe_open(file, framework="pt") as weights:
            stored = weights.keys()
            if name in stored:
                head[name] = weights.get_tensor(name)
    if len(head) != len(names):
        raise ConfigError(f"model.name_or_path: {folder} is marked {POOLING_KEY}=mean but has no classifier weights")
    return head
