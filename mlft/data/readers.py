"""Readers of local files into standard examples, with file:line on every problem.

Token examples: {"tokens": [...], "tags": [...], "loc": "file:line"}; sequence examples:
{"text": str, "text_pair": str | None, "label": str | list[str], "loc": ...}. An optional "lang"
comes from the file's language column. Tags are returned as written; scheme conversion follows.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from mlft.errors import DataError

Example = dict[str, Any]
FORMATS = ("conll", "jsonl", "csv", "tsv")


def detect_format(path: Path) -> str:
    suffix = path.suffix.lower().lstrip(".")
    if suffix in ("jsonl", "json", "ndjson"):
        return "jsonl"
    if suffix in ("csv", "tsv"):
        return suffix
    return "conll"


def read_lines(path: Path) -> list[str]:
    """Reads UTF-8 text (a BOM is dropped, CRLF accepted); bad bytes are reported with their line."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise DataError(
            f"{path}:{line}: not valid UTF-8 (byte 0x{raw[err.start]:02x}); re-encode the file as UTF-8"
        ) from None
    if not text.strip():
        raise DataError(f"{path}:1: file is empty")
    return [line.rstrip("\r") for line in text.split("\n")]


def read_conll(path: Path, token_column: int = 0, tag_column: int = -1) -> list[Example]:
    """CoNLL-style column file: one token per line, blank line between sentences, -DOCSTART- skipped.

    Columns are split on tabs when the line has one (so a token may contain spaces), else on
    whitespace.
    """
    examples: list[Example] = []
    problems: list[str] = []
    tokens: list[str] = []
    tags: list[str] = []
    start = 0

    def flush() -> None:
        if tokens:
            examples.append(
                {
                    "tokens": list(tokens),
                    "tags": list(tags),
                    "loc": f"{path}:{start}",
                    "file": str(path),
                    "first_line": start,
                }
            )
        tokens.clear()
        tags.clear()

    needed = max(token_column, tag_column) + 1 if tag_column >= 0 else max(token_column + 1, -tag_column)
    needed = max(needed, 2)
    for number, line in enumerate(read_lines(path), start=1):
        if not line.strip() or line.startswith("-DOCSTART-"):
            flush()
            continue
        columns = line.split("\t") if "\t" in line else line.split()
        if len(columns) < needed:
            problems.append(
                f"{path}:{number}: expected a token and a tag (columns {token_column} and {tag_column}), "
                f"got {len(columns)} column(s): {line[:80]!r}"
            )
            continue
        token, tag = columns[token_column].strip(), columns[tag_column].strip()
        if not token or not tag:
            problems.append(f"{path}:{number}: empty token or tag: {line[:80]!r}")
            continue
        if not tokens:
            start = number
        tokens.append(token)
        tags.append(tag)
    flush()
    if problems:
        raise DataError(problems)
    if not examples:
        raise DataError(f"{path}:1: no sentences found")
    return examples


def _check_str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def record_to_example(record: dict[str, Any], columns: dict[str, Any], token_task: bool, loc: str) -> Example:
    """Maps one record (a JSON object, a CSV row, a hub row) to a standard example."""

    def get(name: str | None, required: bool = True) -> Any:
        if name is None:
            return None
        if name not in record:
            if required:
                raise DataError(f"{loc}: missing column {name!r} (columns: {', '.join(map(str, record))})")
            return None
        return record[name]

    example: Example = {"loc": loc}
    lang = get(columns.get("lang"), required=False)
    if lang is not None:
        example["lang"] = str(lang)
    if token_task:
        tokens, tags = get(columns["tokens"]), get(columns["tags"])
        if not _check_str_list(tokens) or not _check_str_list(tags):
            raise DataError(f"{loc}: {columns['tokens']!r} and {columns['tags']!r} must be lists of strings")
        if len(tokens) != len(tags):
            raise DataError(f"{loc}: {len(tokens)} tokens but {len(tags)} tags")
        if not tokens:
            raise DataError(f"{loc}: empty sentence")
        example.update(tokens=tokens, tags=tags)
        return example
    text, label = get(columns["text"]), get(columns["label"])
    if not isinstance(text, str) or not text.strip():
        raise DataError(f"{loc}: {columns['text']!r} must be a non-empty string, got {text!r}")
    if not (isinstance(label, (str, int)) and not isinstance(label, bool)) and not _check_str_list(label):
        raise DataError(
            f"{loc}: {columns['label']!r} must be a string, an integer or a list of strings, got {label!r}"
        )
    pair = get(columns.get("text_pair"))
    if pair is not None and not isinstance(pair, str):
        raise DataError(f"{loc}: {columns['text_pair']!r} must be a string, got {pair!r}")
    example.update(text=text, text_pair=pair, label=label if isinstance(label, list) else str(label))
    return example


