"""The export formats (`mlft export format=<name>`): each writes a run's model into a folder, says which file holds
it, which export options it takes, what runs the folder's model again (`mlft predict model=`, serve, the parity gate)
and how to use it (the model card). The manifest records which one wrote a folder, so nothing asks a file name.

Adding a format is one `Exporter` in `EXPORTERS` and its name in `ExportArgs.format`. This module imports nothing
heavy at import time (mlft.commands.preflight checks the options against it before torch is imported).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlft.commands.manifest import MANIFEST
from mlft.errors import ConfigError
from mlft.tasks.protocol import BATCH, LENGTH


@dataclass(frozen=True)
class Exporter:
    name: str
    """format=<name>."""
    model_file: str
    """The file that holds the model (`model=<folder>/<this file>` names the export too)."""
    options: tuple[str, ...]
    """The export keys only this format takes (quantize, fuse)."""
    write: Callable[[Any, Path, Any], str]
    """(saved run, folder, ExportArgs) -> writes the model (tokenizer and records are written for every format);
    returns what was written, in words."""
    runtime: Callable[[Path], Any] | None
    """The model object that runs `model_file`; None: transformers weights, loaded as a run's model is."""
    usage: Callable[[str, bool], list[str]]
    """(pipeline tag, mean pooling) -> Markdown lines of the model card on using the folder outside mlft."""
    ensembles: bool = False
    """Writes several runs as one model (`mlft export runs=[...]`)."""


def _write_hf(saved: Any, folder: Path, args: Any) -> str:
    saved.model.save_pretrained(folder)
    return "HuggingFace folder (safetensors)"


def _hf_usage(pipeline: str, mean_pooling: bool) -> list[str]:
    if mean_pooling:
        return [
            "The classifier reads the mean of the last hidden states (`model.pooling=mean`); transformers' Auto",
            "classes would load the same weights but classify from the first token, so load it with mlft:",
            "",
            "```python",
            "from mlft.models.pooling import MeanPoolingClassifier",
            'model = MeanPoolingClassifier.from_pretrained("<this folder>")',
            "```",
            "",
        ]
    return [
        "```python",
        "from transformers import pipeline",
        f'nlp = pipeline("{pipeline}", model="<this folder>")',
        "```",
        "",
    ]


def graph_io(saved: Any) -> tuple[tuple[str, ...], dict[str, dict[int, str]]]:
    """An exported graph's inputs and outputs, as the task declares them: segment ids where the tokenizer makes them
    (a pair's two texts), and every output the task reads, each with its dynamic axes."""
    outputs = {
        o.name: {i: axis for i, axis in enumerate(o.axes) if axis in (BATCH, LENGTH)} for o in saved.task.model_outputs
    }
    return saved.task.model_inputs(saved.tokenizer), outputs


def _write_onnx(saved: Any, folder: Path, args: Any) -> str:
    from mlft.models.onnx import export_eager_onnx, export_onnx, fuse_graph, quantize_int8
    from mlft.models.pruning import is_pruned

    config = saved.model.config
    config.save_pretrained(folder)  # label maps for onnxruntime users and `mlft predict`
    target = folder / ONNX.model_file
    inputs, outputs = graph_io(saved)
    if not args.fuse and args.quantize == "none":
        export_onnx(saved.model, target, inputs, outputs)  # written in place: large models' weight files go with it
    else:
        with tempfile.TemporaryDirectory() as stage:
            graph = Path(stage) / ONNX.model_file
            if args.fuse:
                export_eager_onnx(saved.model, Path(stage) / "eager.onnx", inputs, outputs)
                fused = graph if args.quantize == "int8" else target
                # A pruned model's layers differ in head count: onnxruntime then reads each layer's from its graph.
                heads, hidden = (0, 0) if is_pruned(saved.model) else (config.num_attention_heads, config.hidden_size)
                fuse_graph(Path(stage) / "eager.onnx", fused, heads, hidden)
            else:
                export_onnx(saved.model, graph, inputs, outputs)
            if args.quantize == "int8":
                quantize_int8(graph, target)
    what = "ONNX, dynamic int8 weights" if args.quantize == "int8" else "ONNX fp32"
    return what + (", graph fused by onnxruntime's transformer optimizer" if args.fuse else "") + " (onnxruntime)"


def _onnx_runtime(path: Path) -> Any:
    from mlft.models.onnx import OnnxModel

    return OnnxModel(path)


def _onnx_usage(pipeline: str, mean_pooling: bool) -> list[str]:
    return [
        f"`{ONNX.model_file}` runs in onnxruntime; its inputs and outputs are named as the tokenizer's and the",
        "task's (see `mlft-export.json` and `config.json` for the label maps).",
        "",
    ]


HF = Exporter("hf", "model.safetensors", (), _write_hf, None, _hf_usage)
ONNX = Exporter("onnx", "model.onnx", ("quantize", "fuse"), _write_onnx, _onnx_runtime, _onnx_usage, ensembles=True)
EXPORTERS = {exporter.name: exporter for exporter in (HF, ONNX)}


def check_options(fmt: str, given: dict[str, bool]) -> None:
    """Raises ConfigError for an option given (True) that format `fmt` does not take."""
    exporter = EXPORTERS[fmt]
    for key, on in given.items():
        if on and key not in exporter.options:
            takers = ", ".join(name for name, e in EXPORTERS.items() if key in e.options)
            raise ConfigError(f"{key}: format={fmt} does not take it (formats that do: {takers})")


def exporter_of(path: Path, fmt: str | None = None) -> tuple[Exporter, Path]:
    """The format of an export folder (or of the model file inside one) and the file holding its model: `fmt` when
    given (the export being written), else as its manifest records it; folders exported before there was a manifest
    hold model.onnx or transformers weights."""
    if fmt is not None:
        return EXPORTERS[fmt], path / EXPORTERS[fmt].model_file
    folder = path if path.is_dir() else path.parent
    if path != folder:
        named = next((e for e in EXPORTERS.values() if e.model_file == path.name), None)
        if named is None:
            files = ", ".join(e.model_file for e in EXPORTERS.values())
            raise ConfigError(f"model={path}: not the model file of an export ({files}); or give the folder")
        return named, path
    try:
        recorded = json.loads((folder / MANIFEST).read_text()).get("format")
    except (OSError, ValueError, AttributeError):
        recorded = None
    exporter = EXPORTERS.get(recorded) if isinstance(recorded, str) else None
    exporter = exporter or (ONNX if (folder / ONNX.model_file).is_file() else HF)
    return exporter, folder / exporter.model_file
