"""Which weights a run ends with: the dev languages whose score selects them, and the checkpoint(s) chosen by
`trainer.select` (the best by that score, the last, or an average)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from safetensors.torch import load_file

from mlft.engine import checkpoint
from mlft.errors import ConfigError
from mlft.models.adapters import is_peft, load_adapter_weights


def selection_langs(select: str, train_langs: list[str], dev_langs: list[str]) -> list[str]:
    """The dev languages whose mean score selects the weights.

    source_dev (and last/average, for logging and early stopping): the training languages, as in
    XTREME; every dev language when none of them has a dev set. target_dev: the languages not trained on.
    """
    if select == "target_dev":
        targets = [lang for lang in dev_langs if lang not in train_langs]
        if not targets:
            raise ConfigError(
                f"trainer.select: target_dev needs a dev set in a language not trained on "
                f"(dev languages: {', '.join(dev_langs) or 'none'}; trained on: {', '.join(train_langs)})"
            )
        return targets
    return [lang for lang in dev_langs if lang in train_langs] or list(dev_langs)


def selection_score(dev: dict[str, dict[str, Any]], metric: str, langs: list[str]) -> float | None:
    """Mean `metric` over the dev sets of `langs` (see selection_langs)."""
    present = [lang for lang in langs if lang in dev]
    if not present:
        return None
    return sum(dev[lang][metric] for lang in present) / len(present)


@dataclass
class Chosen:
    """Where the run's final weights come from (by `trainer.select`)."""

    source: Literal["last", "best", "average"]
    dirs: list[Path]
    """The checkpoint folder(s) to read: best/, or the step checkpoints to average."""
    steps: list[int | None]
    """The step(s) the final weights come from."""


def final_weights(select: str, checkpoints: Path, average_last: int, best_step: int | None) -> Chosen:
    """The final model of the run by `trainer.select` (best by dev score, last, or an average)."""
    if select == "last":
        return Chosen("last", [], [None])
    if select == "average":
        dirs = checkpoint.step_dirs(checkpoints)[-average_last:]
        return Chosen("average", dirs, [int(d.name.split("-")[1]) for d in dirs])
    # The best checkpoint by the selection score (the last weights when nothing was evaluated).
    return Chosen("best", [checkpoints / checkpoint.BEST], [best_step])


def restore(model: Any, chosen: Chosen) -> None:
    """Loads the chosen weights into `model` (the unwrapped model; a PeftModel's best/ holds only its adapter)."""
    if chosen.source == "average":
        load_weights(model, checkpoint.average_weights(chosen.dirs))
    elif chosen.source == "best" and is_peft(model):
        load_adapter_weights(model, chosen.dirs[0])
    elif chosen.source == "best":
        load_weights(model, load_file(chosen.dirs[0] / checkpoint.MODEL_FILE))


def load_weights(model: Any, weights: dict[str, Any]) -> None:
    """Loads saved weights; a tensor tied to another (a masked-LM decoder is the input embeddings) is saved once
    by save_pretrained, so its second name may be missing, and nothing else may."""
    missing, unexpected = model.load_state_dict(weights, strict=False)
    first_name: dict[int, str] = {}
    tied = set()
    for name, tensor in model.state_dict(keep_vars=True).items():
        if first_name.setdefault(tensor.data_ptr(), name) != name:
            tied.add(name)
    untied = [name for name in missing if name not in tied]
    if untied or unexpected:
        raise RuntimeError(f"saved weights do not fit the model (missing {untied}, unexpected {list(unexpected)})")
