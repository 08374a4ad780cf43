"""Reading a saved run back: its config, model and tokenizer, for `mlft eval` and `mlft predict`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mlft.config import RunConfig, validate
from mlft.errors import ConfigError, RunDirError
from mlft.schema import build, check_fields
from mlft.tasks import Task, build_task


@dataclass
class SavedRun:
    run_dir: Path
    config: RunConfig
    task: Task
    model: Any
    tokenizer: Any


def parse_args(args: list[str], schema: type, command: str) -> Any:
    """Parses `key=value` arguments (values in YAML syntax) against a dataclass; every problem at once."""
    bad = [a for a in args if "=" not in a or a.startswith("-")]
    if bad:
        raise ConfigError([f"{a}: expected key=value (mlft {command} --help lists the keys)" for a in bad])
    data: dict[str, Any] = OmegaConf.to_container(OmegaConf.from_dotlist(args), resolve=True)  # type: ignore[assignment]
    problems = check_fields(data, schema)
    if problems:
        raise ConfigError(problems)
    return build(schema, data)


def load_run(run_dir: Path) -> SavedRun:
    """Loads a finished run: the resolved config it saved and its final model."""
    from mlft.models.load import load_tokenizer

    if not (run_dir / "config.yaml").is_file():
        raise RunDirError(f"run={run_dir}: not a run directory (no config.yaml)")
    if not (run_dir / "model" / "config.json").is_file():
        raise RunDirError(f"run={run_dir}: the run has no final model (model/config.json); did training finish?")
    saved = OmegaConf.load(run_dir / "config.yaml")
    assert isinstance(saved, DictConfig)
    config = validate(saved)
    tokenizer = load_tokenizer(str(run_dir / "model"))
    task = build_task(config.task.type, [], config.model.max_length, config.model.stride, config.task.multi_label)
    model = task.model_class.from_pretrained(run_dir / "model")
    # The saved model's label maps are the truth, whatever the config says.
    task.labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    return SavedRun(run_dir, config, task, model, tokenizer)
