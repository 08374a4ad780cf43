"""`mlft report`: results over several runs (a sweep, or run dirs), ranked by the dev metric.

Runs whose resolved configs differ only in the seed form one configuration (a group); groups are
named by the keys that differ between them (e.g. `optimizer.lr=3e-05`). Groups are ranked by the
mean over their runs of the dev score that selected each run's weights (the task metric on the
training languages' dev sets), never by test; test is shown beside it. A sweep's failed jobs (its
jobs.jsonl) are listed under the table. Per language, mean ± std over seeds; when groups differ in
their training languages a train × eval language heatmap is drawn.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlft.engine.selection import selection_score
from mlft.errors import ConfigError
from mlft.report.plots import Series, bar_chart, curves, heatmap, scatter
from mlft.rundir import REPORT_FILE
from mlft.sweeps import Job

IGNORED_KEYS = ("seed", "resume", "overwrite", "run_root")
SPLITS = ("dev", "test")
MAX_LANG_COLUMNS = 8
"""Languages shown as columns of the ranked table; more are summarised by their mean."""

Stats = tuple[float, float, int]
"""mean, standard deviation, number of runs"""


@dataclass
class Run:
    path: Path
    config: dict[str, Any]
    """The run's resolved config, as plain values (compared key by key)."""
    metrics: dict[str, Any]
    train_langs: list[str]
    """As the run resolved them ([all] -> its languages)."""

    def objective(self, split: str, metric: str) -> float | None:
        """The mean `metric` over the languages whose dev score selected the run's weights, on `split`."""
        selection = self.metrics.get("selection", {})
        if split == "dev" and isinstance(selection.get("final_score"), (int, float)):
            return float(selection["final_score"])
        scores = self.metrics.get(split, {})
        langs = selection.get("dev_langs") or [lang for lang in scores if lang in self.train_langs] or list(scores)
        return selection_score(scores, metric, langs) if all(metric in scores[x] for x in scores) else None

    @property
    def minutes(self) -> float | None:
        seconds = self.metrics.get("throughput", {}).get("train_seconds")
        return seconds / 60 if isinstance(seconds, (int, float)) else None


@dataclass
class Group:
    """Runs whose configs differ only in the seed."""

    values: dict[str, Any]
    """The keys that differ between the groups, and this group's values."""
    runs: list[Run]

    @property
    def name(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.values.items()) or "all runs"


def _flatten(config: dict[str, Any], prefix: str = "") -> dict[str, str]:
    out = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            out.update(_flatten(value, f"{prefix}{key}."))
        elif f"{prefix}{key}" not in IGNORED_KEYS:
            out[f"{prefix}{key}"] = json.dumps(value, ensure_ascii=False)
    return out


def group_runs(runs: list[Run]) -> list[Group]:
    """Runs with equal configs apart from the seed, with the keys that differ between groups."""
    flat = [_flatten(r.config) for r in runs]
    members: dict[str, list[int]] = {}
    for i, f in enumerate(flat):
        members.setdefault(json.dumps(f, sort_keys=True), []).append(i)
    keys = sorted({k for f in flat for k in f if len({g.get(k) for g in flat}) > 1})
    groups = []
    for indices in members.values():
        first = flat[indices[0]]
        values = {k: json.loads(first[k]) if k in first else None for k in keys}
        groups.append(Group(values, [runs[i] for i in indices]))
    return groups


def _stats(values: list[float]) -> Stats:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0, len(values)


def per_language(runs: list[Run], split: str, metric: str) -> dict[str, Any]:
    """Per language (and the mean over languages, and the transfer gap): mean, std and n over runs."""
    scores: dict[str, list[float]] = {}
    for run in runs:
        for lang, m in run.metrics.get(split, {}).items():
            if metric not in m:
                raise ConfigError(f"metric: {metric!r} is not in {run.path}/metrics.json (has: {', '.join(m)})")
            scores.setdefault(lang, []).append(m[metric])
    summary: dict[str, Any] = {"langs": {lang: _stats(v) for lang, v in scores.items()}}
    means = [statistics.fmean(m[metric] for m in r.metrics[split].values()) for r in runs if r.metrics.get(split)]
    gaps = [r.metrics["transfer"][split]["mean_gap"] for r in runs if split in r.metrics.get("transfer", {})]
    if means:
        summary["mean"] = _stats(means)
    if gaps:
        summary["transfer_gap"] = _stats(gaps)
    return summary


