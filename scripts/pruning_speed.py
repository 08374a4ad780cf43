"""Size, predict speed and test score of pruned runs next to the run they were pruned from.

    python scripts/pruning_speed.py --runs <demo run> <pruned run> ... --sentences 1000 --rounds 3

For each run: parameters in the transformer layers and in all, the weights file's size, `mlft predict`'s
sentences/s (PyTorch fp32, this process's CPU threads) on the first --sentences test sentences of the run's first
evaluation language as raw text, timed in --rounds interleaved rounds (median; the runs alternate, so load from
elsewhere on the machine spreads over all of them), the speed relative to the first run, and the test metric of
the run's own metrics.json (all test sentences). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from export_table import test_sentences, throughput

from mlft.commands.saved import load_run
from mlft.models.freeze import encoder_layers


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="+", required=True)
    parser.add_argument("--sentences", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    runs = [load_run(Path(r)) for r in args.runs]
    lang, _, lines = test_sentences(runs[0], args.sentences)
    rates: list[list[float]] = [[] for _ in runs]
    for _ in range(args.rounds):
        for i, run in enumerate(runs):
            rates[i].append(throughput(run, lines, lang))
    metric = runs[0].config.task.metric
    rate_column = f"sentences/s ({len(lines)} {lang})"
    print(f"| run | layer parameters | all parameters | weights MB | {rate_column} | speed | test {metric} |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    first = statistics.median(rates[0])
    for path, run, rate in zip(args.runs, runs, rates):
        layers = sum(p.numel() for p in encoder_layers(run.model, "runs").parameters())
        total = sum(p.numel() for p in run.model.parameters())
        size = (Path(path) / "model" / "model.safetensors").stat().st_size / 1e6
        speed = statistics.median(rate)
        score = load_metrics(Path(path))["test"][lang][metric]
        print(
            f"| {Path(path).name} | {layers:,} | {total:,} | {size:.0f} | {speed:.1f} | {speed / first:.2f}x "
            f"| {score:.4f} |",
            flush=True,
        )


def load_metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


if __name__ == "__main__":
    main()
