"""A task's label map: corpora with different label names share one label space (WNUT-16 person -> PER).

A label is covered when it is a key of the map (renamed, or dropped when mapped to null) or already
one of its targets (MSRA's PER next to WNUT-16's person). Any other label is an error that names it
and where it occurs: a label silently dropped would quietly change what the model learns. What a
label is (an entity type inside IOB tags, a class) the task type says.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Protocol

from mlft.data.readers import Example
from mlft.errors import DataError

Splits = dict[str, dict[str, list[Example]]]


class Relabels(Protocol):
    """What a label map needs from a task type (mlft.tasks.protocol.Task has it)."""

    def label_names(self, example: Example) -> list[str]: ...

    def relabel(self, example: Example, mapping: dict[str, str | None], dropped: Counter) -> Example | None: ...


def uncovered(splits: Splits, label_map: dict[str, str | None], task: Relabels) -> dict[str, str]:
    """Labels the map does not cover -> the first place each occurs."""
    targets = {v for v in label_map.values() if v is not None}
    found: dict[str, str] = {}
    for by_lang in splits.values():
        for exs in by_lang.values():
            for ex in exs:
                for label in task.label_names(ex):
                    if label not in label_map and label not in targets:
                        found.setdefault(label, ex["loc"])
    return found


def apply_label_map(splits: Splits, label_map: dict[str, str | None], task: Any) -> dict[str, int]:
    """Renames labels in place; examples left without a label are dropped. Returns dropped label -> count."""
    missing = uncovered(splits, label_map, task)
    if missing:
        raise DataError(
            [f"{loc}: label {label!r} is not in task.label_map" for label, loc in sorted(missing.items())]
            + [
                f"task.label_map: add {', '.join(sorted(missing))} as keys "
                "(a label of the shared space, or null to drop it)"
            ]
        )
    dropped: Counter = Counter()
    for by_lang in splits.values():
        for lang, exs in by_lang.items():
            mapped = [task.relabel(ex, label_map, dropped) for ex in exs]
            by_lang[lang] = [ex for ex in mapped if ex is not None]
    return dict(dropped)
