"""Checkpoint directories: atomic writes, the newest complete one, retention that never drops the best.

A checkpoint is `checkpoints/step-<N>/` holding Accelerate's state plus `trainer_state.json`. It is
written under a temporary name and renamed when complete, so a crash mid-write leaves only a
`.tmp-*` folder that resume ignores and the next write replaces.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from mlft.destinations import share

STATE_FILE = "trainer_state.json"
BEST = "best"


def step_dirs(root: Path) -> list[Path]:
    """Complete step checkpoints, oldest first."""
    if not root.is_dir():
        return []
    found = [p for p in root.glob("step-*") if (p / STATE_FILE).is_file()]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def latest(root: Path) -> Path | None:
    dirs = step_dirs(root)
    return dirs[-1] if dirs else None


def begin(target: Path) -> Path:
    """A fresh temporary folder next to `target`, to be filled and then committed."""
    tmp = target.parent / f".tmp-{target.name}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def commit(tmp: Path, target: Path) -> None:
    """Renames a complete temporary folder to `target`; an older `target` is removed only afterwards."""
    share(tmp)
    if target.exists():
        old = target.parent / f".old-{target.name}"
        if old.exists():
            shutil.rmtree(old)
        os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old)
    else:
        os.replace(tmp, target)


def discard(tmp: Path) -> None:
    """Removes an unfinished temporary folder (after a failed write)."""
    shutil.rmtree(tmp, ignore_errors=True)


def recover(target: Path) -> None:
    """Completes a `commit` that was interrupted between its two renames: the older copy comes back."""
    old = target.parent / f".old-{target.name}"
    if old.is_dir() and not target.exists():
        os.replace(old, target)


def write_atomic(target: Path, write: Callable[[Path], None]) -> None:
    """Calls `write(tmp_dir)` then renames tmp_dir to target (single process); on failure target is unchanged."""
    tmp = begin(target)
    try:
        write(tmp)
    except BaseException:
        discard(tmp)
        raise
    commit(tmp, target)


def link_or_copy(source: Path, target: Path) -> None:
    """Fills `target` with `source`'s files as hard links (a copy where links are not possible).

    Checkpoint files are never modified in place (a new checkpoint is a new folder), so a link is as
    safe as a copy and saves the model's size on disk.
    """
    target.mkdir(parents=True, exist_ok=True)
    for file in source.iterdir():
        if not file.is_file():
            continue
        (target / file.name).unlink(missing_ok=True)
        try:
            os.link(file, target / file.name)
        except OSError:
            shutil.copy2(file, target / file.name)


def write_state(directory: Path, state: dict[str, Any]) -> None:
    (directory / STATE_FILE).write_text(json.dumps(state, indent=2))


def read_state(directory: Path) -> dict[str, Any]:
    return json.loads((directory / STATE_FILE).read_text())


def prune(root: Path, keep_last: int) -> None:
    """Deletes all but the newest `keep_last` step checkpoints (the best model lives in `best/`)."""
    dirs = step_dirs(root)
    for old in dirs[: max(len(dirs) - keep_last, 0)]:
        shutil.rmtree(old)


MODEL_FILE = "model.safetensors"
"""The model weights inside a step checkpoint (Accelerate's save_state)."""


def rng_file(directory: Path, process_index: int) -> Path:
    from accelerate.utils import RNG_STATE_NAME

    return directory / f"{RNG_STATE_NAME}_{process_index}.pkl"


def resume_problems(directory: Path, process_index: int) -> tuple[list[str], list[str]]:
    """What a step checkpoint lacks for resuming this process: (missing weights or optimizer state, which make
    resuming impossible; a missing or unreadable RNG state, which makes the continuation differ from an
    uninterrupted run). Accelerate itself would skip an unreadable RNG state with an INFO line."""
    from accelerate.utils import OPTIMIZER_NAME, load

    fatal = [
        f"{directory / name}: missing"
        for name in (MODEL_FILE, f"{OPTIMIZER_NAME}.bin")
        if not (directory / name).is_file()
    ]
    rng = rng_file(directory, process_index)
    try:
        load(rng)  # weights_only: plain tensors and numpy arrays, never arbitrary objects
        inexact = []
    except FileNotFoundError:
        inexact = [f"{rng}: missing"]
    except Exception as err:  # noqa: BLE001 - any unreadable state means the same thing
        inexact = [f"{rng}: unreadable ({str(err).splitlines()[0][:120] if str(err) else type(err).__name__})"]
    return fatal, inexact


def average_weights(dirs: list[Path]) -> dict[str, torch.Tensor]:
    """The element-wise mean of the model weights of several step checkpoints (float tensors; others from the last)."""
    total: dict[str, torch.Tensor] = {}
    for directory in dirs:
        for name, tensor in load_file(directory / MODEL_FILE).items():
            if name not in total:
                total[name] = tensor.double() if tensor.is_floating_point() else tensor
            elif tensor.is_floating_point():
                total[name] += tensor.double()
            else:
                total[name] = tensor
    return {name: (t / len(dirs)).float() if t.is_floating_point() else t for name, t in total.items()}