@dataclass
class Row:
    """One configuration of the ranked table."""

    group: Group
    objective: Stats | None
    """The ranking split's objective over the group's runs."""
    shown: Stats | None
    """The other split's objective (test when ranking by dev)."""
    langs: dict[str, Stats]
    """The other split's metric per language."""
    minutes: float | None
    best_run: Path
    """The group's run with the best objective: the one to reproduce."""


def rank(groups: list[Group], split: str, metric: str, maximize: bool) -> list[Row]:
    """Groups ordered by their mean objective on `split`, best first; groups without one last."""
    other = "test" if split == "dev" else "dev"
    rows = []
    for group in groups:
        scored = [(r.objective(split, metric), r) for r in group.runs]
        values = [v for v, _ in scored if v is not None]
        shown = [v for v in (r.objective(other, metric) for r in group.runs) if v is not None]
        minutes = [m for m in (r.minutes for r in group.runs) if m is not None]
        ranked = sorted((x for x in scored if x[0] is not None), key=lambda x: x[0] or 0.0, reverse=maximize)
        langs = per_language(group.runs, other, metric)["langs"]
        rows.append(
            Row(
                group,
                _stats(values) if values else None,
                _stats(shown) if shown else None,
                langs,
                statistics.fmean(minutes) if minutes else None,
                ranked[0][1].path if ranked else group.runs[0].path,
            )
        )
    sign = -1 if maximize else 1
    return sorted(rows, key=lambda row: (row.objective is None, sign * row.objective[0] if row.objective else 0.0))


def _cell(stats: Stats | None) -> str:
    if stats is None:
        return "–"
    mean, std, n = stats
    return f"{mean:.4f} ± {std:.4f}" if n > 1 else f"{mean:.4f}"


def _value(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False) if isinstance(value, (list, dict)) else str(value)


def reproduce(run: Path) -> str:
    return f"mlft train --config-path {run}/.hydra --config-name config"


@dataclass(frozen=True)
class Ranking:
    """What a report ranks by."""

    split: str
    metric: str
    maximize: bool


def markdown(rows: list[Row], jobs: list[Job], ranking: Ranking, plots: list[str], title: str) -> str:
    split, metric = ranking.split, ranking.metric
    other = "test" if split == "dev" else "dev"
    runs = sum(len(r.group.runs) for r in rows)
    lines = [f"# {title}: {runs} runs in {len(rows)} configurations, ranked by {split} {metric}", ""]
    if split == "test":
        lines += ["Ranked by test: choosing a configuration on its test score overstates what it will score.", ""]
    if rows and rows[0].objective is not None:
        best = rows[0]
        lines += [
            f"**Best: {best.group.name}**, {split} {metric} {_cell(best.objective)}. Reproduce its best run:",
            "",
            f"    {reproduce(best.best_run)}",
            "",
        ]
    keys = list(rows[0].group.values) if rows else []
    langs = list(dict.fromkeys(lang for r in rows for lang in r.langs))
    lang_columns = langs if len(langs) <= MAX_LANG_COLUMNS else []
    header = ["rank", *keys, "runs", f"{split} {metric}", f"{other} {metric}", *(f"{other} {x}" for x in lang_columns)]
    lines += ["| " + " | ".join([*header, "minutes"]) + " |", "|" + "---:|" * (len(header) + 1)]
    for i, row in enumerate(rows, 1):
        marker = f"★ {i}" if i == 1 and row.objective is not None else str(i)
        cells = [marker, *(_value(row.group.values[k]) for k in keys), str(len(row.group.runs))]
        cells += [_cell(row.objective), _cell(row.shown), *(_cell(row.langs.get(x)) for x in lang_columns)]
        cells.append(f"{row.minutes:.1f}" if row.minutes is not None else "–")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    pruned = [str(job.num) for job in jobs if job.status == "pruned"]
    if pruned:
        lines += [
            f"Pruned by the search (stopped early; ranked by the score they reached): jobs {', '.join(pruned)}.",
            "",
        ]
    failed = [job for job in jobs if job.status == "failed"]
    if failed:
        shared = set.intersection(*(set(job.overrides) for job in jobs))
        lines += [
            f"## Failed jobs ({len(failed)})",
            "",
            "| job | swept values | exit | error |",
            "|---:|---|---:|---|",
        ]
        for job in failed:
            swept = " ".join(o for o in job.overrides if o not in shared)
            error = (job.error or "").replace("\n", " ").replace("|", "\\|")
            lines.append(f"| {job.num} | {swept} | {job.exit_code} | {error} |")
        lines.append("")
    lines += [f"![{p}]({p})" for p in plots]
    return "\n".join(lines) + "\n"


