"""HuggingFace datasets as a source: `hub:<owner>/<name>[/<config>]`, or a local dataset folder/file.

Local paths go through `datasets.load_dataset` too, so the hub code path is tested offline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlft.data.readers import Record, Source
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


def _class_names(features: Any) -> dict[str, list[str]]:
    """Columns stored as class ids (ClassLabel, or a sequence of them) -> their names."""
    names = {}
    for column, feature in features.items():
        inner = getattr(feature, "feature", feature)
        if hasattr(inner, "names"):
            names[column] = list(inner.names)
    return names


def _resolve_columns(columns: dict[str, Any], present: list[str]) -> dict[str, Any]:
    resolved = dict(columns)
    for key, fallbacks in FALLBACKS.items():
        if resolved.get(key) not in present:
            resolved[key] = next((f for f in fallbacks if f in present), resolved.get(key))
    if resolved.get("text_pair") not in present:
        resolved["text_pair"] = None
    return resolved


def read_hub(spec: str, split: str, columns: dict[str, Any]) -> Source:
    """Loads one split of a hub (or local) dataset; class ids become their names."""
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
    names = _class_names(dataset.features)
    records = []
    for i, row in enumerate(dataset):
        for column, labels in names.items():
            value = row[column]
            row[column] = [labels[v] for v in value] if isinstance(value, list) else labels[value]
        records.append(Record(row, f"{spec}[{name}]:{i + 1}"))
    return Source(records, _resolve_columns(columns, dataset.column_names))
