"""What this machine runs a job on, and which trainer settings it cannot run: asked before a run directory is made,
so torch is imported only when the answer depends on it."""

from __future__ import annotations

import os

TRUE = ("1", "y", "yes", "t", "true", "on")
"""How Accelerate spells a flag that is set (accelerate.utils.parse_flag_from_env)."""


def use_cpu(forced: bool) -> bool:
    """CPU when asked, when launched with `accelerate launch --cpu`, or when there is no GPU."""
    if forced or os.environ.get("ACCELERATE_USE_CPU", "").lower() in TRUE:
        return True
    import torch  # only here: a config check that needs no device stays free of it

    return not torch.cuda.is_available()


def device_problems(precision: object, cpu: bool) -> list[str]:
    """What this machine cannot run of the trainer's settings (checked before a run directory is made)."""
    if precision == "fp16" and use_cpu(cpu):
        return ["trainer.precision: fp16 needs a CUDA GPU and none is used here; use bf16 or no"]
    return []
