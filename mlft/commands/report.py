"""`mlft report sweep=<dir>` (or runs=[...]): mean ± std per language over runs that differ only in the seed."""

from __future__ import annotations

import dataclasses
import datetime
from dataclasses import dataclass
from pathlib import Path

from mlft.commands.saved import read_config
from mlft.errors import ConfigError, RunDirError
from mlft.report.sweep import Run, group_runs, summarise, write_report
from mlft.rundir import METRICS_FILE, RunDir


@dataclass(frozen=True)
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


def find_runs(sweep: Path | None, paths: list[Path]) -> list[Run]:
    """Finished runs (metrics.json and config.yaml) inside `sweep` (recursively) and at `paths`."""
    found = sorted(p.parent for p in sweep.rglob(METRICS_FILE) if RunDir(p.parent).is_run()) if sweep else []
    for path in paths:
        if not RunDir(path).metrics_file.is_file() or not RunDir(path).is_run():
            raise RunDirError(f"runs: {path} is not a finished run (no metrics.json and config.yaml)")
        found.append(path)
    # evals/<time>/ folders inside runs hold metrics.json but no config.yaml, so they are not runs.
    runs = []
    for path in dict.fromkeys(found):
        run = RunDir(path)
        config = read_config(run.config_file)
        runs.append(Run(path, dataclasses.asdict(config), run.metrics(), run.languages(config).train))
    return runs


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
