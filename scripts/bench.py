"""mlft against HF Trainer (as transformers' run_ner.py) and HF pipeline, same model, data and machine, one run.

    python scripts/bench.py --train 1000 --test 300          # `make bench`
    python scripts/bench.py --train 5000 --test 1000 --out runs/bench/full.md

Data: the first N MSRA training sentences and the first M MSRA test sentences (packaged corpus), model:
multilingual-e5-small (the converted offline default). Every variant runs in its own process, so its
peak RSS is its own. Training throughput counts only the training steps (the peer's `train_runtime`,
mlft's `throughput` in metrics.json); FLOP/s = 6 × non-embedding parameters × non-padding tokens / s,
against a GEMM rate measured here at the model's shapes (prediction: 2 × parameters × tokens / s, counting
the tokens each side feeds its model). mlft's variants share one fresh feature cache (in the work folder), so
the first one tokenizes and the others read the cache: "prep s" shows both. Test F1 is strict entity-level
seqeval (IOB2) on the dataset's characters for both. Prints one Markdown table and the mlft/peer ratios.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

PEER_LR = 5e-5  # TrainingArguments' default, which run_ner.py keeps
BATCH = 16
MAX_LENGTH = 128
PREDICT_RATE = "predict_sentences_per_second"
PEER = "peer: HF Trainer (run_ner.py defaults, fp32)"
PIPELINE = "peer: HF pipeline (token-classification)"
DEFAULTS = "mlft defaults"
INT8 = "mlft predict, int8 ONNX export (mlft export format=onnx quantize=int8)"
# mlft's defaults have every speed option on; each variant turns one off. With compact embeddings (default)
# freezing the embeddings no longer saves time, only their training.
MLFT_VARIANTS = {
    DEFAULTS: [],
    "mlft without length grouping (group_by_length=false)": ["trainer.group_by_length=false"],
    "mlft, full embedding matrix (compact_embeddings=false)": ["model.compact_embeddings=false"],
    "mlft + freeze_embeddings": ["model.freeze_embeddings=true"],
    "mlft demo recipe (+ freeze_embeddings, freeze_layers=2, lr 2e-4, head lr 3e-3)": [
        "model.freeze_embeddings=true",
        "model.freeze_layers=2",
        "optimizer.lr=2e-4",
        "optimizer.head_lr=3e-3",
    ],
}


def gemm_rate(dtype_name: str) -> float:
    """FLOP/s of a (2048×384)·(384×1536) matmul: the feed-forward shape of e5-small at batch×length 2048."""
    import torch

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    a, b = torch.randn(2048, 384, dtype=dtype), torch.randn(384, 1536, dtype=dtype)
    for _ in range(3):
        a @ b
    repeats, start = 20, time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * 2048 * 384 * 1536 * repeats / (time.perf_counter() - start)


def non_embedding_parameters(model) -> int:
    return sum(p.numel() for name, p in model.named_parameters() if "embeddings" not in name)


def msra(n_train: int, n_test: int) -> tuple[list[dict], list[dict]]:
    from mlft.data.builtin import read_builtin

    return read_builtin("builtin:msra", "train")[:n_train], read_builtin("builtin:msra", "test")[:n_test]


def strict_f1(gold: list[list[str]], predicted: list[list[str]]) -> float:
    from seqeval.metrics import f1_score
    from seqeval.scheme import IOB2

    return float(f1_score(gold, predicted, mode="strict", scheme=IOB2))


def worker_peer_train(args: argparse.Namespace) -> dict:
    """HF Trainer with run_ner.py's defaults: first-subtoken labels on is_split_into_words input."""
    from datasets import Dataset
    from transformers import (
        AutoModelForTokenClassification,
        AutoTokenizer,
        DataCollatorForTokenClassification,
        Trainer,
        TrainingArguments,
    )

    from mlft.models.cache import converted_model

    train, test = msra(args.train, args.test)
    labels = ["O", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
    label_id = {label: i for i, label in enumerate(labels)}
    model_dir = args.base_model or converted_model()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)

    def encode(examples: list[dict]) -> Dataset:
        rows = []
        for ex in examples:
            enc = tokenizer(ex["tokens"], is_split_into_words=True, truncation=True, max_length=MAX_LENGTH)
            previous, row_labels = None, []
            for word in enc.word_ids():
                row_labels.append(-100 if word is None or word == previous else label_id[ex["tags"][word]])
                previous = word
            rows.append({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "labels": row_labels})
        return Dataset.from_list(rows)

    train_set, test_set = encode(train), encode(test)
    model = AutoModelForTokenClassification.from_pretrained(
        model_dir, num_labels=len(labels), id2label=dict(enumerate(labels)), label2id=label_id
    )
    training_args = TrainingArguments(
        output_dir=str(Path(args.workdir) / "peer-trainer"),
        per_device_train_batch_size=BATCH,
        per_device_eval_batch_size=64,
        num_train_epochs=1,
        learning_rate=PEER_LR,
        bf16=args.bf16,
        # transformers 5 spells run_ner.py's --group_by_length as a sampling strategy.
        train_sampling_strategy="group_by_length" if args.group_by_length else "random",
        use_cpu=True,
        save_strategy="no",
        report_to=[],
        logging_strategy="no",
        seed=42,
        disable_tqdm=True,
    )
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=train_set,
        data_collator=DataCollatorForTokenClassification(tokenizer),
    )
    result = trainer.train()
    output = trainer.predict(test_set)
    predicted_ids = output.predictions.argmax(-1)
    gold, predicted = [], []
    for ex, row, pred in zip(test, test_set, predicted_ids):
        words = [labels[p] for p, gold_id in zip(pred, row["labels"]) if gold_id != -100]
        gold.append(ex["tags"])
        predicted.append(words + ["O"] * (len(ex["tags"]) - len(words)))  # truncated words: O
    if args.save_model:
        trainer.save_model(args.save_model)
        tokenizer.save_pretrained(args.save_model)
    return {
        "train_seconds": result.metrics["train_runtime"],
        "samples_per_second": result.metrics["train_samples_per_second"],
        "tokens": sum(len(row["input_ids"]) for row in train_set),
        "f1": strict_f1(gold, predicted),
        "non_embedding_parameters": non_embedding_parameters(model),
    }


