"""`mlft report`: results over several runs (a sweep, or run dirs) — mean ± std per language over seeds.

Runs whose resolved configs differ only in the seed form one group. Groups are named by the keys
that differ between them (e.g. `lang.train=[en]`), and when groups differ in their training
languages a train × eval language heatmap is drawn.
"""

from __future__ import annotations

import csv
import datetime
import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mlft.errors import ConfigError, RunDirError
from mlft.report.plots import bar_chart, heatmap
from mlft.runs import parse_args

IGNORED_KEYS = ("seed", "resume", "overwrite", "run_root")


@dataclass
class ReportArgs:
    sweep: str | None = None
    """A folder holding finished runs (e.g. a `mlft train -m` sweep directory); searched recursively."""
    runs: list[str] | None = None
    """Run directories, instead of (or besides) sweep."""
    split: str = "test"
    """The split whose metrics are summarised."""
    metric: str | None = None
    """The metric (default: the runs' task.metric)."""
    out: str | None = None
    """Output folder (default: <sweep>/reports/<time>, or ./reports/<time>)."""


@dataclass
class Run:
    path: Path
    config: dict[str, Any]
    metrics: dict[str, Any]

    @property
    def train_langs(self) -> list[str]:
        return self.metrics.get("languages", {}).get("train") or self.config["lang"]["train"]


def find_runs(sweep: Path | None, paths: list[Path]) -> list[Run]:
    found = (
        sorted(p.parent for p in sweep.rglob("metrics.json") if (p.parent / "config.yaml").is_file()) if sweep else []
    )
    for path in paths:
        if not (path / "metrics.json").is_file() or not (path / "config.yaml").is_file():
            raise RunDirError(f"runs: {path} is not a finished run (no metrics.json and config.yaml)")
        found.append(path)
    # evals/<time>/ folders inside runs hold metrics.json but no config.yaml, so they are not runs.
    return [
        Run(p, yaml.safe_load((p / "config.yaml").read_text()), json.loads((p / "metrics.json").read_text()))
        for p in dict.fromkeys(found)
    ]


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
    (out / "report.md").write_text(text)
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


def report(args: ReportArgs) -> Path:
    if args.sweep is None and not args.runs:
        raise ConfigError("sweep: required (or runs=[<run-dir>,...])")
    sweep = Path(args.sweep) if args.sweep else None
    if sweep is not None and not sweep.is_dir():
        raise RunDirError(f"sweep={sweep}: not a directory")
    runs = find_runs(sweep, [Path(r) for r in args.runs or []])
    if not runs:
        raise RunDirError(f"sweep={sweep}: no finished runs (folders with metrics.json and config.yaml) inside")
    metric = args.metric or runs[0].config["task"]["metric"]
    with_split = [r for r in runs if r.metrics.get(args.split)]
    if not with_split:
        raise ConfigError(f"split: no run has {args.split!r} metrics (splits: dev, test)")
    summaries = {name: summarise(group, args.split, metric) for name, group in group_runs(with_split).items()}
    stamp = datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S-%f")
    out = Path(args.out) if args.out else (sweep or Path(".")) / "reports" / stamp
    if out.exists() and any(out.iterdir()):
        raise RunDirError(f"out={out}: exists and is not empty; choose another folder")
    print(write_report(out, summaries, args.split, metric))
    print(f"written to {out}")
    return out


def report_cli(args: list[str]) -> None:
    report(parse_args(args, ReportArgs, "report"))
