"""A finished run, or a folder `mlft export` wrote, read back: its validated config, task, model and tokenizer.

What a run directory holds is data: the model loads only from safetensors and never with its own code,
and the config is validated like a new one (and frozen).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from safetensors import SafetensorError
from transformers.utils import SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME

from mlft.commands.exporters import exporter_of
from mlft.commands.preflight import EXPORT_CONFIG, exported_folder, finished_run
from mlft.commands.run_config import run_config
from mlft.config import RunConfig, to_container
from mlft.errors import ConfigError, RunDirError
from mlft.models.ensemble import Ensemble, Member, member_problems
from mlft.models.lang_adapters import attach, saved_languages
from mlft.models.load import load_tokenizer
from mlft.models.rebuild import pretrained
from mlft.rundir import Languages, RunDir
from mlft.tasks import TASKS, Task, build_task

SAFE_LOAD = {"use_safetensors": True, "trust_remote_code": False}
"""How a saved run's or export's model loads: never from pickles, never with its own code."""
EXPORT_LANGUAGES = "mlft-languages.json"
"""The run's resolved languages inside an exported folder."""


@dataclass(frozen=True)
class SavedRun:
    origin: Path
    """The run directory or export folder."""
    config: RunConfig
    languages: Languages
    task: Task
    model: Any
    tokenizer: Any

    members: tuple[Path, ...] = ()
    """An ensemble's runs (origin is the first); empty for one run."""

    @property
    def run(self) -> RunDir:
        return RunDir(self.origin)

    @property
    def name(self) -> str:
        """How reports name what was evaluated."""
        return f"ensemble of {', '.join(map(str, self.members))}" if self.members else str(self.origin)


def load_run(path: Path) -> SavedRun:
    """A finished run: the resolved config it saved and its final model."""
    run = finished_run(path)
    config = read_config(run.config_file)
    saved = _load(path, config, run.languages(config), run.model_dir)
    langs = saved_languages(run.adapter_dir)
    if not langs:
        return saved
    return replace(saved, model=attach(saved.model, langs, key=f"run={path}"))


def load_ensemble(paths: list[Path]) -> SavedRun:
    """Finished runs that agree on task, labels and tokenizer, as one model averaging their probabilities."""
    runs = [load_run(path) for path in paths]
    members = [
        Member(
            str(s.origin),
            s.config.task.type,
            s.config.task.multi_label,
            list(s.task.labels),
            s.tokenizer.get_vocab(),
            bool(saved_languages(s.run.adapter_dir)),
        )
        for s in runs
    ]
    problems = member_problems(members)
    if problems:
        raise ConfigError(problems)
    first = runs[0]
    outputs = {o.name: o.probabilities for o in first.task.model_outputs}
    model = Ensemble([s.model for s in runs], first.task.model_inputs(first.tokenizer), outputs)
    return replace(first, model=model, members=tuple(paths))


def load_exported(path: Path, fmt: str | None = None) -> SavedRun:
    """An `mlft export` folder, or the model file inside one; its model runs as its format says
    (mlft.commands.exporters; `fmt`: the format of an export being written, before its manifest is)."""
    folder = exported_folder(path)
    exporter, model_file = exporter_of(path, fmt)
    model = exporter.runtime(model_file) if exporter.runtime else None  # None: transformers weights, as a run's
    config = read_config(folder / EXPORT_CONFIG)
    languages = _export_languages(folder, config)
    return _load(folder, config, languages, folder, model)


def _export_languages(folder: Path, config: RunConfig) -> Languages:
    recorded = folder / EXPORT_LANGUAGES
    if recorded.is_file():
        return Languages(**json.loads(recorded.read_text()))
    return Languages(config.lang.train, config.lang.eval)  # folders exported before the languages were copied


def write_export_records(saved: SavedRun, folder: Path) -> None:
    """The run's config and languages inside an exported folder (for `mlft predict model=<folder>`)."""
    shutil.copyfile(saved.run.config_file, folder / EXPORT_CONFIG)
    (folder / EXPORT_LANGUAGES).write_text(json.dumps(dataclasses.asdict(saved.languages), ensure_ascii=False))


def read_config(path: Path) -> RunConfig:
    try:
        saved = OmegaConf.load(path)
    except (OSError, ValueError, OmegaConfBaseException) as err:
        raise RunDirError(f"{path}: cannot read the run's config ({_first_line(err)})") from None
    if not isinstance(saved, DictConfig):
        raise RunDirError(f"{path}: not a run config (expected a mapping)")
    return run_config(inert(to_container(saved)))


def inert(config: dict[str, Any]) -> dict[str, Any]:
    """A saved config that runs no code: never the model's own (mlft train asks for it on the command line), nor an
    evaluate module (Python too; eval, predict, serve and export score with the task's built-in metrics). A metric
    of the dropped module becomes the task type's first built-in metric."""
    model, task = config.get("model"), config.get("task")
    if isinstance(model, dict):
        model["trust_remote_code"] = False
    if isinstance(task, dict):
        metric = task.get("metric")
        builtin = list(TASKS[task["type"]].metrics) if task.get("type") in TASKS else []
        if builtin and metric not in builtin:
            task["metric"], task["higher_is_better"] = builtin[0], None
        task["evaluate"], task["trust_metric_code"] = None, False
    return config


def _load(origin: Path, config: RunConfig, languages: Languages, model_dir: Path, model: Any = None) -> SavedRun:
    task = build_task(config.task, config.model, [])
    try:
        tokenizer = load_tokenizer(str(model_dir))
        if model is None:
            if not any((model_dir / name).is_file() for name in (SAFE_WEIGHTS_NAME, SAFE_WEIGHTS_INDEX_NAME)):
                raise RunDirError(
                    f"{model_dir}: no {SAFE_WEIGHTS_NAME}; mlft writes and reads model weights as safetensors only"
                )
            model = pretrained(task.model_class.from_pretrained, str(model_dir), **SAFE_LOAD)
    except ConfigError as err:  # the loaders' errors name model.name_or_path; here the folder is the run's
        raise RunDirError([p.replace("model.name_or_path: ", f"{model_dir}: ") for p in err.problems]) from None
    except (OSError, ValueError, RuntimeError, SafetensorError) as err:  # a truncated or damaged weights file too
        raise RunDirError(f"{model_dir}: cannot load the model ({_first_line(err)})") from None
    # The saved model's label maps are the truth, whatever the config says.
    task = build_task(config.task, config.model, [model.config.id2label[i] for i in range(model.config.num_labels)])
    return SavedRun(origin, config, languages, task, model, tokenizer)


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else type(err).__name__
