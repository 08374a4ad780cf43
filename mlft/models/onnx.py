"""ONNX export (torch.onnx), dynamic int8 quantization (onnxruntime) and an onnxruntime model that evaluation,
`mlft predict` and the parity gate call exactly like the PyTorch model."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig
from transformers.modeling_outputs import ModelOutput

from mlft.errors import ConfigError

log = logging.getLogger("mlft")

Axes = dict[int, str]
"""The axes of a graph input or output that vary between calls (index -> name: batch, length)."""


def _onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise ConfigError("format=onnx: needs onnx and onnxruntime: pip install 'mlft[export]'") from None
    return onnxruntime


class _Outputs(torch.nn.Module):
    """The model as a graph: its inputs by position, its declared outputs as a tuple, in order."""

    def __init__(self, model: torch.nn.Module, inputs: tuple[str, ...], outputs: tuple[str, ...]):
        super().__init__()
        self.model, self.inputs, self.outputs = model, inputs, outputs

    def forward(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        result = self.model(**dict(zip(self.inputs, tensors)))
        return tuple(result[name] for name in self.outputs)


def export_onnx(
    model: torch.nn.Module, path: Path, inputs: tuple[str, ...], outputs: dict[str, Axes], opset: int = 17
) -> None:
    """Writes `model` as a graph from the named `inputs` (batch and length dynamic) to the named `outputs` (each with
    its dynamic axes), as the task declares them."""
    _onnxruntime()
    model = model.eval().to("cpu")
    # Segment ids of 0 exist in every model that takes them; other inputs are ids and masks of 1.
    example = tuple(
        (torch.zeros if name == "token_type_ids" else torch.ones)((2, 8), dtype=torch.long) for name in inputs
    )
    axes: dict[str, Axes] = {name: {0: "batch", 1: "length"} for name in inputs}
    axes.update(outputs)
    with warnings.catch_warnings():  # the TorchScript exporter warns about tracing branches of the HF code
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _Outputs(model, inputs, tuple(outputs)),
            example,
            str(path),
            input_names=list(inputs),
            output_names=list(outputs),
            dynamic_axes=axes,
            opset_version=opset,
            dynamo=False,
        )


FUSABLE = ("bert", "roberta", "xlm-roberta")
"""Model types whose graphs onnxruntime's transformer optimizer fuses (its `bert` patterns)."""


def export_eager_onnx(model: Any, path: Path, inputs: tuple[str, ...], outputs: dict[str, Axes]) -> None:
    """export_onnx with eager attention: its MatMul/Softmax subgraph is what onnxruntime fuses into one Attention
    node (the SDPA export's is not). The model's own attention implementation is restored afterwards."""
    before = model.config._attn_implementation
    model.set_attn_implementation("eager")
    try:
        export_onnx(model, path, inputs, outputs)
    finally:
        model.set_attn_implementation(before)


def fuse_graph(source: Path, target: Path, num_heads: int, hidden_size: int) -> None:
    """onnxruntime's transformer graph fusion: attention, embedding + LayerNorm, bias + GELU, skip + LayerNorm."""
    _onnxruntime()
    from onnxruntime.transformers.optimizer import optimize_model

    optimize_model(str(source), model_type="bert", num_heads=num_heads, hidden_size=hidden_size).save_model_to_file(
        str(target)
    )


def quantize_int8(source: Path, target: Path, exclude: list[str] | None = None) -> None:
    """Dynamic int8 quantization of the weight matrices (activations stay float), except the nodes in `exclude`."""
    _onnxruntime()
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # A fused graph holds contrib ops that shape inference cannot type: their outputs are float.
    options = {"DefaultTensorType": 1}  # onnx.TensorProto.FLOAT
    quantize_dynamic(
        str(source), str(target), weight_type=QuantType.QInt8, nodes_to_exclude=exclude, extra_options=options
    )


class OnnxModel(torch.nn.Module):
    """An onnxruntime session behind the forward() of a transformers model: the inputs its graph takes, by name, and
    every output it has, by name."""

    def __init__(self, path: Path):
        super().__init__()
        ort = _onnxruntime()
        try:
            self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own exception types for unreadable models
            raise ConfigError(f"model={path}: not a loadable ONNX model ({str(err).splitlines()[0][:200]})") from None
        self.config = AutoConfig.from_pretrained(path.parent)
        self.path = path
        self.inputs = [node.name for node in self.session.get_inputs()]
        self.outputs = [node.name for node in self.session.get_outputs()]

    def forward(self, **batch: torch.Tensor) -> ModelOutput:
        missing = [name for name in self.inputs if name not in batch]
        if missing:
            raise ConfigError(f"model={self.path}: the graph takes {', '.join(missing)}, which the task does not give")
        feeds = {name: batch[name].cpu().numpy() for name in self.inputs}
        results = self.session.run(self.outputs, feeds)
        return ModelOutput(**{name: torch.from_numpy(value) for name, value in zip(self.outputs, results)})
