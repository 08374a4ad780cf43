"""`mlft report`: results over several runs (a sweep, or run dirs) — mean ± std per language over seeds.

Runs whose resolved configs differ only in the seed form one group. Groups are named by the keys
that differ between them (e.g. `lang.train=[en]`), and when groups differ in their training
languages a train × eval language heatmap is drawn.
"""

from __future__ import annotations

import csv
import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlft.errors import ConfigError
from mlft.report.plots import bar_chart, heatmap
from mlft.rundir import REPORT_FILE

IGNORED_KEYS = ("seed", "resume", "overwrite", "run_root")


@dataclass
class Run:
    path: Path
    config: dict[str, Any]
    """The run's resolved config, as plain values (compared key by key)."""
    metrics: dict[str, Any]
    train_langs: list[str]
    """As the run resolved them ([all] -> its languages)."""


def _flatten(config: dict[str, Any], prefix: str = "") -> dict[str, str]:
    out = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            out.update(_flatten(value, f"{prefix}{key}."))
        elif f"{prefix}{key}" not in IGNORED_KEYS:
            out[f"{prefix}{key}"] = json.dumps(value, ensure_ascii=False)
    return out


def group_runs(runs: list[Run]) -> dict[str, list[Run]]:
    """Runs with equal configs apart from the seed, named by the keys that differ between groups."""
    flat = [_flatten(r.config) for r in runs]
    groups: dict[str, list[int]] = {}
    for i, f in enumerate(flat):
        groups.setdefault(json.dumps(f, sort_keys=True), []).append(i)
    keys = sorted({k for f in flat for k in f if len({g.get(k) for g in flat}) > 1})
    named = {}
    for members in groups.values():
        first = flat[members[0]]
        name = " ".join(f"{k}={json.loads(first[k]) if k in first else None}" for k in keys) or "all runs"
        named[name] = [runs[i] for i in members]
    return named


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarise(runs: list[Run], split: str, metric: str) -> dict[str, Any]:
    """Per language (and the mean over languages, and the transfer gap): mean, std and n over runs."""
    per_lang: dict[str, list[float]] = {}
    for run in runs:
        for lang, m in run.metrics.get(split, {}).items():
            if metric not in m:
                raise ConfigError(f"metric: {metric!r} is not in {run.path}/metrics.json (has: {', '.join(m)})")
            per_lang.setdefault(lang, []).append(m[metric])
    rows = {lang: (*_mean_std(v), len(v)) for lang, v in per_lang.items()}
    means = [statistics.fmean(m[metric] for m in r.metrics[split].values()) for r in runs if r.metrics.get(split)]
    gaps = [r.metrics["transfer"][split]["mean_gap"] for r in runs if split in r.metrics.get("transfer", {})]
    summary: dict[str, Any] = {"langs": rows}
    if means:
        summary["mean"] = (*_mean_std(means), len(means))
    if gaps:
        summary["transfer_gap"] = (*_mean_std(gaps), len(gaps))
    summary["train_langs"] = runs[0].train_langs
    summary["runs"] = [str(r.path) for r in runs]
    return summary


def _cell(stats: tuple[float, float, int]) -> str:
    mean, std, n = stats
    return f"{mean:.4f} ± {std:.4f}" if n > 1 else f"{mean:.4f}"


def markdown(summaries: dict[str, dict[str, Any]], split: str, metric: str) -> str:
    lines = [f"# {split} {metric}: mean ± std over runs (seeds)", ""]
    for name, s in summaries.items():
        lines += [f"## {name}", "", f"trained on: {', '.join(s['train_langs'])}; runs: {len(s['runs'])}", ""]
        lines += ["| lang | " + metric + " | n |", "|---|---:|---:|"]
        for lang, stats in s["langs"].items():
            marker = " (train)" if lang in s["train_langs"] else ""
            lines.append(f"| {lang}{marker} | {_cell(stats)} | {stats[2]} |")
        if "mean" in s:
            lines.append(f"| **mean** | {_cell(s['mean'])} | {s['mean'][2]} |")
        if "transfer_gap" in s:
            lines.append(f"| **transfer gap** | {_cell(s['transfer_gap'])} | {s['transfer_gap'][2]} |")
        lines.append("")
    return "\n".join(lines)


def write_report(out: Path, summaries: dict[str, dict[str, Any]], split: str, metric: str) -> str:
    out.mkdir(parents=True, exist_ok=True)
    text = markdown(summaries, split, metric)
    (out / REPORT_FILE).write_text(text)
    (out / "report.json").write_text(json.dumps({"split": split, "metric": metric, "groups": summaries}, indent=2))
    with (out / "report.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["group", "lang", "mean", "std", "n"])
        for name, s in summaries.items():
            for lang, (mean, std, n) in s["langs"].items():
                writer.writerow([name, lang, f"{mean:.6f}", f"{std:.6f}", n])
            for key in ("mean", "transfer_gap"):
                if key in s:
                    writer.writerow([name, key, *(f"{v:.6f}" for v in s[key][:2]), s[key][2]])
    for i, (name, s) in enumerate(summaries.items()):
        scores = {lang: stats[0] for lang, stats in s["langs"].items()}
        errors = {lang: stats[1] for lang, stats in s["langs"].items()}
        if scores:
            bar_chart(out / f"group-{i}-{split}-{metric}.png", scores, s["train_langs"], name, errors)
    train_sets = {"+".join(s["train_langs"]) for s in summaries.values()}
    if len(train_sets) > 1:
        values: dict[tuple[str, str], float] = {}
        for s in summaries.values():
            for lang, stats in s["langs"].items():
                values[("+".join(s["train_langs"]), lang)] = stats[0]
        columns = list(dict.fromkeys(lang for s in summaries.values() for lang in s["langs"]))
        heatmap(out / f"heatmap-{split}-{metric}.png", sorted(train_sets), columns, values, f"{split} {metric}")
    return text
