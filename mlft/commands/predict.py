"""`mlft predict run=<run-dir> input=texts.txt` (or model=<exported folder>): text lines in, JSONL predictions out.

The task type reads a line of raw text (NER needs no pre-tokenization: characters for zh/ja/th, words and
punctuation otherwise; a tab separates the two texts of a sentence pair) and writes its record. A .jsonl input
gives each line its own language ({"text": ..., "lang": ...}): lines are predicted language by language.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

from mlft.commands.arguments import PredictArgs
from mlft.commands.saved import SavedRun, load_ensemble, load_exported, load_run
from mlft.data.readers import lone_surrogate, read_lines
from mlft.destinations import share
from mlft.engine.devices import make_accelerator
from mlft.engine.predict import predict_features
from mlft.errors import DataError
from mlft.models.lang_adapters import language

LANG = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
"""A language code as requests give it: zh, en, pt-BR, hi-Latn."""
Request = str | dict[str, Any]
"""What is predicted: a line of raw text, or a JSON object of the task's fields."""


class Predictor:
    """A loaded model ready to label text lines; built once, called many times (`mlft predict`, `mlft serve`)."""

    def __init__(
        self,
        saved: SavedRun,
        cpu: bool = False,
        progress: bool = True,
        precision: Literal["run", "no", "bf16"] = "run",
    ):
        trainer = replace(saved.config.trainer, cpu=cpu, tensorboard=False)
        if precision != "run":
            trainer = replace(trainer, precision=precision)
        self.saved, self.progress = saved, progress
        self.accelerator = make_accelerator(trainer)
        self.model = self.accelerator.prepare(saved.model)
        self.default_lang = saved.languages.train[0] if saved.languages.train else "und"

    def __call__(
        self,
        requests: list[Request],
        lang: str | None = None,
        batch_size: int = 64,
        where: Callable[[int], str] = lambda i: f"request {i + 1}",
    ) -> list[dict[str, Any]]:
        """One JSON-ready record per request (a line of text, or a JSON object of the task's fields); empty lines
        give empty predictions. A request the task cannot read is a DataError naming `where(index)`."""
        lang = lang or self.default_lang
        task, tokenizer = self.saved.task, self.saved.tokenizer
        read = read_all(task, requests, lang, where)
        keep = [i for i, (example, _) in enumerate(read) if example is not None]
        examples = [read[i][0] for i in keep]
        features = task.encode(examples, tokenizer, lang)
        with language(self.accelerator.unwrap_model(self.model), lang):  # its language adapter, if the run has them
            outs = predict_features(
                self.accelerator,
                self.model,
                features,
                task,
                tokenizer.pad_token_id,
                batch_size,
                progress=self.progress,
                desc="predict",
            )
        predictions = dict(zip(keep, task.decode(examples, features, outs)))
        return [task.to_record(r, read[i][1], predictions.get(i)) for i, r in enumerate(requests)]


def read_all(task: Any, requests: list[Request], lang: str, where: Callable[[int], str]) -> list[tuple[Any, Any]]:
    """Each request as the task reads it: (example or None for an empty one, its context); every problem at once."""
    read, problems = [], []
    for i, request in enumerate(requests):
        try:
            read.append(task.from_request(request, lang))
        except DataError as err:
            problems += [f"{where(i)}: {problem}" for problem in err.problems]
    if problems:
        raise DataError(problems[:20] + ([f"... {len(problems) - 20} more"] if len(problems) > 20 else []))
    return read


def load_for_prediction(run: str | None, model: str | None, runs: list[str] | None = None) -> SavedRun:
    """A run directory, an exported folder / .onnx file, or runs forming an ensemble: the one of the three given
    (mlft.commands.preflight.check_model_source)."""
    if runs is not None:
        return load_ensemble([Path(r) for r in runs])
    return load_run(Path(run)) if run else load_exported(Path(model or ""))


def read_requests(path: Path) -> list[tuple[Request, str | None]]:
    """(request, language or None) per line: a text file's lines, or a JSONL file's objects (the task's fields, e.g.
    {"text": ...}; "lang": that line's language, otherwise lang= or the run's own)."""
    lines = read_lines(path)
    if lines and lines[-1] == "":
        lines = lines[:-1]
    if path.suffix != ".jsonl":
        return [(line, None) for line in lines]
    requests: list[tuple[Request, str | None]] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            requests.append(("", None))
            continue
        try:
            record = json.loads(line)
        except ValueError as err:
            raise DataError(f"{path}:{number}: not JSON ({err})") from None
        if not isinstance(record, dict):
            raise DataError(f'{path}:{number}: expected a JSON object (e.g. {{"text": "...", "lang": "zh"}})')
        lang = record.get("lang")
        if lang is not None and not (isinstance(lang, str) and LANG.match(lang)):
            raise DataError(f"{path}:{number}: lang: {lang!r} is not a language code (e.g. zh, en, pt-BR)")
        problem = next(filter(None, (lone_surrogate(v) for v in record.values() if isinstance(v, str))), None)
        if problem:
            raise DataError(f"{path}:{number}: {problem}")
        requests.append((record, lang))
    return requests


def predict(args: PredictArgs) -> None:
    """Labels the input's texts (arguments checked by mlft.commands.preflight.check_predict)."""
    source = Path(args.input)
    requests = read_requests(source)
    saved = load_for_prediction(args.run, args.model, args.runs)
    predictor = Predictor(saved, args.cpu, precision=args.precision)
    records: list[dict[str, Any]] = [{} for _ in requests]
    # One call per language: NER splits words by language, and a run with language adapters switches them.
    for lang in dict.fromkeys(lang for _, lang in requests):
        chosen = [i for i, (_, given) in enumerate(requests) if given == lang]
        lines = [f"{source}:{i + 1}" for i in chosen]  # where each request was read, for errors
        answers = predictor([requests[i][0] for i in chosen], lang or args.lang, args.batch_size, lines.__getitem__)
        for i, record in zip(chosen, answers):
            records[i] = {**record, "lang": lang} if lang else record
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    if args.output:
        output = Path(args.output)
        output.parent.mkdir(parents=True, exist_ok=True)
        # Written under a name of its own beside it, then renamed: never half a file, whatever lies beside it.
        handle, name = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent)
        with os.fdopen(handle, "w", encoding="utf-8") as f:
            f.write(text)
        share(Path(name))
        os.replace(name, output)
        print(f"wrote {len(records)} predictions to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
