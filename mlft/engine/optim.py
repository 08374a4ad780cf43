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
from mlft.models.freeze import is_head

_SCHEDULES: dict[str, Callable[..., torch.optim.lr_scheduler.LambdaLR]] = {
    "linear": get_linear_schedule_with_warmup,
    "cosine": get_cosine_schedule_with_warmup,
}


def param_groups(model: torch.nn.Module, weight_decay: float, lr: float, head_lr: float | None = None) -> list[dict]:
    """Decay only weight matrices: biases and normalization weights (1-D tensors) are excluded.
    The task head gets its own learning rate when head_lr is set."""
    groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
    # A PeftModel prefixes every name: the transformers model inside has the names is_head knows.
    model = getattr(model, "get_base_model", lambda: model)()
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        decays = not (param.ndim < 2 or "norm" in name.lower())
        head = head_lr is not None and is_head(name, model)
        groups.setdefault((decays, head), []).append(param)
    order = [(True, False), (True, True), (False, False), (False, True)]  # stable, so optimizer state resumes
    return [
        {"params": groups[key], "weight_decay": weight_decay if key[0] else 0.0, "lr": head_lr if key[1] else lr}
        for key in order
        if key in groups
    ]


def build_optimizer(model: torch.nn.Module, cfg: OptimizerConfig) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg.weight_decay, cfg.lr, cfg.head_lr)
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
