"""Where dynamic int8 loses quality: ONNX variants of a token-classification run, each scored and timed.

    python scripts/int8_sensitivity.py --run runs/ner-zh/<time> --sentences 1000

Exports the run to fp32 ONNX once, then builds: onnxruntime's transformer graph fusion (fp32), dynamic int8
of the plain and of the fused graph (what `mlft export quantize=int8` writes is the plain one), and int8 with
one group of matrices left in fp32 (each layer, the classifier, and each kind of projection across layers).
For each: the task metric on the first N test sentences and `mlft predict`'s sentences/s on them. Prints a
Markdown table. About 20 minutes for 1,000 MSRA sentences on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import onnx
from export_table import score, test_sentences, throughput
from onnxruntime.quantization import QuantType, quantize_dynamic
from onnxruntime.transformers.optimizer import optimize_model

from mlft.export import ExportArgs, export_run
from mlft.runs import load_exported, load_run


def matrix_groups(model_path: Path, layers: int) -> dict[str, list[str]]:
    """Names of the MatMul/Gather nodes per layer and per kind of projection (torch.onnx's BERT node names)."""
    graph = onnx.load(str(model_path), load_external_data=False).graph
    names = [n.name for n in graph.node if n.op_type in ("MatMul", "Gather")]
    groups = {f"layer {i}": [n for n in names if f"/layer.{i}/" in n] for i in range(layers)}
    groups["classifier"] = [n for n in names if "classifier" in n]
    groups["query/key/value (all layers)"] = [n for n in names if any(k in n for k in ("/query/", "/key/", "/value/"))]
    groups["attention output (all layers)"] = [n for n in names if "attention/output" in n]
    groups["FFN in (all layers)"] = [n for n in names if "intermediate" in n]
    groups["FFN out (all layers)"] = [n for n in names if "/output/dense" in n and "attention" not in n]
    return groups


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True)
    parser.add_argument("--sentences", type=int, default=1000)
    args = parser.parse_args(argv)
    run = load_run(Path(args.run))
    lang, examples, lines = test_sentences(run, args.sentences)
    config = run.model.config
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "fp32"
        export_run(ExportArgs(run=args.run, format="onnx", out=str(base), check=False))
        source = base / "model.onnx"

        def variant(name: str, build: Callable[[Path], None]) -> None:
            out = Path(tmp) / "variant"
            shutil.rmtree(out, ignore_errors=True)
            shutil.copytree(base, out, ignore=shutil.ignore_patterns("model.onnx"))  # build() writes it
            build(out / "model.onnx")
            saved = load_exported(out)
            speed = throughput(saved, lines, lang)
            print(f"| {name} | {speed:.1f} | {score(saved, examples, lang):.4f} |", flush=True)

        def int8(model: Path, exclude: list[str] | None = None) -> Callable[[Path], None]:
            # Fused graphs hold contrib ops that shape inference cannot type: tell the quantizer they are float.
            options = {"DefaultTensorType": onnx.TensorProto.FLOAT}
            return lambda target: quantize_dynamic(
                str(model), str(target), weight_type=QuantType.QInt8, nodes_to_exclude=exclude, extra_options=options
            )

        print(f"| variant | predict sentences/s | test {run.config.task.metric} ({len(examples)} {lang} sentences) |")
        print("|---|---:|---:|")
        fused = Path(tmp) / "fused.onnx"
        optimize_model(
            str(source), model_type="bert", num_heads=config.num_attention_heads, hidden_size=config.hidden_size
        ).save_model_to_file(str(fused))
        variant("fp32", lambda target: shutil.copy(source, target))
        variant("fp32, graph fusion", lambda target: shutil.copy(fused, target))
        variant("int8 (mlft export quantize=int8)", int8(source))
        variant("int8 of the fused graph", int8(fused))
        for group, nodes in matrix_groups(source, config.num_hidden_layers).items():
            variant(f"int8, {group} in fp32", int8(source, nodes))


if __name__ == "__main__":
    main()