def worker_peer_pipeline(args: argparse.Namespace) -> dict:
    from transformers import pipeline

    _, test = msra(0, args.test)
    lines = ["".join(ex["tokens"]) for ex in test]
    nlp = pipeline("token-classification", model=args.model, aggregation_strategy="simple", device=-1)
    nlp(lines[:4])
    start = time.perf_counter()
    nlp(lines)
    seconds = time.perf_counter() - start
    tokens = sum(len(ids) for ids in nlp.tokenizer(lines, truncation=True)["input_ids"])
    return {
        PREDICT_RATE: len(lines) / seconds,
        "sentences": len(lines),
        "tokens": tokens,
        "seconds": seconds,
        "non_embedding_parameters": non_embedding_parameters(nlp.model),
    }


def worker_mlft_train(args: argparse.Namespace) -> dict:
    from mlft.cli import main

    run_dir = Path(args.workdir) / args.run_name
    overrides = [
        "task=ner",
        "lang=zh",
        f"data.max_train_samples={args.train}",
        f"data.max_test_samples={args.test}",
        "data.max_dev_samples=1",  # the peer evaluates no dev set; one sentence is the least mlft takes
        "trainer.epochs=1",
        f"trainer.batch_size={BATCH}",
        "trainer.eval_strategy=no",
        "trainer.keep_last=0",  # like the peer's save_strategy="no": no resumable checkpoint kept
        "trainer.progress=false",
        "trainer.tensorboard=false",
        f"trainer.precision={'bf16' if args.bf16 else 'no'}",
        f"hydra.run.dir={run_dir}",
        *([f"model={args.base_model}"] if args.base_model else []),
        *json.loads(args.overrides),
    ]
    main(["train", *overrides])
    metrics = json.loads((run_dir / "metrics.json").read_text())
    from transformers import AutoModelForTokenClassification

    model = AutoModelForTokenClassification.from_pretrained(run_dir / "model")
    if not args.keep_model:  # only the run that `mlft predict` is timed on needs its ~0.5 GB model
        shutil.rmtree(run_dir / "model")
        shutil.rmtree(run_dir / "checkpoints")
    prep = metrics["preprocessing"]
    return {
        "prep_seconds": prep["load_data_seconds"] + prep["encode_seconds"],
        "prep_cached": prep["sets_from_cache"] == prep["encoded_sets"],
        "train_seconds": metrics["throughput"]["train_seconds"],
        "samples_per_second": metrics["throughput"]["samples_per_second"],
        "tokens": metrics["throughput"]["train_tokens"],
        "f1": metrics["test"]["zh"]["f1"],
        "non_embedding_parameters": non_embedding_parameters(model),
    }


def worker_mlft_export(args: argparse.Namespace) -> dict:
    from mlft.commands.export import ExportArgs, export

    export(ExportArgs(run=args.model, format="onnx", quantize="int8", out=args.save_model, check=False))
    return {}