def language_sections(groups: list[Group], metric: str) -> str:
    """Per configuration: each language's dev and test metric, mean ± std over the runs."""
    lines = [f"# Per language: {metric}, mean ± std over runs (seeds)", ""]
    for group in groups:
        train_langs = group.runs[0].train_langs
        lines += [f"## {group.name}", "", f"trained on: {', '.join(train_langs)}; runs: {len(group.runs)}", ""]
        splits = {s: per_language(group.runs, s, metric) for s in SPLITS}
        lines += ["| lang | dev | test | n |", "|---|---:|---:|---:|"]
        for lang in dict.fromkeys(x for s in SPLITS for x in splits[s]["langs"]):
            marker = " (train)" if lang in train_langs else ""
            dev, test = (splits[s]["langs"].get(lang) for s in SPLITS)
            lines.append(f"| {lang}{marker} | {_cell(dev)} | {_cell(test)} | {max(x[2] for x in (dev, test) if x)} |")
        for key, label in (("mean", "**mean**"), ("transfer_gap", "**transfer gap**")):
            dev, test = (splits[s].get(key) for s in SPLITS)
            if dev or test:
                lines.append(f"| {label} | {_cell(dev)} | {_cell(test)} | {max(x[2] for x in (dev, test) if x)} |")
        lines.append("")
    return "\n".join(lines)


