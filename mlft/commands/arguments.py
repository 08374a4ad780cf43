"""The `key=value` arguments of `mlft eval`, `predict`, `export`, `serve` and `report`: plain typed dataclasses whose
attribute docstrings are the help text. They live apart from the commands, so that `mlft <command> --help` and an
argument error need nothing heavier than this module (no torch, no transformers)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class EvalArgs:
    run: str | None = None
    """The run directory to evaluate."""
    runs: list[str] | None = None
    """Instead of run: finished runs of the same task, labels and tokenizer, evaluated as one ensemble (their
    probabilities averaged); the data and languages are the first run's."""
    lang: list[str] | None = None
    """Languages to evaluate (default: the run's lang.eval)."""
    split: list[Literal["dev", "test"]] | None = None
    """Splits to evaluate: dev, test (default: both)."""
    dev: str | None = None
    """Other dev data (a file or hub:...), instead of the run's."""
    test: str | None = None
    """Other test data (a file or hub:...), instead of the run's."""
    batch_size: int = 64
    """Texts per model call."""
    cpu: bool = False
    """Evaluate on the CPU even when a GPU is present."""
    out: str | None = None
    """Folder for metrics.json and report.md (default: <run>/evals/<time>/)."""
    evaluate: str | None = None
    """An evaluate module (hub name or local path) to score with besides the built-in metrics: a run's own
    task.evaluate is Python code and is not run from its saved config, so name it here to use it."""


@dataclass(frozen=True)
class PredictArgs:
    input: str
    """A UTF-8 text file, one text per line (empty lines give empty predictions; pairs: text<TAB>text), or a
    .jsonl file of {"text": ..., "lang": ...} objects (each line in its own language; "text_pair" for pairs)."""
    output: str | None = None
    """JSONL output file (default: standard output)."""
    lang: str | None = None
    """Language of the input (default: the run's first training language); decides NER word splitting and, for
    a run with language adapters, the adapter."""
    batch_size: int = 64
    """Texts per model call."""
    overwrite: bool = False
    """Replace an existing output file."""
    cpu: bool = False
    """Predict on the CPU even when a GPU is present."""
    precision: Literal["run", "no", "bf16"] = "run"
    """Autocast of the model call: run = the run's trainer.precision; bf16 pays on GPUs and on CPUs with bf16
    instructions (avx512_bf16, AMX) and is far slower than fp32 on CPUs without them; no = fp32."""
    run: str | None = None
    """The run directory whose final model predicts."""
    model: str | None = None
    """Instead of run: a folder written by `mlft export`, or the model.onnx inside one."""
    runs: list[str] | None = None
    """Instead of run: finished runs of the same task, labels and tokenizer, predicting as one ensemble (their
    probabilities averaged)."""


@dataclass(frozen=True)
class ExportArgs:
    run: str | None = None
    """The run directory whose final model is exported."""
    runs: list[str] | None = None
    """Instead of run: finished runs of the same task, labels and tokenizer, exported as one ONNX graph that
    averages their probabilities (format=onnx, out= required)."""
    format: Literal["hf", "onnx"] = "hf"
    """hf: safetensors + tokenizer + label maps; onnx: model.onnx for onnxruntime."""
    quantize: Literal["none", "int8"] = "none"
    """int8: dynamic int8 quantization of the ONNX weights (format=onnx)."""
    fuse: bool = False
    """format=onnx: export with eager attention and fuse the graph with onnxruntime's transformer optimizer (one
    Attention node per layer, fused LayerNorm and GELU; BERT and XLM-R encoders); with int8 the fused graph is
    quantized (faster on CPUs: docs/results/export.md)."""
    out: str | None = None
    """Output folder (default: <run>/export/<format>[-fused][-int8])."""
    split: Literal["dev", "test"] = "dev"
    """Data the parity gate evaluates on, per language of the run."""
    max_drop: float = 0.5
    """Largest allowed drop of the task metric, in points (0.5 = half an F1/accuracy point)."""
    trim_vocab: Literal["none", "lang", "train"] = "none"
    """Keep only the vocabulary (and embedding rows) that the run's data uses: lang = all its splits and
    languages; train = its training data only (text outside it may then segment into smaller pieces or <unk>)."""
    vocab_file: str | None = None
    """With trim_vocab: also keep the pieces of this file, plain text (a text per line) or a frequency list
    (`word<TAB>count` per line), e.g. to serve text of the run's languages beyond its data."""
    vocab_min_count: int = 1
    """Frequency-list words counted fewer times are left out of vocab_file."""
    check: bool = True
    """Run the parity gate (false skips it; the card then says so)."""
    overwrite: bool = False
    """Replace an existing output folder."""
    batch_size: int = 64
    """Texts per model call of the parity check."""
    lang: str | None = None
    """A run with language adapters (peft.lang_adapters): the language whose adapter is merged into the export,
    which is then a plain model for that language (export each language you serve)."""


@dataclass(frozen=True)
class ServeArgs:
    model: str | None = None
    """A folder written by `mlft export` (or its model.onnx)."""
    run: str | None = None
    """Instead of model: a run directory."""
    runs: list[str] | None = None
    """Instead of model: runs of the same task, labels and tokenizer, serving as one ensemble."""
    host: str = "127.0.0.1"
    """Address to listen on (127.0.0.1: this machine only; 0.0.0.0: every interface)."""
    port: int = 8080
    """TCP port (0: any free one)."""
    max_texts: int = 64
    """Texts per request."""
    max_chars: int = 5000
    """Characters per text (longer NER inputs are windowed, but requests stay bounded)."""
    max_batch: int = 64
    """Texts per model call, across the requests that arrive together."""
    max_call_chars: int = 8000
    """Characters per model call, across requests: a bigger request is split over several calls, taken in turn with
    the others', so that a small request beside it waits for the call in flight and then shares the next one
    (mlft/commands/batcher.py). Smaller calls shorten that wait; 8000 served a maximal request as fast as 20000
    did on a CPU (docs/results/export.md)."""
    batch_wait_ms: float = 5.0
    """How long the first request of a batch waits for others."""
    body_timeout_s: float = 30.0
    """A request body must arrive within this many seconds (408 otherwise): slow clients cannot hold the server."""
    cpu: bool = False
    """Predict on the CPU even when a GPU is present."""
    precision: Literal["run", "no", "bf16"] = "run"
    """Autocast of the model call, as in `mlft predict`."""


@dataclass(frozen=True)
class ReportArgs:
    sweep: str | None = None
    """A folder holding finished runs (e.g. a `mlft train -m` sweep directory); searched recursively."""
    runs: list[str] | None = None
    """Run directories, instead of (or besides) sweep."""
    split: str = "dev"
    """The split that ranks the configurations (dev; the other split is shown beside it)."""
    metric: str | None = None
    """The metric (default: the runs' task.metric)."""
    out: str | None = None
    """Output folder (default: <sweep>/reports/<time>, or ./reports/<time>)."""
