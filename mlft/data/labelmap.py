"""A task's label map: corpora with different label names share one label space (WNUT-16 person -> PER).

A label is covered when it is a key of the map (renamed, or dropped when mapped to null) or already
one of its targets (MSRA's PER next to WNUT-16's person). Any other label is an error that names it
and where it occurs: a label silently dropped would quietly change what the model learns.
"""

from __future__ import annotations

from collections import Counter

from mlft.data.readers import Example
from mlft.data.schemes import split_tag
from mlft.errors import DataError

Splits = dict[str, dict[str, list[Example]]]


def _labels_of(ex: Example, token_task: bool) -> list[str]:
    if token_task:
        return [split_tag(t)[1] for t in ex["tags"] if t != "O"]
    return ex["label"] if isinstance(ex["label"], list) else [ex["label"]]


def uncovered(splits: Splits, label_map: dict[str, str | None], token_task: bool) -> dict[str, str]:
    """Labels the map does not cover -> the first place each occurs."""
    targets = {v for v in label_map.values() if v is not None}
    found: dict[str, str] = {}
    for by_lang in splits.values():
        for exs in by_lang.values():
            for ex in exs:
                for label in _labels_of(ex, token_task):
                    if label not in label_map and label not in targets:
                        found.setdefault(label, ex["loc"])
    return found


def _map_tags(tags: list[str], label_map: dict[str, str | None], dropped: Counter) -> list[str]:
    out = []
    for tag in tags:
        if tag == "O":
            out.append(tag)
            continue
        prefix, label = split_tag(tag)
        target = label_map.get(label, label)
        if target is None:
            dropped[label] += prefix == "B"  # counted once per entity
            out.append("O")
        else:
            out.append(f"{prefix}-{target}")
    return out


def apply_label_map(splits: Splits, label_map: dict[str, str | None], token_task: bool) -> dict[str, int]:
    """Renames labels in place (IOB2 tags or class labels); returns dropped label -> entities/examples."""
    missing = uncovered(splits, label_map, token_task)
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
            kept = []
            for ex in exs:
                if token_task:
                    ex["tags"] = _map_tags(ex["tags"], label_map, dropped)
                    kept.append(ex)
                    continue
                labels = ex["label"] if isinstance(ex["label"], list) else [ex["label"]]
                mapped = [label_map.get(label, label) for label in labels]
                dropped.update(label for label, target in zip(labels, mapped) if target is None)
                mapped = [m for m in mapped if m is not None]
                if isinstance(ex["label"], list):
                    ex["label"] = mapped
                    kept.append(ex)
                elif mapped:
                    ex["label"] = mapped[0]
                    kept.append(ex)
            by_lang[lang] = kept
    return dict(dropped)
