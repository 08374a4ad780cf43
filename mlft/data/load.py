"""Loads the splits of a run per language, converts label schemes and fixes the label set."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from mlft.config import ALL_LANGS, DataConfig, TaskConfig, resolve_langs
from mlft.data.builtin import read_builtin
from mlft.data.hub import read_hub
from mlft.data.labelmap import apply_label_map
from mlft.data.readers import Example, read_file
from mlft.data.schemes import iob2_labels, split_tag, to_iob2
from mlft.errors import ConfigError, DataError

SPLITS = ("train", "dev", "test")
Splits = dict[str, dict[str, list[Example]]]  # split -> language -> examples


@dataclass
class LoadedData:
    splits: Splits
    labels: list[str]
    sources: dict[str, str]
    """'split/lang' -> the source it was read from (for env.json)."""
    dropped: dict[str, int]
    """Labels the task's label map dropped -> occurrences (entities or examples)."""

    @property
    def train_langs(self) -> list[str]:
        return list(self.splits["train"])


def read_source(
    source: str, split: str, data: DataConfig, token_task: bool, columns: dict[str, str] | None = None
) -> list[Example]:
    """Reads one split of a source: builtin:<corpus>, hub:<id>, or a local file."""
    columns = {**vars(data.columns), **(columns or {})}
    source = source.replace("{split}", split)
    if source.startswith("builtin:"):
        return read_builtin(source, split)
    if source.startswith("hub:"):
        return read_hub(source, split, columns, token_task)
    return read_file(
        Path(source), data.format, columns, token_task, data.token_column, data.tag_column, data.label_separator
    )


def convert_tags(examples: list[Example], scheme: str, repair: bool) -> None:
    """Converts tags in place to IOB2; every invalid transition is reported as file:line."""
    problems = []
    for ex in examples:
        tags, found = to_iob2(ex["tags"], scheme, repair=repair)
        ex["tags"] = tags
        for p in found:
            # Column files have one token per line, so the token's own line can be named.
            where = f"{ex['file']}:{ex['first_line'] + p.index}" if "first_line" in ex else ex["loc"]
            fix = "data.repair=true repairs it" if p.repairable else "fix the tag, or set data.scheme to the file's"
            problems.append(f"{where}: {p.message} (data.scheme={scheme}; {fix})")
    if problems:
        raise DataError(problems)


def filter_training(examples: list[Example], data: DataConfig, token_task: bool) -> list[Example]:
    """Length limit and (NER) a seeded subsample of the sentences without entities, before max_train_samples."""
    if data.max_train_length is not None:
        examples = [ex for ex in examples if len(ex["tokens"] if token_task else ex["text"]) <= data.max_train_length]
    if token_task and data.keep_entityless < 1.0:
        rng = random.Random(0)
        examples = [ex for ex in examples if any(t != "O" for t in ex["tags"]) or rng.random() < data.keep_entityless]
    return examples


def _split_by_lang(examples: list[Example], langs: list[str], source: str, key: str) -> dict[str, list[Example]]:
    """Groups examples by their language column; without one they all belong to langs[0] ('und' for [all])."""
    default = "und" if langs == [ALL_LANGS] else langs[0]
    if not any("lang" in ex for ex in examples):
        if len(langs) > 1:
            raise ConfigError(
                f"{key}: {source} has no language column, so it serves one language, but {key}={langs}; "
                "add a 'lang' field (data.columns.lang) or use per-language datasets (task.datasets)"
            )
        return {default: examples}
    grouped: dict[str, list[Example]] = {}
    for ex in examples:
        grouped.setdefault(ex.get("lang", default), []).append(ex)
    return {lang: exs for lang, exs in grouped.items() if langs == [ALL_LANGS] or lang in langs}


def collect_labels(train: list[Example], token_task: bool) -> list[str]:
    if token_task:
        types = {split_tag(t)[1] for ex in train for t in ex["tags"] if t != "O"}
        return iob2_labels(sorted(types))
    found: set[str] = set()
    for ex in train:
        found.update(ex["label"] if isinstance(ex["label"], list) else [ex["label"]])
    return sorted(found)


