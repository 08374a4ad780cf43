"""Start-up of every mlft command, as whole processes (docs/results/performance.md).

    python scripts/startup.py --run <an NER run directory> [--repeat 5]

Times, each the median and the minimum of --repeat runs after one unmeasured run (a warm disk cache): `--help` of
every command, a config or argument error of every command (exit 2 expected), and `mlft predict` on 5 MSRA test
sentences against transformers' token-classification pipeline on the same 5 sentences and the run's model
(batch_size=32, a fresh process that imports transformers, loads the model and predicts, as mlft predict does).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SENTENCES = [
    "因为，形象问题是一个综合概念。",
    "有人认为，领导干部的业余兴趣爱好，与领导干部的形象无关。",
    "北京大学的学生在上海参加了中国科学院举办的会议。",
    "李明和王芳昨天去了南京博物院。",
    "联合国秘书长访问了日内瓦。",
]

PIPELINE = """
import sys
from transformers import pipeline
nlp = pipeline("token-classification", model=sys.argv[1], aggregation_strategy="simple", device=-1)
nlp([line.rstrip("\\n") for line in open(sys.argv[2], encoding="utf-8")], batch_size=32)
"""


def timed(command: list[str], expect: int, repeat: int) -> tuple[float, float]:
    """Median and minimum seconds of `repeat` runs of `command`, after one unmeasured run."""
    seconds = []
    for i in range(repeat + 1):
        start = time.perf_counter()
        result = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        elapsed = time.perf_counter() - start
        if result.returncode != expect:
            raise SystemExit(f"{' '.join(command)}: exit {result.returncode}, expected {expect}\n{result.stderr}")
        if i:
            seconds.append(elapsed)
    return statistics.median(seconds), min(seconds)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="an NER run directory (mlft train's output)")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    mlft = [sys.executable, "-m", "mlft"]
    work = Path(tempfile.mkdtemp(prefix="mlft-startup-"))
    sentences = work / "sentences.txt"
    sentences.write_text("".join(s + "\n" for s in SENTENCES), encoding="utf-8")
    missing = work / "no-such-run"
    rows: list[tuple[str, list[str], int]] = [("mlft --help", [*mlft, "--help"], 0)]
    for command in ("train", "eval", "predict", "export", "serve", "report"):
        rows.append((f"mlft {command} --help", [*mlft, command, "--help"], 0))
    rows += [
        ("mlft train trainer.epochs=0 (config error)", [*mlft, "train", "trainer.epochs=0"], 2),
        ("mlft train optimizer=nope (no such preset)", [*mlft, "train", "optimizer=nope"], 2),
        ("mlft eval run=<missing> (run error)", [*mlft, "eval", f"run={missing}"], 2),
        ("mlft predict run=<missing>", [*mlft, "predict", f"run={missing}", f"input={sentences}"], 2),
        ("mlft export run=<missing>", [*mlft, "export", f"run={missing}"], 2),
        ("mlft serve run=<missing>", [*mlft, "serve", f"run={missing}"], 2),
        ("mlft report runs=[<missing>]", [*mlft, "report", f"runs=[{missing}]"], 2),
    ]
    predict = [*mlft, "predict", f"run={args.run}", f"input={sentences}", f"output={work / 'out.jsonl'}"]
    rows += [
        ("mlft predict, 5 sentences", [*predict, "overwrite=true", "cpu=true"], 0),
        (
            "HF pipeline, 5 sentences (batch_size=32)",
            [sys.executable, "-c", PIPELINE, str(args.run / "model"), str(sentences)],
            0,
        ),
    ]
    print(f"| command | median s | min s |  (repeat={args.repeat}, after one unmeasured run)\n|---|---:|---:|")
    medians = {}
    for name, command, expect in rows:
        median, least = timed(command, expect, args.repeat)
        medians[name] = median
        print(f"| {name} | {median:.2f} | {least:.2f} |", flush=True)
    ratio = medians["mlft predict, 5 sentences"] / medians["HF pipeline, 5 sentences (batch_size=32)"]
    print(f"\nmlft predict / pipeline on 5 sentences (wall time, medians): {ratio:.2f}x")


if __name__ == "__main__":
    main()
