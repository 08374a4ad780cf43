"""Reading a saved run back: its config, model and tokenizer, for `mlft eval` and `mlft predict`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from transformers.utils import SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME

from mlft.config import ALL_LANGS, RunConfig, resolve_langs, validate
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


def trained_langs(run_dir: Path, config: RunConfig) -> list[str]:
    """The languages a run trained on: as its metrics.json recorded them, else its config with [all] resolved."""
    recorded = run_dir / "metrics.json"
    if recorded.is_file():
        langs = json.loads(recorded.read_text()).get("languages", {}).get("train")
        if langs:
            return langs
    return (
        resolve_langs(config.lang.train, config.task, "lang.train")
        if config.lang.train == [ALL_LANGS]
        else config.lang.train
    )


SAFE_LOAD = {"use_safetensors": True, "trust_remote_code": False}
"""How a saved run's or export's model loads: never from pickles, never with its own code."""


def run_langs(run_dir: Path, config: RunConfig) -> list[str]:
    """Every language the run's data had: trained on, or evaluated (from its metrics.json)."""
    recorded = run_dir / "metrics.json"
    metrics = json.loads(recorded.read_text()) if recorded.is_file() else {}
    evaluated = [lang for split in ("dev", "test") for lang in metrics.get(split, {})]
    return list(dict.fromkeys(trained_langs(run_dir, config) + evaluated))


EXPORT_CONFIG = "mlft-config.yaml"
"""The run's resolved config inside an exported folder: what `mlft predict model=<folder>` rebuilds the task from."""


def load_run(run_dir: Path) -> SavedRun:
    """Loads a finished run: the resolved config it saved and its final model."""
    if not (run_dir / "config.yaml").is_file():
        raise RunDirError(f"run={run_dir}: not a run directory (no config.yaml)")
    if not (run_dir / "model" / "config.json").is_file():
        raise RunDirError(f"run={run_dir}: the run has no final model (model/config.json); did training finish?")
    return _load(run_dir, run_dir / "config.yaml", run_dir / "model")


def load_exported(path: Path) -> SavedRun:
    """An `mlft export` folder (HF weights or model.onnx), or the .onnx file inside one."""
    folder = path.parent if path.suffix == ".onnx" else path
    if not (folder / EXPORT_CONFIG).is_file():
        raise ConfigError(f"model={path}: not a folder written by mlft export (no {EXPORT_CONFIG}); use run=<run-dir>")
    onnx_file = path if path.suffix == ".onnx" else folder / "model.onnx"
    if path.suffix == ".onnx" and not path.is_file():
        raise ConfigError(f"model={path}: file not found")
    model = None
    if onnx_file.is_file():
        from mlft.models.onnx import OnnxModel

        model = OnnxModel(onnx_file)
    return _load(folder, folder / EXPORT_CONFIG, folder, model)


def _load(origin: Path, config_file: Path, model_dir: Path, model: Any = None) -> SavedRun:
    from mlft.models.load import load_tokenizer

    try:
        saved = OmegaConf.load(config_file)
    except (OSError, ValueError, OmegaConfBaseException) as err:
        raise RunDirError(f"{config_file}: cannot read the run's config ({_first_line(err)})") from None
    if not isinstance(saved, DictConfig):
        raise RunDirError(f"{config_file}: not a run config (expected a mapping)")
    config = validate(saved)
    # What a run directory holds is data: its model loads without its own code, and only from safetensors.
    config.model.trust_remote_code = False
    task = build_task(config.task, config.model, [])
    try:
        tokenizer = load_tokenizer(str(model_dir))
        if model is None:
            if not any((model_dir / name).is_file() for name in (SAFE_WEIGHTS_NAME, SAFE_WEIGHTS_INDEX_NAME)):
                raise RunDirError(
                    f"{model_dir}: no {SAFE_WEIGHTS_NAME}; mlft writes and reads model weights as safetensors only"
                )
            model = task.model_class.from_pretrained(model_dir, **SAFE_LOAD)
    except ConfigError as err:  # the loaders' errors name model.name_or_path; here the folder is the run's
        raise RunDirError([p.replace("model.name_or_path: ", f"{model_dir}: ") for p in err.problems]) from None
    except (OSError, ValueError, RuntimeError) as err:
        raise RunDirError(f"{model_dir}: cannot load the model ({_first_line(err)})") from None
    # The saved model's label maps are the truth, whatever the config says.
    task.labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    return SavedRun(origin, config, task, model, tokenizer)


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else type(err).__name__
