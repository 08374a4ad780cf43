"""`mlft predict run=<run-dir> input=texts.txt` (or model=<exported folder>): text lines in, JSONL predictions out.

NER needs no pre-tokenization: Chinese, Japanese and Thai text is split into characters, other
languages into words and punctuation; entities come back with character offsets into the line.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from mlft.data.readers import read_lines
from mlft.destinations import check_writable
from mlft.engine.loop import make_accelerator, predict_features
from mlft.errors import ConfigError
from mlft.runs import load_exported, load_run, parse_args, trained_langs
from mlft.tasks.token_classification import entities, split_text


@dataclass
class PredictArgs:
    input: str
    """A UTF-8 text file, one text per line (empty lines give empty predictions)."""
    output: str | None = None
    """JSONL output file (default: standard output)."""
    lang: str | None = None
    """Language of the input (default: the run's first training language); decides NER word splitting."""
    batch_size: int = 64
    overwrite: bool = False
    """Replace an existing output file."""
    cpu: bool = False
    precision: Literal["run", "no", "bf16"] = "run"
    """Autocast of the model call: run = the run's trainer.precision; bf16 pays on GPUs and on CPUs with bf16
    instructions (avx512_bf16, AMX) and is far slower than fp32 on CPUs without them; no = fp32."""
    run: str | None = None
    """The run directory whose final model predicts."""
    model: str | None = None
    """Instead of run: a folder written by `mlft export`, or the model.onnx inside one."""


class Predictor:
    """A loaded model ready to label text lines; built once, called many times (`mlft predict`, `mlft serve`)."""

    def __init__(self, saved: Any, cpu: bool = False, progress: bool = True, precision: str = "run"):
        cfg = saved.config
        cfg.trainer.cpu, cfg.trainer.tensorboard = cpu, False
        if precision != "run":
            cfg.trainer.precision = precision
        self.saved, self.progress = saved, progress
        self.accelerator = make_accelerator(cfg.trainer, None)
        self.model = self.accelerator.prepare(saved.model)
        self.token_task = cfg.task.type == "token_classification"
        train = trained_langs(saved.run_dir, cfg)
        self.default_lang = train[0] if train else "und"

    def __call__(self, lines: list[str], lang: str | None = None, batch_size: int = 64) -> list[dict[str, Any]]:
        """One JSON-ready record per line; empty lines give empty predictions."""
        lang = lang or self.default_lang
        saved = self.saved
        keep = [i for i, line in enumerate(lines) if line.strip()]
        if self.token_task:
            splits = [split_text(lines[i], lang) for i in keep]
            examples: list[dict[str, Any]] = [{"tokens": tokens} for tokens, _ in splits]
        else:
            examples = [{"text": lines[i]} for i in keep]
        features = saved.task.encode(examples, saved.tokenizer, lang)
        pad_id = saved.tokenizer.pad_token_id
        outs = predict_features(
            self.accelerator,
            self.model,
            features,
            lambda f: saved.task.collate(f, pad_id),
            saved.task.outputs,
            batch_size,
            progress=self.progress,
            desc="predict",
        )
        predictions = saved.task.decode(examples, features, outs)
        records: list[dict[str, Any]] = [
            {"text": line, "entities": []} if self.token_task else {"text": line, "label": None} for line in lines
        ]
        for j, i in enumerate(keep):
            if self.token_task:
                records[i]["entities"] = entities(lines[i], splits[j][1], predictions[j])
            else:
                records[i].update({k: v for k, v in predictions[j].items()})
        return records


def load_for_prediction(run: str | None, model: str | None) -> Any:
    """A run directory or an exported folder / .onnx file: exactly one of the two."""
    if (run is None) == (model is None):
        raise ConfigError("run, model: give exactly one (run=<run-dir> or model=<exported folder or .onnx>)")
    return load_run(Path(run)) if run else load_exported(Path(model or ""))


def predict_cli(args: list[str]) -> None:
    parsed: PredictArgs = parse_args(args, PredictArgs, "predict")
    source = Path(parsed.input)
    if source.is_dir():
        raise ConfigError(f"input: {parsed.input} is a folder; give a text file (one text per line)")
    if not source.is_file():
        raise ConfigError(f"input: file not found: {parsed.input}")
    if parsed.output and Path(parsed.output).exists() and not parsed.overwrite:
        raise ConfigError(f"output: {parsed.output} exists; nothing was written (pass overwrite=true to replace it)")
    if parsed.output:
        if Path(parsed.output).is_dir():
            raise ConfigError(f"output: {parsed.output} is a folder; give a file name (predictions are JSONL)")
        check_writable(Path(parsed.output), "output")
    saved = load_for_prediction(parsed.run, parsed.model)
    lines = read_lines(source)
    if lines and lines[-1] == "":
        lines = lines[:-1]
    records = Predictor(saved, parsed.cpu, precision=parsed.precision)(lines, parsed.lang, parsed.batch_size)
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    if parsed.output:
        output = Path(parsed.output)
        output.parent.mkdir(parents=True, exist_ok=True)
        tmp = output.with_name(output.name + ".tmp")
        tmp.write_text(text)
        tmp.replace(output)
        print(f"wrote {len(records)} predictions to {parsed.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