def read_jsonl(path: Path, columns: dict[str, Any], token_task: bool) -> list[Example]:
    examples, problems = [], []
    for number, line in enumerate(read_lines(path), start=1):
        if not line.strip():
            continue
        loc = f"{path}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            problems.append(f"{loc}: not valid JSON ({err.msg})")
            continue
        if not isinstance(record, dict):
            problems.append(f"{loc}: expected a JSON object, got {type(record).__name__}")
            continue
        try:
            examples.append(record_to_example(record, columns, token_task, loc))
        except DataError as err:
            problems += err.problems
    if problems:
        raise DataError(problems)
    return examples


def read_table(
    path: Path, columns: dict[str, Any], token_task: bool, delimiter: str, label_separator: str | None
) -> list[Example]:
    """CSV/TSV with a header row; token tasks hold space-separated tokens and tags."""
    lines = read_lines(path)
    reader = csv.DictReader(lines, delimiter=delimiter)
    header = reader.fieldnames or []
    wanted = [columns["tokens"], columns["tags"]] if token_task else [columns["text"], columns["label"]]
    missing = [c for c in wanted if c not in header]
    if missing:
        raise DataError(f"{path}:1: missing column(s) {', '.join(missing)} (header: {', '.join(header)})")
    examples, problems = [], []
    for row in reader:
        loc = f"{path}:{reader.line_num}"
        if None in row or any(v is None for k, v in row.items() if k in wanted):
            problems.append(f"{loc}: expected {len(header)} fields")
            continue
        record: dict[str, Any] = dict(row)
        if token_task:
            record[columns["tokens"]] = row[columns["tokens"]].split()
            record[columns["tags"]] = row[columns["tags"]].split()
        elif label_separator:
            record[columns["label"]] = [x.strip() for x in row[columns["label"]].split(label_separator) if x.strip()]
        if columns.get("text_pair") and record.get(columns["text_pair"]) == "":
            record[columns["text_pair"]] = None
        try:
            examples.append(record_to_example(record, columns, token_task, loc))
        except DataError as err:
            problems += err.problems
    if problems:
        raise DataError(problems)
    if not examples:
        raise DataError(f"{path}:2: no rows after the header")
    return examples


def read_file(
    path: Path,
    fmt: str,
    columns: dict[str, Any],
    token_task: bool,
    token_column: int = 0,
    tag_column: int = -1,
    label_separator: str | None = None,
) -> list[Example]:
    """Reads a local file in `fmt` ('auto' picks by suffix) into standard examples."""
    fmt = detect_format(path) if fmt == "auto" else fmt
    if fmt == "conll":
        if not token_task:
            raise DataError(f"{path}:1: CoNLL column files hold token tags; use JSONL/CSV/TSV for classification")
        return read_conll(path, token_column, tag_column)
    if fmt == "jsonl":
        return read_jsonl(path, columns, token_task)
    return read_table(path, columns, token_task, "," if fmt == "csv" else "\t", label_separator)
