"""Size, predict throughput and test score of a run's model as PyTorch fp32, ONNX fp32, ONNX int8 and trimmed.

    python scripts/export_table.py --run runs/ner-zh/<time> --sentences 1000

Exports into <run>/export-bench/ (replacing earlier ones), then for each variant: the size of the weights
file, sentences/s of `mlft predict`'s code path on the first N test sentences of the run's first evaluation
language (as raw text, one per line), and the task metric on the same sentences. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from mlft.commands.evaluate import load_eval_data, score_model
from mlft.commands.export import ExportArgs, export
from mlft.commands.predict import Predictor
from mlft.commands.saved import SavedRun, load_exported, load_run
from mlft.data.feature_cache import Encoder
from mlft.engine.evaluate import encode_sets
from mlft.tasks.alignment import NO_SPACE_LANGS


def score(saved: SavedRun, examples: list[dict], lang: str) -> float:
    sets = encode_sets(Encoder(saved.task, saved.tokenizer, None), {"test": {lang: examples}})
    return score_model(saved, sets, 64, cpu=True)["test"][lang][saved.config.task.metric]


def throughput(saved: SavedRun, lines: list[str], lang: str) -> float:
    predictor = Predictor(saved, cpu=True, progress=False)
    predictor(lines[:16], lang)  # warm-up
    start = time.perf_counter()
    predictor(lines, lang)
    return len(lines) / (time.perf_counter() - start)


def test_sentences(saved: SavedRun, n: int) -> tuple[str, list[dict], list[str]]:
    """The run's first evaluation language, its first `n` test examples, and each as the raw text a user sends."""
    lang = saved.config.lang.eval[0]
    examples = load_eval_data(saved, saved.config.data, [lang])["test"][lang][:n]
    if saved.config.task.type != "token_classification":
        return lang, examples, [ex["text"] for ex in examples]
    return lang, examples, [joiner(lang).join(ex["tokens"]) for ex in examples]


def joiner(lang: str) -> str:
    """What separates a token-classification example's tokens in the raw text a user would send."""
    return "" if lang in NO_SPACE_LANGS else " "


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True)
    parser.add_argument("--sentences", type=int, default=1000)
    parser.add_argument("--out-dir", help="where the exports go (default: <run>/export-bench)")
    args = parser.parse_args(argv)
    run = load_run(Path(args.run))
    cfg = run.config
    lang, examples, lines = test_sentences(run, args.sentences)

    out_root = Path(args.out_dir) if args.out_dir else Path(args.run) / "export-bench"
    variants: list[tuple[str, SavedRun, Path]] = [
        ("PyTorch fp32 (run)", run, Path(args.run) / "model" / "model.safetensors")
    ]
    for name, fmt, quantize, trim in (
        ("ONNX fp32", "onnx", "none", "none"),
        ("ONNX int8 (dynamic)", "onnx", "int8", "none"),
        ("PyTorch fp32, vocabulary of the training data", "hf", "none", "train"),
        ("ONNX int8, vocabulary of the training data", "onnx", "int8", "train"),
    ):
        out = out_root / f"{fmt}-{quantize}-{trim}"
        export(
            ExportArgs(
                run=args.run, format=fmt, quantize=quantize, trim_vocab=trim, out=str(out), check=False, overwrite=True
            )
        )
        weights = out / ("model.onnx" if fmt == "onnx" else "model.safetensors")
        variants.append((name, load_exported(out), weights))

    metric = cfg.task.metric
    print(f"| variant | weights MB | predict sentences/s | test {metric} ({len(examples)} {lang} sentences) |")
    print("|---|---:|---:|---:|")
    for name, saved, weights in variants:
        size = sum(p.stat().st_size for p in weights.parent.glob(weights.name + "*")) / 1e6
        speed = throughput(saved, lines, lang)
        value = score(saved, examples, lang)
        print(f"| {name} | {size:.0f} | {speed:.1f} | {value:.4f} |", flush=True)


if __name__ == "__main__":
    main()
