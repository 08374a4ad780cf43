"""Readers of local files into standard examples, with file:line on every problem.

Readers know formats, not tasks: they return records (JSON objects, table rows, column-file sentences)
with the file:line where each starts; a task type then makes examples of them (mlft.tasks). Column
files hold one token and its tag per line, so their records already have `tokens` and `tags`.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlft.errors import DataError

Example = dict[str, Any]
LOCATION = ("loc", "file", "first_line")
"""The keys of an example that say where it was read from, never what it says."""
FORMATS = ("conll", "text", "jsonl", "json", "csv", "tsv")
COLUMN_SUFFIXES = ("conll", "conllu", "bio", "iob", "iob2", "bioes", "bmes")


def detect_format(path: Path, plain: str = "conll") -> str:
    """The format by suffix; `plain` is what other files hold (the task type says: column files or text lines)."""
    suffix = path.suffix.lower().lstrip(".")
    if suffix in ("jsonl", "ndjson"):
        return "jsonl"
    if suffix == "json":
        return "json"
    if suffix in ("csv", "tsv"):
        return suffix
    if suffix in COLUMN_SUFFIXES:
        return "conll"
    return plain


def read_text(path: Path) -> str:
    """Reads UTF-8 text (a BOM is dropped); unreadable files and bad bytes are reported with their line."""
    if path.exists() and not path.is_file():  # a FIFO or a device: reading would wait forever
        raise DataError(f"{path}: not a regular file (a folder, a pipe or a device); give a text file")
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


@dataclass
class Record:
    """One item of a data file (a JSON object, a table row, a column-file sentence) before a task type reads it."""

    values: dict[str, Any]
    loc: str
    """file:line (or dataset[split]:row) where it starts."""
    first_line: int | None = None
    """Column files: the line of the first token, so that a problem with one token names that token's line."""


@dataclass(frozen=True)
class Cells:
    """How a table (CSV/TSV), whose every cell is text, spells what other formats hold as lists: a token list is
    space-separated, and a list of labels is separated by `list_separator` (data.label_separator) when given."""

    list_separator: str | None = None


@dataclass
class Source:
    """What one file or dataset split holds, and how to read its records."""

    records: list[Record]
    columns: dict[str, Any]
    """The column of each standard field that is not named like the field itself (data.columns), and `lang`."""
    cells: Cells | None = None
    """Set for tables: every value is a string (CSV/TSV cells)."""
    header: list[str] | None = None
    """A table's column names (its line 1)."""
    problems: list[str] = field(default_factory=list)
    """Records that could not be read (file:line: ...), reported together with the task type's findings."""


def from_examples(examples: list[Example]) -> Source:
    """Records already named by the standard fields as a source (packaged corpora, column files)."""
    records = [Record({k: v for k, v in ex.items() if k != "loc"}, ex["loc"], ex.get("first_line")) for ex in examples]
    return Source(records, {})


def read_jsonl(path: Path, columns: dict[str, Any]) -> Source:
    records, problems = [], []
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
        records.append(Record(record, loc))
    return Source(records, columns, problems=problems)


def read_json(path: Path, columns: dict[str, Any]) -> Source:
    """A SQuAD file ({"data": [{"paragraphs": [{"context", "qas": [...]}]}]}, versions 1.1 and 2.0): one record per
    question with its context, named by SQuAD's own keys and located at the line of its id; any other .json file is
    read as JSONL (one object per line)."""
    text = read_text(path)
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        document = None
    if not (isinstance(document, dict) and isinstance(document.get("data"), list)):
        return read_jsonl(path, columns)
    records, problems = [], []
    position, line = 0, 1
    for a, article in enumerate(document["data"]):
        paragraphs = article.get("paragraphs") if isinstance(article, dict) else None
        if not isinstance(paragraphs, list):
            problems.append(f"{path}:{line}: data[{a}]: expected an article with a list of paragraphs")
            continue
        for p, paragraph in enumerate(paragraphs):
            qas = paragraph.get("qas") if isinstance(paragraph, dict) else None
            if not isinstance(qas, list):
                problems.append(f"{path}:{line}: data[{a}].paragraphs[{p}]: expected a context and a list of qas")
                continue
            for q, qa in enumerate(qas):
                if not isinstance(qa, dict):
                    problems.append(f"{path}:{line}: data[{a}].paragraphs[{p}].qas[{q}]: expected an object")
                    continue
                # The line of the question's id, where the file spells it as json.dumps does; else the last one.
                found = text.find(json.dumps(qa.get("id"), ensure_ascii=False), position)
                if found >= 0:
                    line += text.count("\n", position, found)
                    position = found
                record = {key: value for key, value in qa.items() if key != "plausible_answers"}
                record["context"] = paragraph.get("context")
                if isinstance(article.get("title"), str):
                    record["title"] = article["title"]
                records.append(Record(record, f"{path}:{line}"))
    if not records and not problems:
        raise DataError(f"{path}:1: no questions found (a SQuAD file's data[].paragraphs[].qas[])")
    return Source(records, columns, problems=problems)


def read_table(path: Path, columns: dict[str, Any], delimiter: str, list_separator: str | None) -> Source:
    """CSV/TSV with a header row; every cell is text (see Cells)."""
    # Quoted fields may hold line breaks: the csv module reads the text itself, strictly, so that a quote that
    # is never closed is an error at the line where it opens instead of a field swallowing the rest of the file.
    reader = csv.DictReader(io.StringIO(read_text(path), newline=""), delimiter=delimiter, strict=True)
    try:
        header = reader.fieldnames or []
    except csv.Error as err:
        raise DataError(f"{path}:1: {err}") from None
    records, problems = [], []
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
        if None in row or any(v is None for v in row.values()):
            problems.append(f"{path}:{start}: expected {len(header)} fields")
            continue
        records.append(Record(dict(row), f"{path}:{start}"))
    if not records and not problems:
        raise DataError(f"{path}:2: no rows after the header")
    return Source(records, columns, cells=Cells(list_separator), header=list(header), problems=problems)


def read_text_lines(path: Path) -> Source:
    """One text per line, as the record's `text` column; blank lines are skipped."""
    records = [
        Record({"text": line}, f"{path}:{n}") for n, line in enumerate(read_lines(path), start=1) if line.strip()
    ]
    return Source(records, {})


def read_file(
    path: Path,
    fmt: str,
    columns: dict[str, Any],
    token_column: int = 0,
    tag_column: int = -1,
    list_separator: str | None = None,
) -> Source:
    """Reads a local file in `fmt` ('auto' picks by suffix)."""
    fmt = detect_format(path) if fmt == "auto" else fmt
    if fmt == "conll":
        return from_examples(read_conll(path, token_column, tag_column))
    if fmt == "text":
        return read_text_lines(path)
    if fmt == "jsonl":
        return read_jsonl(path, columns)
    if fmt == "json":
        return read_json(path, columns)
    return read_table(path, columns, "," if fmt == "csv" else "\t", list_separator)
