"""Loads the splits of a run per language: reads every source, lets the task type make and check its examples,
converts label schemes, applies the label map, filters and limits, and fixes the label set.

Which fields an example has and what its labels are is the task type's business (`ExampleRules`, which
mlft.tasks.protocol.Task satisfies); this module only orchestrates.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from mlft.config import ALL_LANGS, DataConfig, TaskConfig, dataset_source, resolve_langs
from mlft.data.builtin import read_builtin
from mlft.data.hub import read_hub
from mlft.data.labelmap import apply_label_map
from mlft.data.readers import LOCATION, Cells, Example, Source, detect_format, from_examples, lone_surrogate, read_file
from mlft.errors import ConfigError, DataError

SPLITS = ("train", "dev", "test")
LANG = "lang"
"""The column that gives a record its language (data.columns.lang renames it), whatever the task."""
Splits = dict[str, dict[str, list[Example]]]  # split -> language -> examples


class ExampleRules(Protocol):
    """What loading needs from a task type (see mlft.tasks.protocol.Task for each member's meaning)."""

    name: str
    plain_files: str | None
    fields: tuple[str, ...]
    optional_fields: tuple[str, ...]
    column_fallbacks: dict[str, tuple[str, ...]]

    def example(self, record: dict[str, Any], columns: dict[str, Any], loc: str, cells: Cells | None) -> Example: ...

    def convert_labels(self, examples: list[Example], scheme: str, repair: bool) -> None: ...

    def label_names(self, example: Example) -> list[str]: ...

    def relabel(self, example: Example, mapping: dict[str, str | None], dropped: Counter) -> Example | None: ...

    def label_values(self, example: Example) -> list[str]: ...

    def label_set(self, names: list[str], given: bool) -> list[str]: ...

    def training_problems(self, train: list[Example]) -> list[str]: ...

    def filter_training(
        self, examples: list[Example], max_length: int | None, keep_unlabelled: float
    ) -> list[Example]: ...


@dataclass
class LoadedData:
    splits: Splits
    labels: list[str]
    sources: dict[str, str]
    """'split/lang' -> the source it was read from (for env.json)."""

    dropped: dict[str, int]
    """Labels the task's label map dropped -> occurrences (entities or examples)."""
    contents: dict[str, str] = field(default_factory=dict)
    """'split/lang' -> a fingerprint of the examples read, for sources that are no local file (a packaged corpus,
    a hub dataset): what env.json records, since their name says nothing of their content."""

    @property
    def train_langs(self) -> list[str]:
        return list(self.splits["train"])

    @property
    def eval_langs(self) -> list[str]:
        return list(dict.fromkeys(lang for split in ("dev", "test") for lang in self.splits.get(split, {})))


def read_source(source: str, split: str, data: DataConfig, rules: ExampleRules, columns: dict[str, Any]) -> Source:
    """Reads one split of a source: builtin:<corpus>, hub:<id>, or a local file."""
    source = source.replace("{split}", split)
    if source.startswith("builtin:"):
        return from_examples(read_builtin(source, split))
    if source.startswith("hub:"):
        return read_hub(source, split, columns, rules.column_fallbacks)
    path = Path(source)
    fmt = detect_format(path, rules.plain_files or "conll") if data.format == "auto" else data.format
    if fmt in ("conll", "text") and rules.plain_files is None:
        kind = "a CoNLL column file" if fmt == "conll" else "a text file (one text per line)"
        where = f"{path}:1: read as {kind} (by its suffix, or data.format)"
        raise DataError(f"{where}; {rules.name} reads JSONL, CSV or TSV")
    return read_file(path, fmt, columns, data.token_column, data.tag_column, data.label_separator)


def to_examples(source: Source, rules: ExampleRules) -> list[Example]:
    """The task type's examples of a source's records, with their location and language; every problem at once."""
    if source.header is not None:
        wanted = [source.columns.get(f) or f for f in rules.fields]
        missing = [c for c in wanted if c not in source.header]
        if missing:
            where = source.records[0].loc.rsplit(":", 1)[0] if source.records else "table"
            raise DataError(f"{where}:1: missing column(s) {', '.join(missing)} (header: {', '.join(source.header)})")
    examples, problems = [], list(source.problems)
    lang_column = source.columns.get(LANG, LANG)
    for record in source.records:
        try:
            example = rules.example(record.values, source.columns, record.loc, source.cells)
        except DataError as err:
            problems += err.problems
            continue
        problem = next(filter(None, map(lone_surrogate, _strings(example))), None)
        if problem:
            problems.append(f"{record.loc}: {problem}")
            continue
        example["loc"] = record.loc
        if record.first_line is not None:
            example["file"], example["first_line"] = record.loc.rsplit(":", 1)[0], record.first_line
        if lang_column and record.values.get(lang_column) is not None:
            example["lang"] = str(record.values[lang_column])
        examples.append(example)
    if problems:
        raise DataError(sorted(problems, key=_line))
    return examples


def _line(problem: str) -> int:
    """The line a `file:line: ...` problem names (problems are reported in file order)."""
    match = re.match(r".*?:(\d+):", problem)
    return int(match.group(1)) if match else 0


def _strings(example: Example) -> list[str]:
    """Every string an example holds (text, tokens, labels)."""
    found: list[str] = []
    for value in example.values():
        if isinstance(value, str):
            found.append(value)
        elif isinstance(value, list):
            found += [v for v in value if isinstance(v, str)]
    return found


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


def check_labels(splits: Splits, labels: list[str], rules: ExampleRules) -> None:
    """Reports labels outside the label set (dev/test labels training never saw could never be predicted)."""
    known = set(labels)
    problems = []
    for split in SPLITS:
        for exs in splits.get(split, {}).values():
            for ex in exs:
                unknown = sorted({v for v in rules.label_values(ex) if v not in known})
                if unknown:
                    problems.append(f"{ex['loc']}: label(s) {', '.join(unknown)} not in the training labels")
    if problems:
        raise DataError(problems[:20] + ([f"... {len(problems) - 20} more"] if len(problems) > 20 else []))


def load_data(
    data: DataConfig,
    task: TaskConfig,
    rules: ExampleRules,
    train_langs: list[str],
    eval_langs: list[str],
    need_train: bool = True,
) -> LoadedData:
    """Reads train (for `train_langs`) and dev/test (for `eval_langs`) into the task type's examples."""
    splits: Splits = {s: {} for s in SPLITS}
    sources: dict[str, str] = {}
    columns = {field: column for field, column in data.columns.items() if column}
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
            examples = to_examples(read_source(explicit, split, data, rules, columns), rules)
            key = "lang.train" if split == "train" else "lang.eval"
            for lang, exs in _split_by_lang(examples, langs, explicit, key).items():
                splits[split][lang] = exs
                sources[f"{split}/{lang}"] = explicit
            continue
        for lang in langs if use_task_datasets else []:
            given = dataset_source(task, lang, split)
            if given is None:  # a language with a dataset for some splits only (evaluated, not trained on)
                continue
            source = read_source(given, split, data, rules, {**columns, **task.columns})
            splits[split][lang] = to_examples(source, rules)
            sources[f"{split}/{lang}"] = given
    limit = {"train": data.max_train_samples, "dev": data.max_dev_samples, "test": data.max_test_samples}
    dropped: Counter = Counter()
    for split, by_lang in splits.items():
        for lang, exs in by_lang.items():
            for ex in exs:  # every example knows its language (scoring may depend on it: QA's normalisation)
                ex.setdefault(LANG, lang)
            # Packaged corpora are IOB2 already; data.scheme describes the user's own files.
            scheme = "IOB2" if sources.get(f"{split}/{lang}", "").startswith("builtin:") else data.scheme
            if task.label_map is not None:
                # Mapped before filtering, so that data.keep_entityless sees only the labels that remain.
                rules.convert_labels(exs, scheme, data.repair)
                one = {split: {lang: exs}}
                dropped.update(apply_label_map(one, task.label_map, rules))
                exs = one[split][lang]
            if split == "train":
                exs = rules.filter_training(exs, data.max_train_length, data.keep_entityless)
            by_lang[lang] = exs[: limit[split]] if limit[split] is not None else exs
            if task.label_map is None:
                rules.convert_labels(by_lang[lang], scheme, data.repair)
    train = [ex for exs in splits["train"].values() for ex in exs]
    if need_train and not train:
        raise DataError("no training examples were read (check data.train and lang.train)")
    scored = {lang for split in ("dev", "test") for lang in splits[split]}
    unscored = [lang for lang in eval_langs if lang not in (ALL_LANGS, *splits["train"], *scored)]
    if need_train and unscored:
        # A zero-shot language with nothing to score it on: the run would end in an empty table.
        held = ", ".join(sorted(scored)) or "no dev or test set"
        raise ConfigError(
            f"lang.eval: {', '.join(unscored)} has no dev or test data: the data files hold {held}; give "
            "data.dev/data.test with their examples (a lang column names each one's language), or evaluate the "
            "training languages only"
        )
    if need_train and rules.training_problems(train):
        raise DataError(rules.training_problems(train))
    if task.labels:
        labels = rules.label_set(list(task.labels), given=True)
    else:
        labels = rules.label_set([name for ex in train for name in rules.label_names(ex)], given=False)
    check_labels(splits, labels, rules)
    contents = {
        key: content_fingerprint(splits[key.split("/")[0]][key.split("/", 1)[1]])
        for key, source in sources.items()
        if not Path(source).is_file()
    }
    return LoadedData(splits=splits, labels=labels, sources=sources, dropped=dict(dropped), contents=contents)


def content_fingerprint(examples: list[Example]) -> str:
    """A digest of the examples' content (every field but where each was read from)."""
    text = json.dumps([{k: v for k, v in ex.items() if k not in LOCATION} for ex in examples], sort_keys=True)
    return "content:" + hashlib.blake2b(text.encode(), digest_size=8).hexdigest()