def worker_mlft_predict(args: argparse.Namespace) -> dict:
    from mlft.commands.predict import Predictor
    from mlft.commands.saved import load_exported, load_run

    _, test = msra(0, args.test)
    lines = ["".join(ex["tokens"]) for ex in test]
    exported = (Path(args.model) / "model.onnx").is_file()
    saved = load_exported(Path(args.model)) if exported else load_run(Path(args.model))
    predictor = Predictor(saved, cpu=True, progress=False)
    predictor(lines[:4], "zh")
    start = time.perf_counter()
    predictor(lines, "zh")
    seconds = time.perf_counter() - start
    features = saved.task.encode([{"tokens": list(line)} for line in lines], saved.tokenizer, "zh")
    return {
        PREDICT_RATE: len(lines) / seconds,
        "sentences": len(lines),
        "tokens": sum(len(f["input_ids"]) for f in features),
        "seconds": seconds,
        # an ONNX graph has no torch parameters: main() takes the count from the run it was exported from
        **({} if exported else {"non_embedding_parameters": non_embedding_parameters(saved.model)}),
    }


WORKERS = {
    "peer_train": worker_peer_train,
    "peer_pipeline": worker_peer_pipeline,
    "mlft_train": worker_mlft_train,
    "mlft_export": worker_mlft_export,
    "mlft_predict": worker_mlft_predict,
}


