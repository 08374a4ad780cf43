"""Readers of local files into standard examples, with file:line on every problem.

Token examples: {"tokens": [...], "tags": [...], "loc": "file:line"}; sequence examples:
{"text": str, "text_pair": str | None, "label": str | list[str], "loc": ...}. An optional "lang"
comes from the file's language column. Tags are returned as written; scheme conversion follows.
"""

from __future__ import annotations

import csv
import io
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


def read_text(path: Path) -> str:
    """Reads UTF-8 text (a BOM is dropped); unreadable files and bad bytes are reported with their line."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise DataError(f"{path}: cannot read ({err.strerror or err})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise DataError(
            f"{path}:{line}: not valid UTF-8 (byte 0x{raw[err.start]:02x}); re-encode the file as UTF-8"
        ) from None
    if not text.strip():
        raise DataError(f"{path}:1: file is empty")
    return text


def read_lines(path: Path) -> list[str]:
    """The lines of a UTF-8 text file (CRLF accepted); see read_text."""
    return [line.rstrip("\r") for line in read_text(path).split("\n")]


def lone_surrogate(value: str) -> str | None:
    """A problem when `value` holds a lone surrogate (JSON's "\\ud800" decodes to one): not Unicode text."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as err:
        return f"character {err.start} is a lone surrogate (U+{ord(value[err.start]):04X}), not valid Unicode text"
    return None


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
        _check_unicode(tokens + tags, columns["tokens"], loc)
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
    labels = label if isinstance(label, list) else [str(label)]
    _check_unicode([text, pair or "", *labels], columns["text"], loc)
    example.update(text=text, text_pair=pair, label=label if isinstance(label, list) else str(label))
    return example


def _check_unicode(values: list[str], column: str, loc: str) -> None:
    for value in values:
        problem = lone_surrogate(value)
        if problem:
            raise DataError(f"{loc}: {column!r}: {problem}")


def read_jsonl(path: Path, columns: dict[str, Any], token_task: bool) -> list[Example]:
    examples, problems = [], []
    spellings: dict[str, tuple[Any, str]] = {}  # label text -> its first raw value and where it occurs
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
            continue
        raw = record.get(columns["label"])
        if not token_task and isinstance(raw, (int, str)):
            first, first_loc = spellings.setdefault(str(raw), (raw, loc))
            if type(first) is not type(raw):
                problems.append(
                    f"{loc}: label {raw!r} is the label {first!r} of {first_loc} written as a "
                    f"{type(raw).__name__}; write every label the same way"
                )
    if problems:
        raise DataError(problems)
    return examples


def read_table(
    path: Path, columns: dict[str, Any], token_task: bool, delimiter: str, label_separator: str | None
) -> list[Example]:
    """CSV/TSV with a header row; token tasks hold space-separated tokens and tags."""
    # Quoted fields may hold line breaks: the csv module reads the text itself, strictly, so that a quote that
    # is never closed is an error at the line where it opens instead of a field swallowing the rest of the file.
    reader = csv.DictReader(io.StringIO(read_text(path), newline=""), delimiter=delimiter, strict=True)
    try:
        header = reader.fieldnames or []
    except csv.Error as err:
        raise DataError(f"{path}:1: {err}") from None
    wanted = [columns["tokens"], columns["tags"]] if token_task else [columns["text"], columns["label"]]
    missing = [c for c in wanted if c not in header]
    if missing:
        raise DataError(f"{path}:1: missing column(s) {', '.join(missing)} (header: {', '.join(header)})")
    examples, problems = [], []
    while True:
        start = reader.line_num + 1  # a record may span lines: it is named by the line it starts on
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as err:
            hint = "; a quoted field opened here is never closed" if "end of data" in str(err) else ""
            problems.append(f"{path}:{start}: {err}{hint}")
            break
        loc = f"{path}:{start}"
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
