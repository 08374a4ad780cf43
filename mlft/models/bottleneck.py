"""Bottleneck adapters (Houlsby et al. 2019; Pfeiffer et al. 2021): a small down-projection, ReLU and
up-projection added to a block's output, x + up(relu(down(x))), trained while the encoder stays frozen.

`adapters` (AdapterHub) provides them but pins transformers 4.57, and peft has none, so this module adds them to
BERT-style blocks itself: `pfeiffer` puts one after each block's feed-forward output projection, `houlsby` one
after the attention output projection as well (both before the residual connection and LayerNorm, where the
papers put them). The up-projection starts at zero, so training starts from the pretrained model's function.

Unlike LoRA the adapter is not linear and cannot be folded into the weights: the run's `model/` holds the encoder
with its adapters (config.json records them under `mlft_bottleneck`, and mlft's loaders put them back,
`mlft.models.rebuild`), `adapter/` holds only the adapter and head weights, which `load_adapter` puts onto the
base model. The ONNX export contains them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from mlft.errors import RunDirError
from mlft.models.freeze import is_head
from mlft.models.pruning import blocks

BOTTLENECK_KEY = "mlft_bottleneck"
"""The config.json entry of a model with bottleneck adapters: {"placement": ..., "size": ...}."""
PLACEMENTS = ("pfeiffer", "houlsby")
ADAPTER_WEIGHTS = "bottleneck.safetensors"
ADAPTER_CONFIG = "bottleneck.json"


class Bottleneck(torch.nn.Module):
    def __init__(self, hidden: int, size: int):
        super().__init__()
        self.down = torch.nn.Linear(hidden, size)
        self.up = torch.nn.Linear(size, hidden)
        torch.nn.init.normal_(self.down.weight, std=0.02)
        torch.nn.init.zeros_(self.down.bias)
        torch.nn.init.zeros_(self.up.weight)  # the adapter starts as the identity
        torch.nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.up(torch.relu(self.down(x)))


def _after(module: torch.nn.Module, adapter: Bottleneck) -> None:
    """Runs `adapter` on the output of `module` (a forward hook: the module and its weights keep their names)."""

    def hook(_module: torch.nn.Module, _args: tuple[Any, ...], output: torch.Tensor) -> torch.Tensor:
        return adapter(output)

    module.register_forward_hook(hook)


def add(model: Any, placement: str, size: int, key: str = "peft") -> list[str]:
    """Adds adapters to every block (in place) and records them in the config; returns their module names.
    The adapter sits beside the projection it follows (`output.adapter`, `attention.output.adapter`)."""
    for block in blocks(model, key):
        layer = block.layer
        places = [(layer.output, block.down)]
        if placement == "houlsby":
            places.append((layer.attention.output, block.out))
        for parent, projection in places:
            adapter = Bottleneck(projection.out_features, size).to(projection.weight.device)
            parent.adapter = adapter
            _after(projection, adapter)
    model.config.mlft_bottleneck = {"placement": placement, "size": size}
    return [name for name, module in model.named_modules() if isinstance(module, Bottleneck)]


def train_only_adapters(model: torch.nn.Module) -> None:
    """Freezes everything but the adapters and the task head."""
    for name, param in model.named_parameters():
        param.requires_grad_(is_head(name, model) or ".adapter." in name)


def adapter_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The adapters' and the head's weights: what the run trained."""
    return {
        name: param.detach().cpu().contiguous()
        for name, param in model.named_parameters()
        if is_head(name, model) or ".adapter." in name
    }


def save_adapter(model: Any, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    save_file(adapter_state(model), str(folder / ADAPTER_WEIGHTS))
    (folder / ADAPTER_CONFIG).write_text(json.dumps(model.config.mlft_bottleneck) + "\n")


def load_adapter(model: Any, folder: Path) -> None:
    """Adds the adapters saved in `folder` to a base model with the same head (in place)."""
    try:
        settings = json.loads((folder / ADAPTER_CONFIG).read_text())
        placement, size = settings["placement"], int(settings["size"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise RunDirError(f"{folder}: no readable {ADAPTER_CONFIG} ({err})") from None
    check(placement, size, str(folder))
    add(model, placement, size, str(folder))
    state = load_file(str(folder / ADAPTER_WEIGHTS))
    _missing, unexpected = model.load_state_dict(state, strict=False)
    trained = set(adapter_state(model))
    if unexpected or trained - set(state):
        raise RunDirError(f"{folder}: the adapter does not fit this model ({sorted(trained - set(state))[:3]})")


def check(placement: Any, size: Any, where: str) -> None:
    if placement not in PLACEMENTS or not isinstance(size, int) or not 1 <= size <= 4096:
        raise RunDirError(
            f"{where}: {BOTTLENECK_KEY} must name a placement ({', '.join(PLACEMENTS)}) and a size 1-4096"
        )
