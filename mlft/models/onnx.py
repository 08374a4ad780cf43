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
INPUTS = ("input_ids", "attention_mask")


def _onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise ConfigError("format=onnx: needs onnx and onnxruntime: pip install 'mlft[export]'") from None
    return onnxruntime


def export_onnx(model: torch.nn.Module, path: Path, opset: int = 17) -> None:
    """Writes `model` (logits from input_ids and attention_mask) with dynamic batch and length axes."""
    _onnxruntime()
    model = model.eval().to("cpu")
    example = {
        "input_ids": torch.ones((2, 8), dtype=torch.long),
        "attention_mask": torch.ones((2, 8), dtype=torch.long),
    }
    axes = {name: {0: "batch", 1: "length"} for name in (*INPUTS, "logits")}
    if model(**example).logits.dim() == 2:
        axes["logits"] = {0: "batch"}
    with warnings.catch_warnings():  # the TorchScript exporter warns about tracing branches of the HF code
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (),
            str(path),
            kwargs=example,
            input_names=list(INPUTS),
            output_names=["logits"],
            dynamic_axes=axes,
            opset_version=opset,
            dynamo=False,
        )


FUSABLE = ("bert", "roberta", "xlm-roberta")
"""Model types whose graphs onnxruntime's transformer optimizer fuses (its `bert` patterns)."""


def export_eager_onnx(model: Any, path: Path) -> None:
    """export_onnx with eager attention: its MatMul/Softmax subgraph is what onnxruntime fuses into one Attention
    node (the SDPA export's is not). The model's own attention implementation is restored afterwards."""
    before = model.config._attn_implementation
    model.set_attn_implementation("eager")
    try:
        export_onnx(model, path)
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
    """An onnxruntime session behind the forward() of a transformers model (logits only)."""

    def __init__(self, path: Path):
        super().__init__()
        ort = _onnxruntime()
        try:
            self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own exception types for unreadable models
            raise ConfigError(f"model={path}: not a loadable ONNX model ({str(err).splitlines()[0][:200]})") from None
        self.config = AutoConfig.from_pretrained(path.parent)
        self.path = path

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **_: Any) -> ModelOutput:
        feeds = {"input_ids": input_ids.cpu().numpy(), "attention_mask": attention_mask.cpu().numpy()}
        (logits,) = self.session.run(["logits"], feeds)
        return ModelOutput(logits=torch.from_numpy(logits))
