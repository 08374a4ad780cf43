"""Encoded features kept on disk, so that a second run on the same data and tokenizer skips tokenization.

A cache entry is named by a hash of everything the features depend on: the tokenizer's serialized
vocabulary and settings, the task type's cache key (its encoding settings, such as labels,
max_length and stride, and the source of its encoding code), the language, and the content of the
examples (every field, whatever the task type). Changing any of them
makes a new entry; an entry is never updated in place. Entries are safetensors files (flat arrays
plus offsets), written atomically; nothing is unpickled. Deleting the folder is always safe; past
$MLFT_FEATURE_CACHE_GB gigabytes (default 10) the least recently used entries are deleted.
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from mlft.data.readers import LOCATION
from mlft.destinations import share
from mlft.models.cache import cache_root

log = logging.getLogger("mlft")

# Feature values the format can hold (one int or float, a list of them, a list of int pairs) and their dtype.
KINDS = {"int": np.int64, "float": np.float64, "ints": np.int64, "floats": np.float64, "pairs": np.int64}


DEFAULT_LIMIT_GB = 10.0


def feature_cache_dir() -> Path:
    """$MLFT_FEATURE_CACHE, else the features/ folder of mlft's cache (see mlft.models.cache.cache_root)."""
    return Path(os.environ.get("MLFT_FEATURE_CACHE") or cache_root() / "features")


class Encodes(Protocol):
    """What the cache needs from a task type (mlft.tasks.protocol.Task has it)."""

    def cache_key(self) -> str: ...

    def encode(self, examples: list[dict[str, Any]], tokenizer: Any, lang: str) -> list[dict[str, Any]]: ...


def encoding_key(task: Encodes, tokenizer: Any) -> str | None:
    """What every entry of one task and tokenizer shares; None when the tokenizer cannot be serialized (slow ones)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    digest = hashlib.blake2b(digest_size=20)
    # The task type names its encoding settings and code itself (batching settings are not among them).
    digest.update(json.dumps([task.cache_key(), type(tokenizer).__name__]).encode())
    # Truncation and padding are call state that the last tokenizer call left behind, not part of the tokenizer.
    serialized = {k: v for k, v in json.loads(backend.to_str()).items() if k not in ("truncation", "padding")}
    digest.update(json.dumps(serialized, sort_keys=True).encode())
    digest.update(json.dumps(tokenizer.special_tokens_map, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def entry_name(encoding: str, examples: list[dict[str, Any]], lang: str) -> str:
    """The entry for these examples in this language, under one encoding key: every field of every example counts
    (whatever fields the task type has), only where an example was read from does not."""
    content = [{k: v for k, v in ex.items() if k not in LOCATION} for ex in examples]
    text = json.dumps([encoding, lang, content], ensure_ascii=False, sort_keys=True, default=repr)
    return hashlib.blake2b(text.encode(), digest_size=20).hexdigest()


def _flat(values: list[Any]) -> tuple[str, np.ndarray] | None:
    """One feature key's values across all features as a flat array and their kind; None if not storable."""
    first = values[0]
    if isinstance(first, list):
        items = [x for v in values for x in v]
        kind = {int: "ints", float: "floats", tuple: "pairs"}.get(type(items[0]), "") if items else "ints"
    else:
        items, kind = values, {int: "int", float: "float"}.get(type(first), "")
    if not kind:
        return None
    # numpy infers the type from every item: int64 only if all are ints (bools give bool, None gives object,
    # a list among scalars an extra dimension or a ValueError).
    try:
        array = np.array(items)
    except ValueError:
        return None
    expected = (np.int64, 2) if kind == "pairs" else (KINDS[kind], 1)
    if items and (array.dtype != expected[0] or array.ndim != expected[1]):
        return None
    return kind, array.astype(KINDS[kind]).reshape((-1, 2) if kind == "pairs" else (-1,))


def to_arrays(features: list[dict[str, Any]]) -> tuple[dict[str, np.ndarray], dict[str, str]] | None:
    """Flat arrays (and offsets for list values) per feature key, plus each key's kind; None if not storable."""
    if not features or any(f.keys() != features[0].keys() for f in features):
        return None
    arrays: dict[str, np.ndarray] = {}
    kinds: dict[str, str] = {}
    for key in features[0]:
        values = [f[key] for f in features]
        flat = _flat(values)
        if flat is None:
            return None
        kinds[key], arrays[key] = flat
        if kinds[key] not in ("int", "float"):
            if not all(isinstance(v, list) for v in values):
                return None
            arrays[key + ".offsets"] = np.cumsum([0] + [len(v) for v in values], dtype=np.int64)
    return arrays, kinds


