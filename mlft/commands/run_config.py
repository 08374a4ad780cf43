"""The typed config of a run: the schema's checks, its task type's and those of the runs it names, every problem at
once. Light on purpose: `mlft train` checks every job of a sweep with it before anything heavy is imported."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from mlft.commands.stages import stage_problems
from mlft.config import RunConfig
from mlft.rundir import RunDir
from mlft.tasks import config_problems
from mlft.validation import validate


def run_config(cfg: DictConfig | dict, base_dir: Path | None = None) -> RunConfig:
    """The typed config of a run, checked by the schema, by its task type and for the runs it names."""
    return validate(cfg, base_dir, checks=[config_problems, named_runs_problems, stage_problems])


def named_runs_problems(run: RunConfig) -> list[str]:
    """resume= must be a run directory; distill.teacher a finished run."""
    problems = []
    if run.resume is not None and not RunDir(Path(run.resume)).composable_config.is_file():
        problems.append(f"resume: {run.resume} is not a run directory (no .hydra/config.yaml)")
    teacher = RunDir(Path(run.distill.teacher)) if run.distill.teacher is not None else None
    if teacher is not None and not teacher.is_run():
        problems.append(f"distill.teacher: {teacher.path} is not a run directory (no config.yaml)")
    elif teacher is not None and not teacher.is_finished():
        problems.append(
            f"distill.teacher: {teacher.path} has no final model (model/config.json); did training finish?"
        )
    return problems
