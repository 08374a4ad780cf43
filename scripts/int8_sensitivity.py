"""Prediction variants of a token-classification run, each scored and timed, against the HF pipeline.

    python scripts/int8_sensitivity.py --run runs/ner-zh/<time> --sentences 1000 --timed 300 [--groups]

Exports the run to fp32 ONNX once, then builds: onnxruntime's transformer graph fusion of that graph and of a
graph exported with eager attention (whose Attention subgraph onnxruntime can fuse; the SDPA one it cannot),
dynamic int8 of the plain and of both fused graphs (what `mlft export quantize=int8` writes is the plain one),
and with --groups int8 with one group of matrices left in fp32 (each layer, the classifier, and each kind of
projection across layers). For each, and for the run's PyTorch model: the task metric on the first
--sentences test sentences, and `mlft predict`'s sentences/s on the first --timed of them with its ratio to
HF `pipeline("token-classification", aggregation_strategy="simple")` on the same sentences, timed in
--rounds interleaved rounds. The pipeline's own entities are scored too (same sentences, same strict seqeval),
so a variant's quality can be set against the peer's outputs as well as against the run's fp32 model. Prints a
Markdown table, and how many gold entities start or end inside one of the pipeline's tokens (those it cannot
get exactly).

With --peer-run (e.g. the teacher of a distilled student given as --run) the pipeline runs that run's model
instead, and that model is scored and timed as one more row: the ratios then compare the student's variants
with the pipeline on the model the student replaces.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import onnx
from export_table import joiner, score, test_sentences, throughput
from transformers import pipeline

from mlft.commands.export import ExportArgs, export
from mlft.commands.exporters import graph_io
from mlft.commands.saved import SavedRun, load_exported, load_run
from mlft.data.schemes import spans_to_iob2, to_spans
from mlft.models.onnx import export_eager_onnx, fuse_graph, quantize_int8
from mlft.tasks.token_classification import score as entity_score


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


def pipeline_rate(pipe: Any, lines: list[str]) -> float:
    """Sentences/s of an HF pipeline, after a warm-up (export_table.throughput does the same for mlft)."""
    pipe(lines[:16])
    start = time.perf_counter()
    pipe(lines)
    return len(lines) / (time.perf_counter() - start)


def token_spans(tokens: list[str], separator: str) -> list[tuple[int, int]]:
    """Character offsets of the tokens in `separator.join(tokens)`."""
    spans, position = [], 0
    for token in tokens:
        spans.append((position, position + len(token)))
        position += len(token) + len(separator)
    return spans


def entity_tags(tokens: list[str], separator: str, found: list[dict[str, Any]]) -> list[str]:
    """The pipeline's entities (character offsets into the joined text) as IOB2 tags on the gold tokens.

    A token takes an entity's type when their characters overlap; the first such token gets B-.
    """
    spans = token_spans(tokens, separator)
    entities = []
    for entity in found:
        inside = [i for i, (a, b) in enumerate(spans) if a < entity["end"] and b > entity["start"]]
        if inside:
            entities.append((inside[0], inside[-1] + 1, entity["entity_group"]))
    return spans_to_iob2(entities, len(tokens))


def pipeline_f1(pipe: Any, examples: list[dict], lines: list[str], lang: str) -> float:
    found = pipe(lines)
    predictions = [{"tags": entity_tags(ex["tokens"], joiner(lang), f)} for ex, f in zip(examples, found)]
    return entity_score(examples, predictions)["f1"]


def split_entities(tokenizer: Any, examples: list[dict], lines: list[str], lang: str) -> tuple[int, int]:
    """(gold entities with an edge inside one of the tokenizer's tokens, all gold entities)."""
    split = total = 0
    for ex, line in zip(examples, lines):
        offsets = tokenizer(line, return_offsets_mapping=True, add_special_tokens=False)["offset_mapping"]
        starts, ends = {a for a, _ in offsets}, {b for _, b in offsets}
        spans = token_spans(ex["tokens"], joiner(lang))
        for first, end, _ in to_spans(ex["tags"], "IOB2")[0]:
            total += 1
            split += spans[first][0] not in starts or spans[end - 1][1] not in ends
    return split, total


def int8(model: Path, exclude: list[str] | None = None) -> Callable[[Path], None]:
    return lambda target: quantize_int8(model, target, exclude)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True)
    parser.add_argument("--sentences", type=int, default=1000, help="test sentences scored")
    parser.add_argument("--timed", type=int, default=300, help="of those, how many are timed")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds (medians are printed)")
    parser.add_argument("--groups", action="store_true", help="also int8 with each group of matrices in fp32")
    parser.add_argument("--peer-run", help="the run whose model the pipeline runs (default: --run), also a row")
    args = parser.parse_args(argv)
    run = load_run(Path(args.run))
    lang, examples, lines = test_sentences(run, args.sentences)
    variants: dict[str, SavedRun] = {"PyTorch fp32 (`mlft predict run=...`)": run}
    peer_run = args.peer_run or args.run
    if args.peer_run:
        variants["PyTorch fp32 of --peer-run"] = load_run(Path(args.peer_run))
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "fp32"
        export(ExportArgs(run=args.run, format="onnx", out=str(base), check=False))
        source = base / "model.onnx"
        fused, eager, fused_eager = Path(tmp) / "fused.onnx", Path(tmp) / "eager.onnx", Path(tmp) / "fused-eager.onnx"
        heads, hidden = run.model.config.num_attention_heads, run.model.config.hidden_size
        fuse_graph(source, fused, heads, hidden)
        export_eager_onnx(run.model, eager, *graph_io(run))
        fuse_graph(eager, fused_eager, heads, hidden)

        def variant(name: str, build: Callable[[Path], None]) -> None:
            out = Path(tmp) / f"variant-{len(variants)}"
            shutil.copytree(base, out, ignore=shutil.ignore_patterns("model.onnx"))  # build() writes it
            build(out / "model.onnx")
            variants[name] = load_exported(out)  # onnxruntime holds the graph in memory from here on

        variant("ONNX fp32", lambda target: shutil.copy(source, target))
        variant("ONNX fp32, graph fusion", lambda target: shutil.copy(fused, target))
        variant(
            "ONNX fp32, graph fusion of the eager-attention export", lambda target: shutil.copy(fused_eager, target)
        )
        variant("ONNX int8 (mlft export quantize=int8)", int8(source))
        variant("ONNX int8 of the fused graph", int8(fused))
        variant("ONNX int8 of the fused eager-attention graph", int8(fused_eager))
        if args.groups:
            for group, nodes in matrix_groups(source, run.model.config.num_hidden_layers).items():
                variant(f"ONNX int8, {group} in fp32", int8(source, nodes))
    scores = {name: score(saved, examples, lang) for name, saved in variants.items()}
    # This machine's speed drifts by 10-30% within minutes: every round times the pipeline and then each variant,
    # and a variant's ratio is the median of its per-round ratios to that round's pipeline.
    pipe = pipeline("token-classification", model=str(Path(peer_run) / "model"), aggregation_strategy="simple")
    peer_score = pipeline_f1(pipe, examples, lines, lang)
    timed = lines[: args.timed]
    peer_rates: list[float] = []
    rates: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        peer_rates.append(pipeline_rate(pipe, timed))
        for name, saved in variants.items():
            rates[name].append(throughput(saved, timed, lang))
    metric = run.config.task.metric
    rounds = ", ".join(f"{r:.1f}" for r in peer_rates)
    layers = pipe.model.config.num_hidden_layers
    print(f"HF pipeline ({layers} layers): {statistics.median(peer_rates):.1f} sentences/s (median; rounds: {rounds})")
    split, total = split_entities(pipe.tokenizer, examples, lines, lang)
    print(f"gold entities starting or ending inside a pipeline token: {split} of {total}")
    print(f"| variant | predict sentences/s ({len(timed)}) | / pipeline | test {metric} ({len(examples)} {lang}) |")
    print("|---|---:|---:|---:|")
    print(f"| HF pipeline (median of the rounds) | {statistics.median(peer_rates):.1f} | 1.00x | {peer_score:.4f} |")
    for name, values in rates.items():
        ratio = statistics.median(v / peer for v, peer in zip(values, peer_rates))
        print(f"| {name} | {statistics.median(values):.1f} | {ratio:.2f}x | {scores[name]:.4f} |", flush=True)


if __name__ == "__main__":
    main()
