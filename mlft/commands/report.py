"""`mlft report sweep=<dir>` (or runs=[...]): configurations ranked by their dev metric, failed jobs, plots, and
mean ± std per language over runs that differ only in the seed."""

from __future__ import annotations

import dataclasses
import datetime
from pathlib import Path

from omegaconf import OmegaConf

from mlft.commands.arguments import ReportArgs
from mlft.commands.saved import read_config
from mlft.errors import ConfigError, RunDirError
from mlft.report.sweep import Ranking, Run, group_runs, write_report
from mlft.rundir import METRICS_FILE, RunDir
from mlft.sweeps import read_jobs
from mlft.tasks import TASKS


def find_runs(sweep: Path | None, paths: list[Path]) -> list[Run]:
    """Finished runs (metrics.json and config.yaml) inside `sweep` (recursively) and at `paths` (checked by
    mlft.commands.preflight.check_report)."""
    found = sorted(p.parent for p in sweep.rglob(METRICS_FILE) if RunDir(p.parent).is_run()) if sweep else []
    found += paths
    # evals/<time>/ folders inside runs hold metrics.json but no config.yaml, so they are not runs.
    runs = []
    for path in dict.fromkeys(found):
        run = RunDir(path)
        config = read_config(run.config_file)
        runs.append(Run(path, dataclasses.asdict(config), run.metrics(), run.languages(config).train))
    return runs


def report(args: ReportArgs) -> Path:
    sweep = Path(args.sweep) if args.sweep else None
    runs = find_runs(sweep, [Path(r) for r in args.runs or []])
    if not runs:
        raise RunDirError(f"sweep={sweep}: no finished runs (folders with metrics.json and config.yaml) inside")
    config = runs[0].config["task"]
    # The metric the runs selected by, as saved (reading a config drops an evaluate module's metric, since
    # eval would have to run it; a report only reads the numbers in metrics.json).
    recorded = OmegaConf.select(OmegaConf.load(RunDir(runs[0].path).config_file), "task", default={}) or {}
    metric = args.metric or recorded.get("metric", config["metric"])
    if "higher_is_better" in recorded:
        config = {**config, "higher_is_better": recorded["higher_is_better"]}
    if not any(r.metrics.get(args.split) for r in runs):
        raise ConfigError(f"split: no run has {args.split!r} metrics (splits: dev, test)")
    builtin = TASKS[config["type"]].metrics if config["type"] in TASKS else {}
    given = config.get("higher_is_better")  # a metric of task.evaluate
    maximize = builtin.get(metric, True if given is None else given)
    jobs = read_jobs(sweep) if sweep else []
    stamp = datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S-%f")
    out = Path(args.out) if args.out else (sweep or Path(".")) / "reports" / stamp  # out= checked by preflight
    title = f"Sweep {sweep}" if sweep else "Runs"
    print(write_report(out, group_runs(runs), jobs, Ranking(args.split, metric, maximize), title))
    print(f"written to {out}")
    return out