def check_training_labels(train: dict[str, list[Example]], token_task: bool, multi_label: bool) -> None:
    """Training data a model cannot learn from: no entity at all, one class only, a list where one label belongs."""
    examples = [ex for exs in train.values() for ex in exs]
    if not examples:
        return
    where = examples[0]["loc"].rsplit(":", 1)[0]
    if token_task:
        if all(t == "O" for ex in examples for t in ex["tags"]):
            raise DataError(f"{where}: the training data has no entities (every tag is O); nothing to learn")
        return
    if multi_label:
        return
    lists = [ex["loc"] for ex in examples if isinstance(ex["label"], list)]
    if lists:
        raise DataError(
            [f"{loc}: the label is a list, but task.multi_label is false (one label per text)" for loc in lists[:20]]
        )
    classes = sorted({ex["label"] for ex in examples})
    if len(classes) < 2:
        raise DataError(
            f"{where}: every training example has the label {classes[0]!r}; a classifier needs at least two classes"
        )


def check_labels(splits: Splits, labels: list[str], token_task: bool) -> None:
    """Reports labels outside the label set (dev/test labels training never saw could never be predicted)."""
    known = set(labels)
    problems = []
    for split in SPLITS:
        for exs in splits.get(split, {}).values():
            for ex in exs:
                values = (
                    ex["tags"] if token_task else (ex["label"] if isinstance(ex["label"], list) else [ex["label"]])
                )
                unknown = sorted({v for v in values if v not in known})
                if unknown:
                    problems.append(f"{ex['loc']}: label(s) {', '.join(unknown)} not in the training labels")
    if problems:
        raise DataError(problems[:20] + ([f"... {len(problems) - 20} more"] if len(problems) > 20 else []))


def load_data(
    data: DataConfig, task: TaskConfig, train_langs: list[str], eval_langs: list[str], need_train: bool = True
) -> LoadedData:
    """Reads train (for `train_langs`) and dev/test (for `eval_langs`) into standard examples."""
    token_task = task.type == "token_classification"
    splits: Splits = {s: {} for s in SPLITS}
    sources: dict[str, str] = {}
    # Files given on the command line replace the task's packaged datasets for every split: a user's
    # training file is never silently evaluated on another corpus's dev or test set.
    use_task_datasets = all(getattr(data, split) is None for split in SPLITS)
    if use_task_datasets:
        train_langs = resolve_langs(train_langs, task, "lang.train") if need_train else train_langs
        eval_langs = resolve_langs(eval_langs, task, "lang.eval")
    for split in SPLITS if need_train else ("dev", "test"):
        langs = train_langs if split == "train" else eval_langs
        explicit = getattr(data, split)
        if explicit is not None:
            examples = read_source(explicit, split, data, token_task)
            key = "lang.train" if split == "train" else "lang.eval"
            for lang, exs in _split_by_lang(examples, langs, explicit, key).items():
                splits[split][lang] = exs
                sources[f"{split}/{lang}"] = explicit
            continue
        for lang in langs if use_task_datasets else []:
            splits[split][lang] = read_source(task.datasets[lang], split, data, token_task, task.columns)
            sources[f"{split}/{lang}"] = task.datasets[lang]
    limit = {"train": data.max_train_samples, "dev": data.max_dev_samples, "test": data.max_test_samples}
    dropped: Counter = Counter()
    for split, by_lang in splits.items():
        for lang, exs in by_lang.items():
            # Packaged corpora are IOB2 already; data.scheme describes the user's own files.
            scheme = "IOB2" if sources.get(f"{split}/{lang}", "").startswith("builtin:") else data.scheme
            if task.label_map is not None:
                # Mapped before filtering, so that data.keep_entityless sees only the entities that remain.
                if token_task:
                    convert_tags(exs, scheme, data.repair)
                one = {split: {lang: exs}}
                dropped.update(apply_label_map(one, task.label_map, token_task))
                exs = one[split][lang]
            if split == "train":
                exs = filter_training(exs, data, token_task)
            by_lang[lang] = exs[: limit[split]] if limit[split] is not None else exs
            if token_task and task.label_map is None:
                convert_tags(by_lang[lang], scheme, data.repair)
    if need_train and not any(splits["train"].values()):
        raise DataError("no training examples were read (check data.train and lang.train)")
    if need_train:
        check_training_labels(splits["train"], token_task, task.multi_label)
    labels = task.labels or collect_labels([ex for exs in splits["train"].values() for ex in exs], token_task)
    if token_task and task.labels:
        labels = iob2_labels(sorted({split_tag(t)[1] for t in task.labels if t != "O"}))
    check_labels(splits, labels, token_task)
    return LoadedData(splits=splits, labels=labels, sources=sources, dropped=dict(dropped))
