"""The configs of continual training's stages (trainer.stages): the run's config with each stage's presets and
keys, checked like any run's config before the first stage starts."""

from __future__ import annotations

import copy
import dataclasses
import re
from typing import Any

from omegaconf import OmegaConf

from mlft.config import ContinualConfig, RunConfig, config_dir, presets
from mlft.errors import ConfigError
from mlft.tasks import config_problems
from mlft.validation import validate

NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
STAGE_TRAINER_KEYS_REFUSED = ("stages", "continual", "num_processes", "cpu")
"""trainer keys a stage cannot change: stages do not nest, and one process runs them all."""


def stage_name(index: int, stage: Any) -> str:
    return stage.name or stage.task or stage.lang or f"stage{index}"


def stage_configs(run: RunConfig) -> list[tuple[str, RunConfig]]:
    """(name, config) of every stage, in order; raises ConfigError with every stage's problems."""
    out, problems = [], []
    for index in range(1, len(run.trainer.stages) + 1):
        try:
            out.append((stage_name(index, run.trainer.stages[index - 1]), stage_config(run, index)))
        except ConfigError as err:
            problems += err.problems
    names = [name for name, _ in out]
    twice = sorted(n for n in set(names) if names.count(n) > 1)
    problems += [f"trainer.stages: two stages are named {n!r}; give them names" for n in twice]
    if problems:
        raise ConfigError(problems)
    return out


def stage_config(run: RunConfig, index: int) -> RunConfig:
    """Stage `index` (from 1): the run's config with the stage's task and lang presets and its data, trainer and
    optimizer keys; without stages of its own."""
    stage = run.trainer.stages[index - 1]
    key = f"trainer.stages[{index - 1}]"
    problems = []
    if stage.name is not None and not NAME.fullmatch(stage.name):
        problems.append(f"{key}.name: {stage.name!r} names a folder: letters, digits, _ . - (at most 64)")
    refused = [k for k in STAGE_TRAINER_KEYS_REFUSED if k in stage.trainer]
    problems += [f"{key}.trainer.{k}: not a key a stage can set" for k in refused]
    data: dict[str, Any] = copy.deepcopy(dataclasses.asdict(run))
    data["trainer"]["stages"] = []
    data["trainer"]["continual"] = dataclasses.asdict(ContinualConfig())  # the sequence's, not one stage's
    for group in ("task", "lang"):
        name = getattr(stage, group)
        if name is None:
            continue
        if name not in presets(group):
            problems.append(f"{key}.{group}: no preset {name!r} (allowed: {', '.join(presets(group))})")
            continue
        preset = OmegaConf.to_container(OmegaConf.load(config_dir() / group / f"{name}.yaml"), resolve=True)
        assert isinstance(preset, dict)
        preset.pop("defaults", None)
        data[group] = preset
    for section in ("data", "trainer", "optimizer"):
        merged = OmegaConf.merge(OmegaConf.create(data[section]), OmegaConf.create(getattr(stage, section)))
        data[section] = OmegaConf.to_container(merged, resolve=True)
    if problems:
        raise ConfigError(problems)
    try:
        return validate(data, checks=[config_problems])
    except ConfigError as err:
        raise ConfigError([f"{key}: {p}" for p in err.problems]) from None


def stage_problems(run: RunConfig) -> list[str]:
    """What is wrong with trainer.stages and trainer.continual (a check for mlft.validation.validate)."""
    trainer = run.trainer
    if not trainer.stages:
        return []
    problems = []
    if trainer.num_processes > 1:
        problems.append("trainer.stages: continual training runs in one process (set trainer.num_processes=1)")
    if trainer.continual.regulariser != "none" and run.peft.method != "none":
        problems.append(
            f"trainer.continual.regulariser: anchors the model's own weights; with peft.method={run.peft.method} "
            "each stage trains a new adapter (use replay, or peft=none)"
        )
    try:
        configs = stage_configs(run)
    except ConfigError as err:
        return problems + err.problems
    kinds = {(config.task.type, config.task.multi_label) for _, config in configs}
    if len(kinds) > 1:
        listed = ", ".join(f"{name}: {config.task.type}" for name, config in configs)
        problems.append(f"trainer.stages: every stage trains the same kind of task, with one head ({listed})")
    return problems
