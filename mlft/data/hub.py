"""HuggingFace datasets as a source: `hub:<owner>/<name>[/<config>]`, or a local dataset folder/file.

Local paths go through `datasets.load_dataset` too, so the hub code path is tested offline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlft.data.readers import Example, record_to_example
from mlft.errors import DataError

# mlft split name -> names datasets use for it, in order of preference.
SPLIT_NAMES = {"train": ("train",), "dev": ("validation", "dev", "valid"), "test": ("test",)}
# Fallback column names of common hub datasets.
FALLBACKS = {
    "tags": ("ner_tags",),
    "text": ("sentence", "premise", "sentence1"),
    "text_pair": ("hypothesis", "sentence2"),
}


def parse_hub_spec(spec: str) -> tuple[str, str | None]:
    """'hub:owner/name/config' -> ('owner/name', 'config'); a local path is returned whole."""
    rest = spec.removeprefix("hub:")
    if Path(rest).exists():
        return rest, None
    parts = rest.split("/")
    if len(parts) == 3:
        return "/".join(parts[:2]), parts[2]
    return rest, None


def _label_names(features: Any, column: str) -> list[str] | None:
    feature = features.get(column)
    inner = getattr(feature, "feature", feature)
    return list(inner.names) if hasattr(inner, "names") else None


def _resolve_columns(columns: dict[str, Any], present: list[str], token_task: bool) -> dict[str, Any]:
    resolved = dict(columns)
    for key, fallbacks in FALLBACKS.items():
        if resolved.get(key) not in present:
            resolved[key] = next((f for f in fallbacks if f in present), resolved.get(key))
    if resolved.get("text_pair") not in present:
        resolved["text_pair"] = None
    return resolved


def read_hub(spec: str, split: str, columns: dict[str, Any], token_task: bool) -> list[Example]:
    """Loads one split of a hub (or local) dataset and maps it to standard examples."""
    import datasets

    path, config = parse_hub_spec(spec)
    try:
        dataset_dict = datasets.load_dataset(path, config)
    except (FileNotFoundError, ValueError, ConnectionError) as err:
        raise DataError(
            f"{spec}: cannot load dataset ({type(err).__name__}: {str(err).splitlines()[0][:200]})"
        ) from None
    name = next((n for n in SPLIT_NAMES[split] if n in dataset_dict), None)
    if name is None:
        raise DataError(f"{spec}: no {split} split (splits: {', '.join(dataset_dict)})")
    dataset = dataset_dict[name]
    cols = _resolve_columns(columns, dataset.column_names, token_task)
    label_column = cols["tags"] if token_task else cols["label"]
    names = _label_names(dataset.features, label_column)
    examples = []
    for i, record in enumerate(dataset):
        if names is not None:
            value = record[label_column]
            record[label_column] = [names[v] for v in value] if isinstance(value, list) else names[value]
        examples.append(record_to_example(record, cols, token_task, f"{spec}[{name}]:{i + 1}"))
    return examples