def write_report(out: Path, groups: list[Group], jobs: list[Job], ranking: Ranking, title: str) -> str:
    """report.md, report.json, report.csv (the ranked table), languages.csv and the plots, in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    rows = rank(groups, ranking.split, ranking.metric, ranking.maximize)
    plots = draw(out, rows, groups, ranking)
    text = markdown(rows, jobs, ranking, plots, title) + "\n" + language_sections(groups, ranking.metric)
    (out / REPORT_FILE).write_text(text)
    report = {
        "rank_split": ranking.split,
        "metric": ranking.metric,
        "direction": "maximize" if ranking.maximize else "minimize",
        "ranked": [
            {
                "values": row.group.values,
                "runs": [str(r.path) for r in row.group.runs],
                ranking.split: row.objective,
                "test" if ranking.split == "dev" else "dev": row.shown,
                "minutes": row.minutes,
                "best_run": str(row.best_run),
                "reproduce": reproduce(row.best_run),
            }
            for row in rows
        ],
        "failed": [job.__dict__ for job in jobs if job.status == "failed"],
        "groups": {
            g.name: {
                "train_langs": g.runs[0].train_langs,
                "runs": [str(r.path) for r in g.runs],
                **{s: per_language(g.runs, s, ranking.metric) for s in SPLITS},
            }
            for g in groups
        },
    }
    (out / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    write_csvs(out, rows, groups, ranking)
    return text


def write_csvs(out: Path, rows: list[Row], groups: list[Group], ranking: Ranking) -> None:
    other = "test" if ranking.split == "dev" else "dev"
    keys = list(rows[0].group.values) if rows else []
    with (out / "report.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["rank", *keys, "runs", f"{ranking.split}_mean", f"{ranking.split}_std", f"{other}_mean"])
        for i, row in enumerate(rows, 1):
            values = [_value(row.group.values[k]) for k in keys]
            scores = [*(row.objective[:2] if row.objective else ("", "")), row.shown[0] if row.shown else ""]
            writer.writerow([i, *values, len(row.group.runs), *scores])
    with (out / "languages.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["group", "split", "lang", "mean", "std", "n"])
        for group in groups:
            for split in SPLITS:
                summary = per_language(group.runs, split, ranking.metric)
                for lang, (mean, std, n) in summary["langs"].items():
                    writer.writerow([group.name, split, lang, f"{mean:.6f}", f"{std:.6f}", n])


def draw(out: Path, rows: list[Row], groups: list[Group], ranking: Ranking) -> list[str]:
    """The ranking split's objective against each swept key, bars per language (test), the transfer heatmap."""
    names = []
    label = f"{ranking.split} {ranking.metric}"
    for key in rows[0].group.values if rows else []:
        points = [(r.group.values[key], r.objective[0]) for r in rows if r.objective is not None]
        points = [(x, y) for x, y in points if isinstance(x, (int, float, str, bool)) and not _is_nan(y)]
        if points:
            name = f"{ranking.split}-{ranking.metric}-vs-{key}.png"
            scatter(out / name, points, key, label)
            names.append(name)
    if learning_curves(out / "learning-curves.png", rows):
        names.append("learning-curves.png")
    for i, group in enumerate(groups):
        summary = per_language(group.runs, "test", ranking.metric)
        scores = {lang: s[0] for lang, s in summary["langs"].items()}
        if scores:
            errors = {lang: s[1] for lang, s in summary["langs"].items()}
            name = f"group-{i}-test-{ranking.metric}.png"
            bar_chart(out / name, scores, group.runs[0].train_langs, group.name, errors)
            names.append(name)
    train_sets = {"+".join(g.runs[0].train_langs) for g in groups}
    if len(train_sets) > 1:
        values: dict[tuple[str, str], float] = {}
        for group in groups:
            for lang, stats in per_language(group.runs, "test", ranking.metric)["langs"].items():
                values[("+".join(group.runs[0].train_langs), lang)] = stats[0]
        columns = list(dict.fromkeys(lang for _, lang in values))
        name = f"heatmap-test-{ranking.metric}.png"
        heatmap(out / name, sorted(train_sets), columns, values, f"test {ranking.metric}")
        names.append(name)
    return names


CURVES = 8
"""Configurations drawn in the sweep's learning curves (the best ones)."""


def learning_curves(path: Path, rows: list[Row]) -> bool:
    """The training loss and the dev selection score against the step, of the best run of each of the top
    configurations (labelled by rank); False when no run recorded either."""
    loss: Series = {}
    dev: Series = {}
    for i, row in enumerate(rows[:CURVES], 1):
        run = next(r for r in row.group.runs if r.path == row.best_run)
        if run.metrics.get("losses"):
            loss[f"#{i}"] = [(x["step"], x["loss"]) for x in run.metrics["losses"]]
        scores = [(h["step"], h["score"]) for h in run.metrics.get("history", []) if h.get("score") is not None]
        if scores:
            dev[f"#{i}"] = scores
    panels = [(label, series) for label, series in (("training loss", loss), ("dev score", dev)) if series]
    if panels:
        curves(path, panels, f"best run of the top {min(len(rows), CURVES)} configurations, by rank")
    return bool(panels)


def _is_nan(value: float) -> bool:
    return isinstance(value, float) and math.isnan(value)
