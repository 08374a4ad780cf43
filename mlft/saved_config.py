"""A saved run config is data, never code: what `mlft train resume=<run>` and `--config-path <run>/.hydra` read.

A run directory may come from someone else. Its `.hydra/config.yaml` holds a `hydra` block and a
defaults list that Hydra would obey (callbacks and logging handlers are instantiated from `_target_`
and `()`), a `model.trust_remote_code` that would run the model folder's Python, and a `task.evaluate`
module, which is Python too. So the saved file is checked, then staged as a clean copy: the run's own values
under mlft's shipped Hydra settings, without the consent to run a metric module. Remote code and evaluate modules
must be granted again on the command line (model.trust_remote_code=true, task.trust_metric_code=true).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from mlft.config import PRIMARY_CONFIG
from mlft.errors import ConfigError
from mlft.metric_spec import PREFIX, parse_metric

TRUST_KEY = "model.trust_remote_code"
METRIC_KEY = "task.trust_metric_code"
CODE_KEYS = ("_target_", "()")
"""Keys that make Hydra or logging.config call a Python object by name."""


def _code_keys(node: Any, path: str) -> list[str]:
    if isinstance(node, dict):
        found = [f"{path}{key}" for key in node if key in CODE_KEYS]
        return found + [p for key, value in node.items() for p in _code_keys(value, f"{path}{key}.")]
    if isinstance(node, list):
        return [p for i, value in enumerate(node) for p in _code_keys(value, f"{path}{i}.")]
    return []


def _granted(key: str, overrides: list[str]) -> bool:
    return any(o.lstrip("+~") in (f"{key}=true", f"{key}=True") for o in overrides)


def _metric_module(task: dict[str, Any]) -> str | None:
    """The evaluate module a task section names, as task.evaluate or in the task.metric=evaluate:<module> shorthand."""
    metric = task.get("metric")
    if isinstance(metric, str) and metric.startswith(PREFIX):
        return parse_metric(metric)[0]
    module = task.get("evaluate")
    return str(module) if module else None


def problems(saved: dict[str, Any], shipped_defaults: list[Any], overrides: list[str], source: Path) -> list[str]:
    """Everything in a saved config that would run code; each names the key and the way out."""
    found = [
        f"{key}: in {source}: a saved config cannot name Python code to run (remove the key)"
        for key in _code_keys(saved, "")
    ]
    callbacks = (saved.get("hydra") or {}).get("callbacks")
    if callbacks:
        found.append(f"hydra.callbacks: in {source}: a saved config cannot install callbacks (remove the key)")
    for entry in saved.get("defaults") or []:
        if entry not in shipped_defaults:
            found.append(
                f"defaults: {entry!r} in {source}: a saved config holds resolved values, not config groups; "
                "pick groups on the command line instead"
            )
    module = _metric_module(saved.get("task") or {})
    replaced = any(o.lstrip("+~").startswith(("task.evaluate=", "task.metric=")) for o in overrides)
    if module and not replaced and not _granted(METRIC_KEY, overrides):
        found.append(
            f"task.evaluate: {module!r} in {source}: an evaluate module is Python code and runs only when the "
            f"command line grants it: add {METRIC_KEY}=true if you trust it (or task.evaluate=null)"
        )
    trust = (saved.get("model") or {}).get("trust_remote_code")
    if trust is True and not _granted(TRUST_KEY, overrides):
        found.append(
            f"{TRUST_KEY}: true in {source}; remote code runs only when asked for on the command line: "
            f"add {TRUST_KEY}=true if you trust the model's author"
        )
    return found


def stage(
    source_dir: Path, config_name: str, stage_dir: Path, hydra_settings: dict[str, Any], overrides: list[str]
) -> None:
    """Checks `<source_dir>/<config_name>.yaml` and writes its clean copy as `<stage_dir>/config.yaml`."""
    source = source_dir / f"{config_name}.yaml"
    if not source.is_file():
        raise ConfigError(f"--config-name: {source} not found (a run's saved config is <run-dir>/.hydra/config.yaml)")
    try:
        loaded = OmegaConf.to_container(OmegaConf.load(source), resolve=False)
    except (OmegaConfBaseException, OSError, ValueError) as err:
        raise ConfigError(f"{source}: not a readable config ({str(err).splitlines()[0][:200]})") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"{source}: expected a mapping of config keys")
    saved: dict[str, Any] = {str(key): value for key, value in loaded.items()}
    found = problems(saved, hydra_settings["defaults"], overrides, source)
    if found:
        raise ConfigError(found)
    values = {k: v for k, v in saved.items() if k not in ("hydra", "defaults")}
    if isinstance(values.get("task"), dict):  # consent to run a metric module comes from the command line only
        values["task"] = {k: v for k, v in values["task"].items() if k != "trust_metric_code"}
    stage_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(OmegaConf.create({**hydra_settings, **values}), stage_dir / f"{PRIMARY_CONFIG}.yaml")
