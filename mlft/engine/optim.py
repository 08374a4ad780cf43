"""AdamW without weight decay on biases and LayerNorm, and the warmup + decay schedule."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from transformers import (
    get_constant_schedule_with_warmup,
    get_cosine_schedule_with_warmup,
    get_linear_schedule_with_warmup,
)

from mlft.config import OptimizerConfig
from mlft.models.freeze import encoder_layers, is_head

_SCHEDULES: dict[str, Callable[..., torch.optim.lr_scheduler.LambdaLR]] = {
    "linear": get_linear_schedule_with_warmup,
    "cosine": get_cosine_schedule_with_warmup,
}


def param_groups(
    model: torch.nn.Module,
    weight_decay: float,
    lr: float,
    head_lr: float | None = None,
    layer_decay: float | None = None,
) -> list[dict]:
    """Decay only weight matrices: biases and normalization weights (1-D tensors) are excluded.
    The task head gets its own learning rate when head_lr is set; with layer_decay, each encoder layer's rate
    is lr × layer_decay^(distance from the top), see layer_depths."""
    # A PeftModel prefixes every name: the transformers model inside has the names is_head knows.
    model = getattr(model, "get_base_model", lambda: model)()
    depths = layer_depths(model) if layer_decay is not None else {}
    top = max(depths.values(), default=0)
    groups: dict[tuple[bool, bool, int], list[torch.nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        decays = not (param.ndim < 2 or "norm" in name.lower())
        head = head_lr is not None and is_head(name, model)
        groups.setdefault((decays, head, depths.get(name, top)), []).append(param)

    def rate(head: bool, depth: int) -> float:
        return head_lr if head and head_lr is not None else lr * (layer_decay or 1.0) ** (top - depth)

    # Sorted: a stable order of groups, so a resumed optimizer state lands in the same groups.
    return [
        {"params": groups[key], "weight_decay": weight_decay if key[0] else 0.0, "lr": rate(key[1], key[2])}
        for key in sorted(groups, key=lambda k: (not k[0], k[1], -k[2]))
    ]


def layer_depths(model: torch.nn.Module) -> dict[str, int]:
    """Depth of every parameter for layer-wise decay (ELECTRA, BEiT): the embeddings 0, transformer block i
    i + 1, everything above the blocks (pooler, task head) L + 1, which trains at the full rate."""
    stack = encoder_layers(model, "optimizer.layer_decay")
    prefix = next(name for name, module in model.named_modules() if module is stack)
    top = len(stack) + 1
    depths = {}
    for name, _ in model.named_parameters():
        if name.startswith(prefix + "."):
            depths[name] = int(name[len(prefix) + 1 :].split(".", 1)[0]) + 1
        elif "embeddings" in name and not is_head(name, model):
            depths[name] = 0
        else:
            depths[name] = top
    return depths


def build_optimizer(model: torch.nn.Module, cfg: OptimizerConfig) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg.weight_decay, cfg.lr, cfg.head_lr, cfg.layer_decay)
    # The fused kernel updates all tensors in one pass instead of looping over ~200 of them (scripts/bench_optimizer.py
    # times both); same update rule. Other devices keep the default implementation.
    devices = {p.device.type for group in groups for p in group["params"]}
    fused = devices <= {"cpu", "cuda"} or None
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.betas[0], cfg.betas[1]), eps=cfg.eps, fused=fused)


def warmup_steps(cfg: OptimizerConfig, total_steps: int) -> int:
    if cfg.warmup_steps is not None:
        return cfg.warmup_steps
    return math.ceil(total_steps * (cfg.warmup_fraction or 0.0))


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: OptimizerConfig, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    warmup = warmup_steps(cfg, total_steps)
    if cfg.schedule == "constant":
        return get_constant_schedule_with_warmup(optimizer, warmup)
    return _SCHEDULES[cfg.schedule](optimizer, warmup, total_steps)
