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


def parse_hub_spec(spec: str) -> tuple[str, str | None, str | None]:
    """'hub:owner/name/config@split' -> ('owner/name', 'config', 'split'); a local path is returned whole. The
    split, when given, is read whichever split mlft asks for (XQuAD's only split is `validation`, its test set)."""
    rest = spec.removeprefix("hub:")
    if Path(rest).exists():
        return rest, None, None
    rest, _, split = rest.partition("@")
    parts = rest.split("/")
    if len(parts) == 3:
        return "/".join(parts[:2]), parts[2], split or None
    return rest, None, split or None


def _class_names(features: Any) -> dict[str, list[str]]:
    """Columns stored as class ids (ClassLabel, or a sequence of them) -> their names."""
    names = {}
    for column, feature in features.items():
        inner = getattr(feature, "feature", feature)
        if hasattr(inner, "names"):
            names[column] = list(inner.names)
    return names


def _resolve_columns(
    columns: dict[str, Any], fallbacks: dict[str, tuple[str, ...]], present: list[str]
) -> dict[str, Any]:
    """The column of each field: the configured one (by default named like the field), else the first of the
    field's usual hub names that the dataset has."""
    resolved = dict(columns)
    for key, names in fallbacks.items():
        if resolved.get(key, key) not in present:
            found = next((name for name in names if name in present), None)
            if found is not None:
                resolved[key] = found
    return resolved


def read_hub(spec: str, split: str, columns: dict[str, Any], fallbacks: dict[str, tuple[str, ...]]) -> Source:
    """Loads one split of a hub (or local) dataset; class ids become their names."""
    import datasets

    path, config, fixed = parse_hub_spec(spec)
    try:
        dataset_dict = datasets.load_dataset(path, config)
    except RuntimeError as err:  # datasets 4+ refuses loading scripts (and never runs them: good)
        raise DataError(
            f"{spec}: cannot load dataset: {str(err).splitlines()[0][:200]}; dataset scripts are not run, "
            "use a copy in data files (parquet, JSON, CSV) instead"
        ) from None
    except (FileNotFoundError, ValueError, ConnectionError) as err:
        raise DataError(
            f"{spec}: cannot load dataset ({type(err).__name__}: {str(err).splitlines()[0][:200]})"
        ) from None
    wanted = (fixed,) if fixed else SPLIT_NAMES[split]
    name = next((n for n in wanted if n in dataset_dict), None)
    if name is None:
        raise DataError(f"{spec}: no {fixed or split} split (splits: {', '.join(dataset_dict)})")
    dataset = dataset_dict[name]
    names = _class_names(dataset.features)
    records = []
    for i, row in enumerate(dataset):
        for column, labels in names.items():
            value = row[column]
            row[column] = [labels[v] for v in value] if isinstance(value, list) else labels[value]
        records.append(Record(row, f"{spec}[{name}]:{i + 1}"))
    return Source(records, _resolve_columns(columns, fallbacks, dataset.column_names))
