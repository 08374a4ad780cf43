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
ZH_SENTIMENT = [
    f"data.train={FIXTURES / 'sentiment' / 'zh_train.jsonl'}",
    f"data.dev={FIXTURES / 'sentiment' / 'zh_dev.jsonl'}",
    f"data.test={FIXTURES / 'sentiment' / 'zh_test.jsonl'}",
]
NER_DATASETS = f"task.datasets={{zh: '{FIXTURES}/zh_ner/{{split}}.conll', en: '{FIXTURES}/en_ner/{{split}}.conll'}}"
"""Per-language NER datasets from the fixtures: `{split}` becomes train, dev and test."""
FAST = ["trainer.progress=false", "trainer.batch_size=8", "optimizer.lr=5e-3"]


def train(run_dir: Path, model: Path, *overrides: str) -> Path:
    main(["train", f"model={model}", f"hydra.run.dir={run_dir}", *FAST, *overrides])
    return run_dir


def train_recipe(run_dir: Path, model: Path, *overrides: str) -> Path:
    """A run with the recipe's own learning rate and batch size (train() sets the tiny models' FAST ones)."""
    main(["train", f"model={model}", f"hydra.run.dir={run_dir}", "trainer.progress=false", *overrides])
    return run_dir


def snapshot(root: Path) -> dict[str, bytes | str | None]:
    """Every file with its bytes, every folder (None) and every link (its target), so that an empty folder left
    behind, or a file written through a link, is caught too."""
    found: dict[str, bytes | str | None] = {}
    for p in sorted(root.rglob("*")):
        content = str(p.readlink()) if p.is_symlink() else p.read_bytes() if p.is_file() else None
        found[str(p.relative_to(root))] = content
    return found


def metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def cli_error(capsys, *args: str) -> str:
    """Runs mlft in this process, expecting a user error (exit 2); returns what it printed to stderr."""
    import pytest

    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, err[-2000:]
    return err


def run_cli(
    *args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mlft", *args],
        capture_output=True,
        text=True,
        cwd=cwd or ROOT,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )


def assert_final_weights_are(run_dir: Path, weights: dict, atol: float = 1e-6) -> None:
    """The run's model/ holds `weights` (a checkpoint's): a checkpoint's embedding matrix has only the rows
    the run's data uses (model.compact_embeddings), which model/ keeps at those rows of its full matrix."""
    import torch
    from safetensors.torch import load_file

    from mlft.models.compact import ROWS_FILE

    final = load_file(run_dir / "model" / "model.safetensors")
    rows_file = run_dir / "checkpoints" / ROWS_FILE
    rows = json.loads(rows_file.read_text()) if rows_file.is_file() else None
    assert final.keys() == weights.keys()
    for name, tensor in weights.items():
        saved = final[name][rows] if rows is not None and final[name].shape != tensor.shape else final[name]
        torch.testing.assert_close(saved, tensor, rtol=0, atol=atol)


def task_rules(kind: str = "token_classification", multi_label: bool = False):
    """A task type's object with no labels yet: what data loading asks about examples."""
    from mlft.config import ModelConfig, TaskConfig
    from mlft.tasks import build_task

    metric = "f1" if kind == "token_classification" else "accuracy"
    config = TaskConfig(name="t", type=kind, metric=metric, multi_label=multi_label)
    return build_task(config, ModelConfig(name="m", name_or_path="m"), [])


def read_examples(
    path: Path, kind: str = "sequence_classification", columns: dict | None = None, label_separator: str | None = None
) -> list[dict]:
    """A data file's examples as a task type reads them."""
    from mlft.config import DataConfig
    from mlft.data.load import read_source, to_examples

    rules = task_rules(kind, multi_label=label_separator is not None)
    data = DataConfig(label_separator=label_separator)
    examples = to_examples(read_source(str(path), "train", data, rules, columns or {}), rules)
    rules.convert_labels(examples, "IOB2", False)
    return examples
