"""Per-language results of one run or evaluation: report.md, metrics.csv, metrics.json and bar charts.

Languages trained on are the source; the others are zero-shot targets. For each split with both,
the transfer gap of a target is the mean source score minus the target's score (XTREME's
"cross-lingual transfer gap"), reported per language and as the mean over targets.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from mlft.report.plots import Series, bar_chart, class_scores, confusion, curves
from mlft.rundir import METRICS_CSV, METRICS_FILE, PLOTS_DIR, REPORT_FILE

Metrics = dict[str, dict[str, dict[str, Any]]]  # split -> lang -> metrics


def means(metrics: Metrics, columns: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """The unweighted mean over languages of each column, per split (the XTREME convention)."""
    out = {}
    for split, by_lang in metrics.items():
        if by_lang:
            out[split] = {c: sum(m[c] for m in by_lang.values()) / len(by_lang) for c in columns}
    return out


def transfer(metrics: Metrics, train_langs: list[str], metric: str) -> dict[str, dict[str, Any]]:
    """Per split with source and target languages: source mean, target mean, gap per target and mean gap."""
    out = {}
    for split, by_lang in metrics.items():
        sources = [lang for lang in by_lang if lang in train_langs]
        targets = [lang for lang in by_lang if lang not in train_langs]
        if not sources or not targets:
            continue
        source = sum(by_lang[lang][metric] for lang in sources) / len(sources)
        gaps = {lang: source - by_lang[lang][metric] for lang in targets}
        out[split] = {
            "metric": metric,
            "source_langs": sources,
            "source": source,
            "target": sum(by_lang[lang][metric] for lang in targets) / len(targets),
            "gap": gaps,
            "mean_gap": sum(gaps.values()) / len(gaps),
        }
    return out


def markdown(
    metrics: Metrics,
    columns: tuple[str, ...],
    title: str,
    train_langs: list[str] | None = None,
    metric: str | None = None,
) -> str:
    gaps = transfer(metrics, train_langs or [], metric or columns[0]) if train_langs else {}
    with_gap = bool(gaps)
    lines = [
        f"# {title}",
        "",
        "| split | lang | n | " + " | ".join(columns) + (" | gap |" if with_gap else " |"),
        "|---|---|---:|" + "---:|" * (len(columns) + with_gap),
    ]
    mean = means(metrics, columns)
    for split, by_lang in metrics.items():
        split_gaps = gaps.get(split, {}).get("gap", {})
        for lang, m in by_lang.items():
            name = f"{lang} (train)" if with_gap and lang in (train_langs or []) else lang
            gap = [f"{split_gaps[lang]:.4f}" if lang in split_gaps else ""] if with_gap else []
            lines.append(
                f"| {split} | {name} | {m['n']} | " + " | ".join([f"{m[c]:.4f}" for c in columns] + gap) + " |"
            )
        if len(by_lang) > 1:
            gap = [f"{gaps[split]['mean_gap']:.4f}" if split in gaps else ""] if with_gap else []
            cells = [f"{mean[split][c]:.4f}" for c in columns] + gap
            lines.append(f"| {split} | **mean** | | " + " | ".join(cells) + " |")
    for split, t in gaps.items():
        lines.append("")
        lines.append(
            f"{split}: transfer gap in {t['metric']} = source ({', '.join(t['source_langs'])}) {t['source']:.4f} "
            f"− target mean {t['target']:.4f} = **{t['mean_gap']:.4f}**"
        )
    return "\n".join(lines) + "\n"


def write_csv(path: Path, metrics: Metrics, columns: tuple[str, ...], gaps: dict[str, dict[str, Any]]) -> None:
    mean = means(metrics, columns)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["split", "lang", "n", *columns, "transfer_gap"])
        for split, by_lang in metrics.items():
            split_gaps = gaps.get(split, {}).get("gap", {})
            for lang, m in by_lang.items():
                gap = f"{split_gaps[lang]:.6f}" if lang in split_gaps else ""
                writer.writerow([split, lang, m["n"], *(f"{m[c]:.6f}" for c in columns), gap])
            if split in mean:
                gap = f"{gaps[split]['mean_gap']:.6f}" if split in gaps else ""
                writer.writerow([split, "mean", "", *(f"{mean[split][c]:.6f}" for c in columns), gap])


def write_reports(
    folder: Path,
    metrics: Metrics,
    columns: tuple[str, ...],
    extra: dict[str, Any],
    title: str,
    train_langs: list[str] | None = None,
    metric: str | None = None,
    before: Metrics | None = None,
) -> str:
    """Writes metrics.json/.csv, report.md, confusion matrices and a bar chart per split into `folder` (a run,
    or an evaluation's folder); `columns`: the task's metrics in table order; `before`: the untrained model's
    metrics, a second table. Returns the report."""
    metric = metric or columns[0]
    gaps = transfer(metrics, train_langs or [], metric)
    summary = {"mean": means(metrics, columns), "transfer": gaps, "languages": {"train": train_langs or []}}
    (folder / METRICS_FILE).write_text(json.dumps({**metrics, **summary, **extra}, indent=2, ensure_ascii=False))
    write_csv(folder / METRICS_CSV, metrics, columns, gaps)
    for split, by_lang in metrics.items():
        for lang, m in by_lang.items():
            if "confusion_matrix" in m:
                labels, matrix = m["confusion_matrix"]["labels"], m["confusion_matrix"]["matrix"]
                with (folder / f"confusion-{split}-{lang}.csv").open("w", newline="") as f:
                    writer = csv.writer(f)
                    writer.writerow(["gold \\ predicted", *labels])
                    writer.writerows([label, *row] for label, row in zip(labels, matrix))
        if by_lang:
            scores = {lang: m[metric] for lang, m in by_lang.items()}
            (folder / PLOTS_DIR).mkdir(exist_ok=True)
            chart = folder / PLOTS_DIR / f"{split}-{metric}.png"
            bar_chart(chart, scores, train_langs or [], f"{title} — {split} {metric}")
    detail_plots(folder / PLOTS_DIR, metrics)
    table = markdown(metrics, columns, title, train_langs, metric)
    if before:
        table += "\n" + markdown(before, columns, f"{title} · before training", None, metric)
    (folder / REPORT_FILE).write_text(table + embedded_plots(folder))
    return table


def detail_plots(folder: Path, metrics: Metrics) -> None:
    """Per language of the final split (test, else dev): the confusion matrix of single-label classification,
    precision/recall/F1 per entity type (NER) or per class (multi-label, which has no confusion matrix)."""
    split = "test" if metrics.get("test") else "dev"
    for lang, m in metrics.get(split, {}).items():
        folder.mkdir(exist_ok=True)
        if "confusion_matrix" in m:
            labels, matrix = m["confusion_matrix"]["labels"], m["confusion_matrix"]["matrix"]
            confusion(folder / f"confusion-{split}-{lang}.png", labels, matrix, f"{split}/{lang}: confusion matrix")
        elif m.get("per_class"):
            class_scores(folder / f"per-class-{split}-{lang}.png", m["per_class"], f"{split}/{lang}: per class")
        if m.get("per_type"):
            class_scores(folder / f"per-type-{split}-{lang}.png", m["per_type"], f"{split}/{lang}: per entity type")


def embedded_plots(folder: Path) -> str:
    """A report.md section showing every chart in plots/ (learning curves first)."""
    charts = sorted((folder / PLOTS_DIR).glob("*.png"), key=lambda p: (not p.name.startswith("learning"), p.name))
    if not charts:
        return ""
    return "\n## Plots\n\n" + "\n".join(f"![{p.stem}]({PLOTS_DIR}/{p.name})" for p in charts) + "\n"


def learning_curves(
    folder: Path, losses: list[dict[str, float]], history: list[dict[str, Any]], metric: str, title: str
) -> None:
    """plots/learning-curves.png: the training loss, and the dev metric per language at each evaluation."""
    panels: list[tuple[str, Series]] = []
    if losses:
        panels.append(("training loss", {"train": [(x["step"], x["loss"]) for x in losses]}))
    dev: Series = {}
    for entry in history:
        for key, value in entry.items():
            lang, _, name = key.rpartition("/")
            if name == metric and lang and isinstance(value, (int, float)):
                dev.setdefault(lang, []).append((entry["step"], value))
    if dev:
        panels.append((f"dev {metric}", dev))
    if panels:
        (folder / PLOTS_DIR).mkdir(exist_ok=True)
        curves(folder / PLOTS_DIR / "learning-curves.png", panels, title)
