"""Loading models whose structure config.json cannot express to transformers: pruned layers of different sizes
(`mlft_pruned`, mlft.models.pruning) and bottleneck adapters (`mlft_bottleneck`, mlft.models.bottleneck).

transformers builds the model its config describes and reads the weights that fit; mlft then rebuilds the
recorded structure (cuts the layers, adds the adapters) and reads those modules' weights from the same files.
Every tensor of the rebuilt modules must be there with its shape: nothing is left at a random initialisation.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from transformers.utils import SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME

from mlft.errors import RunDirError
from mlft.models import bottleneck, pruning


def records(folder: str) -> dict[str, Any]:
    """The structure records in a local model folder's config.json; {} for plain models and hub ids."""
    path = Path(folder) / "config.json"
    if not path.is_file():
        return {}
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}  # the loader reports an unreadable config itself
    if not isinstance(config, dict):
        return {}
    found = {key: config[key] for key in (pruning.PRUNED_KEY, bottleneck.BOTTLENECK_KEY) if config.get(key)}
    if any(not isinstance(value, dict) for value in found.values()):
        raise RunDirError(f"{path}: {', '.join(found)} must be objects")
    return found


def pretrained(load: Callable[..., Any], folder: str, **kwargs: Any) -> Any:
    """`load(folder, **kwargs)` (a from_pretrained), with the recorded structure rebuilt and its weights read."""
    found = records(folder)
    if not found:
        return load(folder, **kwargs)
    pruned = found.get(pruning.PRUNED_KEY)
    with quiet_load_report():  # the rebuilt modules' weights are read right after
        model = load(folder, **({**kwargs, "ignore_mismatched_sizes": True} if pruned else kwargs))
    modules: list[torch.nn.Module] = []
    if pruned is not None:
        pruning.shape(model, pruned, folder)
        for block in pruning.blocks(model, folder):
            attention = block.attention
            modules += [attention.query, attention.key, attention.value, block.out, block.up, block.down]
    settings = found.get(bottleneck.BOTTLENECK_KEY)
    if settings is not None:
        bottleneck.check(settings.get("placement"), settings.get("size"), folder)
        bottleneck.add(model, settings["placement"], settings["size"], folder)
        modules += [m for m in model.modules() if isinstance(m, bottleneck.Bottleneck)]
    _read(model, Path(folder), modules)
    return model


def _read(model: torch.nn.Module, folder: Path, modules: list[torch.nn.Module]) -> None:
    names = {id(module): name for name, module in model.named_modules()}
    wanted = {
        f"{names[id(module)]}.{param_name}": param
        for module in modules
        for param_name, param in module.named_parameters()
    }
    found = 0
    for file in sorted(set(_weight_files(folder))):
        with safe_open(str(file), framework="pt") as weights:
            for key in weights.keys():  # noqa: SIM118 (safe_open is not a mapping)
                if key in wanted:
                    value = weights.get_tensor(key)
                    if value.shape != wanted[key].shape:
                        raise RunDirError(f"{folder}: {key} has shape {tuple(value.shape)}, not the recorded one")
                    with torch.no_grad():
                        wanted[key].copy_(value)
                    found += 1
    if found != len(wanted):
        raise RunDirError(
            f"{folder}: the weights lack {len(wanted) - found} tensors of the layers config.json records"
        )


def _weight_files(folder: Path) -> list[Path]:
    if (folder / SAFE_WEIGHTS_NAME).is_file():
        return [folder / SAFE_WEIGHTS_NAME]
    if (folder / SAFE_WEIGHTS_INDEX_NAME).is_file():
        index = json.loads((folder / SAFE_WEIGHTS_INDEX_NAME).read_text())
        return [folder / name for name in index.get("weight_map", {}).values()]
    raise RunDirError(f"{folder}: a rebuilt model needs its weights as safetensors ({SAFE_WEIGHTS_NAME})")


@contextmanager
def quiet_load_report() -> Iterator[None]:
    """Silences transformers' LOAD REPORT of weights it re-initialised or left unused, for loaders that read or
    check those weights themselves (the rebuilt modules here; the mean-pooling head)."""
    logger = logging.getLogger("transformers.modeling_utils")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