def run_worker(name: str, args: argparse.Namespace, **options: object) -> dict:
    """Runs one worker in a fresh process; returns its result plus its own peak RSS and wall time."""
    command = [sys.executable, __file__, "--worker", name, "--train", str(args.train), "--test", str(args.test)]
    command += ["--workdir", args.workdir]
    if args.base_model:
        command += ["--base-model", args.base_model]
    for key, value in options.items():
        if value is True:
            command.append(f"--{key.replace('_', '-')}")
        elif value not in (None, False):
            command += [f"--{key.replace('_', '-')}", str(value)]
    start = time.perf_counter()
    result_file = Path(args.workdir) / f"{name}-{os.getpid()}-{time.time_ns()}.json"
    process = subprocess.Popen([*command, "--result", str(result_file)], stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    if status != 0:
        raise SystemExit(f"bench: worker {name} {options} failed (status {status})")
    result = json.loads(result_file.read_text())
    result["peak_rss_gb"] = usage.ru_maxrss / 1e6  # kilobytes on Linux
    result["wall_seconds"] = time.perf_counter() - start
    return result


def has_fast_bf16() -> bool:
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    return "avx512_bf16" in flags or "amx_bf16" in flags


def table(rows: dict[str, dict], gemm: dict[str, float]) -> str:
    lines = [
        "| variant | prep s | train samples/s | tokens/s | train s | wall s | peak RSS GB | FLOP/s vs GEMM "
        "| test F1 | predict sent/s | predict tokens/sent |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in rows.items():
        peak = gemm["bf16" if "bf16" in name else "fp32"]
        if "samples_per_second" in r:
            flops = 6 * r["non_embedding_parameters"] * r["tokens"] / r["train_seconds"]
            prep = (
                f"{r['prep_seconds']:.1f}" + (" (cached)" if r["prep_cached"] else "") if "prep_seconds" in r else ""
            )
            lines.append(
                f"| {name} | {prep} | {r['samples_per_second']:.2f} | {r['tokens'] / r['train_seconds']:.0f} | "
                f"{r['train_seconds']:.0f} | {r['wall_seconds']:.0f} | {r['peak_rss_gb']:.2f} | "
                f"{flops / 1e9:.0f} G ({flops / peak:.0%}) | {r['f1']:.4f} | | |"
            )
        else:
            flops = 2 * r["non_embedding_parameters"] * r["tokens"] / r["seconds"]
            per_sentence = r["tokens"] / r["sentences"]
            lines.append(
                f"| {name} | | | | | {r['wall_seconds']:.0f} | {r['peak_rss_gb']:.2f} | "
                f"{flops / 1e9:.0f} G ({flops / peak:.0%}) | | {r[PREDICT_RATE]:.1f} | {per_sentence:.1f} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=int, default=1000, help="MSRA training sentences (default 1000)")
    parser.add_argument("--test", type=int, default=300, help="MSRA test sentences (default 300)")
    parser.add_argument("--workdir", help="where runs and models go (default: runs/bench/<time>)")
    parser.add_argument("--out", help="also write the Markdown report here")
    parser.add_argument("--bf16", action="store_true", help="add bf16 variants (default: only on CPUs with bf16)")
    parser.add_argument(
        "--base-model", help="the encoder both sides fine-tune (default: the converted multilingual-e5-small)"
    )
    parser.add_argument("--worker", choices=WORKERS, help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--group-by-length", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--save-model", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--run-name", help=argparse.SUPPRESS)
    parser.add_argument("--keep-model", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--overrides", default="[]", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        Path(args.result).write_text(json.dumps(WORKERS[args.worker](args)))
        return
    stamp = datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    args.workdir = args.workdir or str(Path("runs") / "bench" / stamp)
    Path(args.workdir).mkdir(parents=True, exist_ok=False)
    # A fresh feature cache: the first mlft variant tokenizes, the later ones show what a cached run saves.
    os.environ["MLFT_FEATURE_CACHE"] = str(Path(args.workdir) / "feature-cache")
    with_bf16 = args.bf16 or has_fast_bf16()
    gemm = {"fp32": gemm_rate("fp32"), "bf16": gemm_rate("bf16")}
    rows: dict[str, dict] = {}
    peer_model = str(Path(args.workdir) / "peer-model")
    rows[PEER] = run_worker("peer_train", args, save_model=peer_model)
    rows["peer: HF Trainer + group_by_length"] = run_worker("peer_train", args, group_by_length=True)
    if with_bf16:
        rows["peer: HF Trainer + bf16 + group_by_length"] = run_worker(
            "peer_train", args, group_by_length=True, bf16=True
        )
    rows[PIPELINE] = run_worker("peer_pipeline", args, model=peer_model)
    variants = dict(MLFT_VARIANTS)
    for i, (name, overrides) in enumerate(variants.items()):
        rows[name] = run_worker(
            "mlft_train", args, run_name=f"mlft-{i}", overrides=json.dumps(overrides), keep_model=i == 0
        )
    if with_bf16:
        rows["mlft defaults + bf16"] = run_worker(
            "mlft_train",
            args,
            run_name="mlft-bf16",
            overrides=json.dumps(variants[DEFAULTS]),
            bf16=True,
        )
    rows["mlft predict"] = run_worker("mlft_predict", args, model=str(Path(args.workdir) / "mlft-0"))
    int8_model = str(Path(args.workdir) / "mlft-0-onnx-int8")
    run_worker("mlft_export", args, model=str(Path(args.workdir) / "mlft-0"), save_model=int8_model)
    rows[INT8] = run_worker("mlft_predict", args, model=int8_model)
    # same architecture; its FLOP/s are fp32-equivalent operations per second, shown against the fp32 GEMM
    rows[INT8]["non_embedding_parameters"] = rows["mlft predict"]["non_embedding_parameters"]
    peer, pipe, ours, predict = rows[PEER], rows[PIPELINE], rows[DEFAULTS], rows["mlft predict"]
    fastest_peer = max(
        (rows[n] for n in rows if n.startswith("peer: HF Trainer")), key=lambda r: r["samples_per_second"]
    )
    best = max((rows[n] for n in variants), key=lambda r: r["f1"])
    ratio = lambda a, b: f"{a / b:.2f}×"  # noqa: E731
    report = [
        f"# mlft vs HF Trainer / pipeline — {args.train} MSRA training sentences, {args.test} test sentences",
        "",
        f"Machine: {os.cpu_count()} CPUs; GEMM (2048×384·384×1536): fp32 {gemm['fp32'] / 1e9:.0f} GFLOP/s, "
        f"bf16 {gemm['bf16'] / 1e9:.0f} GFLOP/s"
        + ("" if with_bf16 else " — bf16 variants skipped (no avx512_bf16/amx_bf16; pass --bf16 to run them)"),
        "",
        table(rows, gemm),
        "",
        "Ratios (mlft / peer):",
        f"- training samples/s, defaults: {ratio(ours['samples_per_second'], peer['samples_per_second'])}",
        f"- training samples/s, defaults / peer's fastest: "
        f"{ratio(ours['samples_per_second'], fastest_peer['samples_per_second'])}",
        f"- test F1: best mlft variant {best['f1']:.4f}, peer {peer['f1']:.4f}",
        f"- predict sentences/s: {ratio(predict[PREDICT_RATE], pipe[PREDICT_RATE])}; "
        f"int8 ONNX export: {ratio(rows[INT8][PREDICT_RATE], pipe[PREDICT_RATE])}",
        f"- peak RSS while training, defaults: {ratio(ours['peak_rss_gb'], peer['peak_rss_gb'])}",
        "",
        f"Command: python scripts/bench.py --train {args.train} --test {args.test}" + (" --bf16" if args.bf16 else ""),
    ]
    text = "\n".join(report) + "\n"
    print(text)
    (Path(args.workdir) / "report.md").write_text(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()
