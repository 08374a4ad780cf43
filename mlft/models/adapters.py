"""Parameter-efficient fine-tuning with the `peft` library: LoRA or (IA)³ on the encoder, the head trained in full.

During training the model is a `PeftModel`: checkpoints/best holds only the adapter (a few MB), and the run's
final `model/` is the adapter merged into the base weights, a plain transformers model that eval, predict,
export and serve load like any other. The unmerged adapter is kept in `adapter/` for users who swap adapters.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from mlft.config import MASKED_LM, PeftConfig
from mlft.errors import ConfigError

ADAPTER_FILE = "adapter_model.safetensors"
"""The adapter weights PeftModel.save_pretrained writes (with adapter_config.json)."""
LANG_PREFIX = "lang_"
"""Names of language adapters inside a model (mlft.models.lang_adapters); the others are the task's."""
ALL_LINEAR = "all-linear"
"""peft.target_modules=[all-linear]: every linear layer of the encoder, whatever its architecture calls them (BERT:
query, key, value, dense; DistilBERT: q_lin, ..., lin2; DeBERTa: query_proj, ...). Unlike peft's own all-linear it
never takes a layer of the task head, which trains in full beside the adapter."""


def is_peft(model: Any) -> bool:
    from peft import PeftModel

    return isinstance(model, PeftModel)


def add_adapter(model: Any, cfg: PeftConfig, task_type: str, total_steps: int = 0) -> Any:
    """Wraps `model` in a PeftModel: only the adapter and the task head train. `task_type`: peft's name of the
    head (TOKEN_CLS, SEQ_CLS, ...); `total_steps`: the optimizer steps planned (AdaLoRA's budget schedule)."""
    from peft import AdaLoraConfig, IA3Config, LoHaConfig, LoKrConfig, LoraConfig, get_peft_model

    targets = list(cfg.target_modules) if cfg.target_modules else None
    if targets and ALL_LINEAR in targets:
        targets = encoder_linear_layers(model) + [t for t in targets if t != ALL_LINEAR]
    head: dict[str, Any] = {}
    if task_type == MASKED_LM:
        task_type, head = None, {"modules_to_save": head_transform(model)}  # type: ignore[assignment]
    if cfg.method == "lora":
        config: Any = LoraConfig(
            task_type=task_type,
            r=cfg.r,
            lora_alpha=cfg.alpha,
            lora_dropout=cfg.dropout,
            target_modules=targets,
            use_dora=cfg.use_dora,
            use_rslora=cfg.use_rslora,
            **head,
        )
    elif cfg.method == "adalora":
        # Ranks stay at init_r for the first 10% of the steps, are pruned towards r until the last 20%, then fixed.
        warm, final = (total_steps // 10, total_steps // 5) if total_steps >= 10 else (0, 0)
        config = AdaLoraConfig(
            task_type=task_type,
            init_r=cfg.init_r,
            target_r=cfg.r,
            lora_alpha=cfg.alpha,
            lora_dropout=cfg.dropout,
            target_modules=targets,
            total_step=max(total_steps, 1),
            tinit=warm,
            tfinal=final,
            deltaT=max(1, total_steps // 50),
            **head,
        )
    elif cfg.method in ("loha", "lokr"):
        kind = LoHaConfig if cfg.method == "loha" else LoKrConfig
        config = kind(
            task_type=task_type, r=cfg.r, alpha=cfg.alpha, rank_dropout=cfg.dropout, target_modules=targets, **head
        )
    else:
        config = IA3Config(
            task_type=task_type,
            target_modules=targets,
            feedforward_modules=list(cfg.feedforward_modules) if cfg.feedforward_modules else None,
            **head,
        )
    try:
        with warnings.catch_warnings():  # peft asks transformers about gradient checkpointing by a deprecated name
            warnings.simplefilter("ignore", FutureWarning)
            return get_peft_model(model, config)
    except ValueError as err:  # unknown architecture without explicit targets, or targets not in the model
        linear = [name for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)]
        names = sorted({name.rsplit(".", 1)[-1] for name in linear})
        raise ConfigError(
            f"peft.target_modules: {str(err).splitlines()[0][:200]} (linear layers of this model: {', '.join(names)})"
        ) from None


def encoder_linear_layers(model: torch.nn.Module) -> list[str]:
    """The full names of the linear layers inside the encoder (under the model's base_model_prefix): the heads
    around it are left out, so the names are exact and match nothing of a head whose layers share a name."""
    names = [
        name
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and inside_encoder(model, name)
    ]
    if not names:
        raise ConfigError(f"peft.target_modules: [{ALL_LINEAR}] found no linear layer in this model's encoder")
    return names


def head_transform(model: torch.nn.Module) -> list[str]:
    """The layers of a masked-LM head outside the encoder, except the output layer (the tied word embeddings)."""
    output = model.get_output_embeddings()  # type: ignore[operator]
    return [
        name
        for name, module in model.named_modules()
        if isinstance(module, (torch.nn.Linear, torch.nn.LayerNorm))
        and module is not output
        and not inside_encoder(model, name)
    ]


def inside_encoder(model: torch.nn.Module, name: str) -> bool:
    """Whether the module `name` of `model` belongs to its encoder (under base_model_prefix), not to a head."""
    prefix = getattr(model, "base_model_prefix", "")
    return bool(prefix) and name.startswith(prefix + ".")


def rank_budget(model: Any) -> Callable[[int], None]:
    """AdaLoRA's update after each optimizer step, while the gradients are still there: it scores every rank's
    importance and prunes the least important ones to the budget."""

    def update(step: int) -> None:
        model.base_model.update_and_allocate(step)

    return update


def trainable_summary(model: torch.nn.Module) -> str:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return f"{trainable:,} of {total:,} parameters train ({trainable / total:.2%})"


def load_adapter_weights(model: Any, directory: Path) -> None:
    """Puts the adapter saved in `directory` (checkpoints/best) into the PeftModel `model`."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    config = model.peft_config[model.active_adapter]
    if config.peft_type == "ADALORA":
        # AdaLoRA saves each layer's adapter cut to the ranks kept at that moment: load with those ranks.
        saved = json.loads((directory / "adapter_config.json").read_text())
        config.rank_pattern = saved.get("rank_pattern")
    set_peft_model_state_dict(model, load_file(directory / ADAPTER_FILE))


def merge(model: Any) -> Any:
    """The plain transformers model with the task adapter folded into its weights (changes `model` in place:
    the PeftModel keeps working, its layers are plain ones now). Language adapters are left out."""
    return model.merge_and_unload(adapter_names=[n for n in model.peft_config if not n.startswith(LANG_PREFIX)])
