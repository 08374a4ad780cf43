"""PNG charts: a bar per language, a train × eval language heatmap, a metric against a swept key, learning curves,
a confusion matrix and precision/recall/F1 per entity type or class."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers, and no GUI backend import

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import NullFormatter  # noqa: E402

SOURCE_COLOR, TARGET_COLOR = "#1f5fa8", "#9bbbe0"


def bar_chart(
    path: Path, scores: dict[str, float], train_langs: list[str], title: str, errors: dict[str, float] | None = None
) -> None:
    """Bars per language (training languages dark, zero-shot ones light) and a dashed line at the mean."""
    langs = list(scores)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.45 * len(langs) + 1.5), 3.2))
    colors = [SOURCE_COLOR if lang in train_langs else TARGET_COLOR for lang in langs]
    yerr = [errors.get(lang, 0.0) for lang in langs] if errors else None
    ax.bar(langs, [scores[lang] for lang in langs], color=colors, yerr=yerr, capsize=2 if errors else 0)
    mean = sum(scores.values()) / len(scores)
    ax.axhline(mean, color="#444444", linestyle="--", linewidth=1, label=f"mean {mean:.3f}")
    ax.set_ylim(0, max(1.0, max(scores.values()) * 1.05))
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    ax.tick_params(axis="x", labelrotation=90 if len(langs) > 12 else 0, labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def heatmap(path: Path, rows: list[str], columns: list[str], values: dict[tuple[str, str], float], title: str) -> None:
    """Rows = training language sets, columns = evaluation languages; missing cells stay blank."""
    grid = [[values.get((r, c), float("nan")) for c in columns] for r in rows]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.55 * len(columns) + 2), max(2.5, 0.45 * len(rows) + 1.5)))
    image = ax.imshow(grid, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(columns)), columns, fontsize=8, rotation=90 if len(columns) > 12 else 0)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    ax.set_xlabel("evaluated on")
    ax.set_ylabel("trained on")
    for i, row in enumerate(grid):
        for j, value in enumerate(row):
            if value == value:  # not NaN
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7, color="white")
    fig.colorbar(image, ax=ax, fraction=0.04)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def scatter(path: Path, points: list[tuple[object, float]], key: str, label: str) -> None:
    """A metric against one swept key: numbers on their axis (logarithmic when they span 10x or more),
    anything else as categories in first-seen order."""
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    xs = [x for x, _ in points]
    numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in xs)
    if numeric:
        values = [float(x) for x in xs]  # type: ignore[arg-type]
        ax.scatter(values, [y for _, y in points], color=SOURCE_COLOR)
        if min(values) > 0 and max(values) >= 10 * min(values):
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())  # labelled minor ticks overlap on a short range
    else:
        categories = list(dict.fromkeys(str(x) for x in xs))
        ax.scatter([categories.index(str(x)) for x in xs], [y for _, y in points], color=SOURCE_COLOR)
        ax.set_xticks(range(len(categories)), categories, fontsize=8, rotation=90 if len(categories) > 6 else 0)
    ax.set_xlabel(key, fontsize=9)
    ax.set_ylabel(label, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


Series = dict[str, list[tuple[float, float]]]
"""label -> (x, y) points of one line."""


def curves(path: Path, panels: list[tuple[str, Series]], title: str) -> None:
    """Side-by-side panels of lines against the optimizer step: each panel is (y label, lines by label); a legend
    when a panel has several lines (at most 12 labelled)."""
    fig, axes = plt.subplots(1, len(panels), figsize=(4.4 * len(panels), 3.2), squeeze=False)
    for ax, (ylabel, series) in zip(axes[0], panels):
        for i, (label, points) in enumerate(series.items()):
            xs, ys = zip(*points) if points else ((), ())
            marker = "o" if len(points) <= 30 else None
            ax.plot(xs, ys, marker=marker, markersize=3, linewidth=1.2, label=label if i < 12 else None)
        ax.set_xlabel("optimizer step", fontsize=9)
        ax.set_ylabel(ylabel, fontsize=9)
        ax.tick_params(labelsize=8)
        if len(series) > 1:
            ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def confusion(path: Path, labels: list[str], matrix: list[list[int]], title: str) -> None:
    """Rows: gold, columns: predicted; colours are each gold row's share (so rare classes show), cells say counts."""
    fig, ax = plt.subplots(figsize=(max(3.5, 0.5 * len(labels) + 2), max(3.0, 0.45 * len(labels) + 1.5)))
    shares = [[count / max(sum(row), 1) for count in row] for row in matrix]
    image = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    ticks = range(len(labels))
    ax.set_xticks(ticks, labels, fontsize=8, rotation=90 if len(labels) > 6 else 0)
    ax.set_yticks(ticks, labels, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    if len(labels) <= 20:
        for i, row in enumerate(matrix):
            for j, count in enumerate(row):
                color = "white" if shares[i][j] > 0.5 else "black"
                ax.text(j, i, str(count), ha="center", va="center", fontsize=7, color=color)
    fig.colorbar(image, ax=ax, fraction=0.04, label="share of the gold row")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def class_scores(path: Path, scores: dict[str, dict[str, float]], title: str) -> None:
    """Precision, recall and F1 per entity type or class, grouped bars; the support under each name."""
    names = list(scores)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * len(names) + 1.5), 3.2))
    width = 0.27
    for k, (key, color) in enumerate((("precision", "#9bbbe0"), ("recall", "#5b8fc9"), ("f1", SOURCE_COLOR))):
        xs = [i + (k - 1) * width for i in range(len(names))]
        ax.bar(xs, [scores[n][key] for n in names], width, label=key, color=color)
    support = [f"{n}\n({scores[n]['support']})" if "support" in scores[n] else n for n in names]
    ax.set_xticks(range(len(names)), support, fontsize=8, rotation=90 if len(names) > 12 else 0)
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=7, ncols=3, loc="lower right")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
