"""Turns metrics per split and language into the per-language table of report.md and the console."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from mlft.config import METRICS as COLUMNS

Metrics = dict[str, dict[str, dict[str, Any]]]  # split -> lang -> metrics


def means(metrics: Metrics, columns: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """The unweighted mean over languages of each column, per split (the XTREME convention)."""
    out = {}
    for split, by_lang in metrics.items():
        if by_lang:
            out[split] = {c: sum(m[c] for m in by_lang.values()) / len(by_lang) for c in columns}
    return out


def markdown(metrics: Metrics, task_type: str, title: str) -> str:
    columns = COLUMNS[task_type]
    lines = [
        f"# {title}",
        "",
        "| split | lang | n | " + " | ".join(columns) + " |",
        "|---|---|---:|" + "---:|" * len(columns),
    ]
    mean = means(metrics, columns)
    for split, by_lang in metrics.items():
        for lang, m in by_lang.items():
            lines.append(f"| {split} | {lang} | {m['n']} | " + " | ".join(f"{m[c]:.4f}" for c in columns) + " |")
        if len(by_lang) > 1:
            lines.append(f"| {split} | **mean** | | " + " | ".join(f"{mean[split][c]:.4f}" for c in columns) + " |")
    return "\n".join(lines) + "\n"


def write_reports(run_dir: Path, metrics: Metrics, task_type: str, extra: dict[str, Any], title: str) -> str:
    """Writes metrics.json, metrics.csv, report.md and per-class confusion matrices; returns the table."""
    columns = COLUMNS[task_type]
    (run_dir / "metrics.json").write_text(
        json.dumps({**metrics, "mean": means(metrics, columns), **extra}, indent=2, ensure_ascii=False)
    )
    with (run_dir / "metrics.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["split", "lang", "n", *columns])
        for split, by_lang in metrics.items():
            for lang, m in by_lang.items():
                writer.writerow([split, lang, m["n"], *(f"{m[c]:.6f}" for c in columns)])
    for split, by_lang in metrics.items():
        for lang, m in by_lang.items():
            if "confusion_matrix" in m:
                labels, matrix = m["confusion_matrix"]["labels"], m["confusion_matrix"]["matrix"]
                with (run_dir / f"confusion-{split}-{lang}.csv").open("w", newline="") as f:
                    writer = csv.writer(f)
                    writer.writerow(["gold \\ predicted", *labels])
                    writer.writerows([label, *row] for label, row in zip(labels, matrix))
    table = markdown(metrics, task_type, title)
    (run_dir / "report.md").write_text(table)
    return table
