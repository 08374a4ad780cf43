"""Running a model over features on every process, gathering the outputs in the original order."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, Protocol

import torch
from accelerate import Accelerator
from accelerate.data_loader import prepare_data_loader
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from mlft.engine.progress_log import CountLog


class IndexedFeatures(torch.utils.data.Dataset):
    def __init__(self, features: list[dict[str, Any]]):
        self.features = features

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {**self.features[index], "index": index}


def collate_with_index(collate: Callable[[list[dict]], dict[str, torch.Tensor]]) -> Callable:
    def wrapped(items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = collate(items)
        batch["index"] = torch.tensor([item["index"] for item in items])
        return batch

    return wrapped


EVAL_LOG_SECONDS = 30.0
"""Without a progress bar, a line at most this often while a set is scored."""


def show_progress(accelerator: Accelerator, enabled: bool) -> bool:
    return enabled and accelerator.is_local_main_process and sys.stderr.isatty()


class Reads(Protocol):
    """What running a model needs from a task type (mlft.tasks.protocol.Task has it)."""

    model_outputs: tuple[Any, ...]

    def collate(self, features: list[dict[str, Any]], pad_id: int, training: bool = False) -> dict[str, Any]: ...

    def outputs(self, scores: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]: ...


def predict_features(
    accelerator: Accelerator,
    model: torch.nn.Module,
    features: list[dict[str, Any]],
    task: Reads,
    pad_id: int,
    batch_size: int,
    progress: bool = False,
    desc: str = "eval",
) -> list[dict[str, Any]]:
    """Runs the model over features on all processes; returns per-feature outputs (the task's `outputs` of the
    model outputs it declares), in order, everywhere.

    Batches are gathered with `gather_for_metrics`, which drops the samples that the last uneven
    batch duplicated, so the result equals a single-process run.
    """
    if not features:
        return []
    # Similar lengths together: less padding. The order is restored from the gathered indices.
    order = sorted(range(len(features)), key=lambda i: len(features[i]["input_ids"]))
    loader = DataLoader(
        torch.utils.data.Subset(IndexedFeatures(features), order),
        batch_size=batch_size,
        shuffle=False,
        collate_fn=collate_with_index(lambda f: task.collate(f, pad_id)),
        generator=torch.Generator(),  # see TrainingLoop.setup: loaders must not draw from the global RNG
    )
    # Not accelerator.prepare: that would register the loader in the checkpointed state, and
    # evaluation loaders must not change what a checkpoint holds.
    loader = prepare_data_loader(
        loader, accelerator.device, accelerator.num_processes, accelerator.process_index, put_on_device=True
    )
    results: list[dict[str, Any] | None] = [None] * len(features)
    shown = show_progress(accelerator, progress)
    lines = CountLog(accelerator.is_main_process and not shown, desc, len(features), EVAL_LOG_SECONDS)
    model.eval()
    with torch.inference_mode():
        for batch in tqdm(loader, desc=desc, disable=not shown, leave=False):
            index = batch.pop("index")
            # Labels go in too: a masked-LM model then scores only the masked positions (its loss is unused).
            with accelerator.autocast():
                result = model(**batch)
            scores = {output.name: result[output.name] for output in task.model_outputs}
            # Per-position outputs have each process's own batch width: equal widths before gathering.
            outs = {
                k: accelerator.pad_across_processes(v, dim=1, pad_index=0) if v.dim() > 1 else v
                for k, v in task.outputs(scores, batch).items()
            }
            gathered_index, gathered = accelerator.gather_for_metrics((index, outs))
            for row, i in enumerate(gathered_index.tolist()):
                results[i] = {k: v[row].cpu() for k, v in gathered.items()}
            lines.update(len(gathered_index))
    assert all(r is not None for r in results)
    return results  # type: ignore[return-value]
