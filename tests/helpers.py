"""Running mlft from tests: in-process through the real CLI entry point, or as a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from mlft.cli import main

from conftest import FIXTURES, ROOT

ZH_NER = [
    f"data.train={FIXTURES / 'zh_ner' / 'train.conll'}",
    f"data.dev={FIXTURES / 'zh_ner' / 'dev.conll'}",
    f"data.test={FIXTURES / 'zh_ner' / 'test.conll'}",
]
FAST = ["trainer.progress=false", "trainer.batch_size=8", "optimizer.lr=5e-3"]


def train(run_dir: Path, model: Path, *overrides: str) -> Path:
    main(["train", f"model={model}", f"hydra.run.dir={run_dir}", *FAST, *overrides])
    return run_dir


def metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mlft", *args],
        capture_output=True,
        text=True,
        cwd=cwd or ROOT,
        env={**os.environ, **(env or {})},
        timeout=600,
    )