def from_arrays(arrays: dict[str, np.ndarray], kinds: dict[str, str]) -> list[dict[str, Any]]:
    """The features `to_arrays` stored, as the same Python values (lists of ints, tuples, ...)."""
    columns: dict[str, list[Any]] = {}
    for key, kind in kinds.items():
        array = arrays[key]
        # Building pairs from two flat columns is several times faster than tolist() of an (n, 2) array.
        values = list(zip(array[:, 0].tolist(), array[:, 1].tolist())) if kind == "pairs" else array.tolist()
        if kind in ("int", "float"):
            columns[key] = values
            continue
        offsets = arrays[key + ".offsets"].tolist()
        columns[key] = [values[a:b] for a, b in zip(offsets[:-1], offsets[1:])]
    n = len(next(iter(columns.values())))
    return [{key: column[i] for key, column in columns.items()} for i in range(n)]


class Encoder:
    """`task.encode` through the cache in `folder` (None: no cache), counting how many calls it answered."""

    def __init__(self, task: Encodes, tokenizer: Any, folder: Path | None):
        self.task, self.tokenizer, self.folder = task, tokenizer, folder
        self.calls = self.hits = 0
        # Serializing the tokenizer (MBs for a 250k vocabulary) is done once, not once per set.
        self.encoding = encoding_key(task, tokenizer) if folder is not None else None

    def __call__(self, examples: list[dict[str, Any]], lang: str) -> list[dict[str, Any]]:
        self.calls += 1
        if self.encoding is None or self.folder is None or not examples:
            return self.task.encode(examples, self.tokenizer, lang)
        path = self.folder / f"{entry_name(self.encoding, examples, lang)}.safetensors"
        if path.is_file():
            try:
                features = _load(path)
                self.hits += 1
                path.touch()  # recently used: pruned last
                return features
            except Exception as err:  # noqa: BLE001 - a damaged entry is rebuilt, never trusted
                log.warning("feature cache: ignoring unreadable %s (%s)", path, err)
        features = self.task.encode(examples, self.tokenizer, lang)
        _save(features, path)
        prune(self.folder, float(os.environ.get("MLFT_FEATURE_CACHE_GB") or DEFAULT_LIMIT_GB), keep=path)
        return features


def prune(folder: Path, limit_gb: float, keep: Path) -> None:
    """Deletes the least recently used entries but `keep` until the folder holds at most `limit_gb` gigabytes."""
    entries = []
    for path in set(folder.glob("*.safetensors")) - {keep}:
        try:
            stat = path.stat()
        except OSError:  # deleted meanwhile by another process
            continue
        entries.append((stat.st_mtime, stat.st_size, path))
    total = sum(size for _, size, _ in entries) + (keep.stat().st_size if keep.exists() else 0)
    for _, size, path in sorted(entries):
        if total <= limit_gb * 1e9:
            break
        path.unlink(missing_ok=True)
        total -= size


def _load(path: Path) -> list[dict[str, Any]]:
    with safe_open(str(path), framework="numpy") as f:
        kinds = json.loads((f.metadata() or {})["kinds"])
        arrays = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118 - safe_open is not iterable
    # Millions of new small objects and no garbage: the cyclic collector's passes would double the time.
    gc.disable()
    try:
        return from_arrays(arrays, kinds)
    finally:
        gc.enable()


def _save(features: list[dict[str, Any]], path: Path) -> None:
    stored = to_arrays(features)
    if stored is None:
        return
    arrays, kinds = stored
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        save_file(arrays, str(tmp), metadata={"kinds": json.dumps(kinds)})
        share(tmp)  # a cache folder shared by several users stays readable to them
        tmp.replace(path)  # atomic: a concurrent reader sees the whole entry or none
    except OSError as err:  # a cache that cannot be written only costs the next run its tokenization
        log.warning("feature cache: could not write %s (%s)", path, err)
