"""Experiment trackers through Accelerate's tracker API: TensorBoard (default), Weights & Biases, MLflow, or none.

A run's tracker gets the resolved config as parameters (dotted keys), scalars per logging step (loss, learning
rate, samples/s) and per evaluation (every metric per language), the final metrics, and the run's report as an
artifact. Where each writes follows the tool's own settings (WANDB_MODE, WANDB_PROJECT, MLFLOW_TRACKING_URI,
MLFLOW_EXPERIMENT_NAME); TensorBoard writes into <run>/tensorboard/.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import netrc
import os
import socket
import urllib.parse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from mlft.errors import ConfigError

log = logging.getLogger("mlft")

TRACKERS = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow", "none": None}
"""tracker= value -> the module it needs."""
PROJECT = "mlft"
"""The W&B project and MLflow experiment unless WANDB_PROJECT / MLFLOW_EXPERIMENT_NAME say otherwise."""


WANDB_MODES = ("online", "offline", "disabled", "dryrun", "shared")
MLFLOW_SCHEMES = ("http", "https", "sqlite", "postgresql", "mysql", "mssql", "databricks", "databricks-uc")
"""Tracking URI schemes MLflow 3 serves runs from (its file store is in maintenance mode and refuses new runs)."""


def tracker_problems(tracker: str) -> list[str]:
    """What keeps the tracker from starting, checked before any work: the package, and the settings it reads from
    the environment (W&B's mode and credentials, MLflow's tracking URI, each server's reachability)."""
    if tracker not in TRACKERS:
        return [f"tracker: {tracker!r} is not a tracker (allowed: {', '.join(TRACKERS)})"]
    module = TRACKERS[tracker]
    if module is not None and importlib.util.find_spec(module) is None:
        package = "mlflow-skinny" if tracker == "mlflow" else module
        return [f"tracker: {tracker!r} needs the {module} package (pip install {package})"]
    if tracker == "wandb":
        return wandb_problems(os.environ)
    if tracker == "mlflow":
        return mlflow_problems(os.environ.get("MLFLOW_TRACKING_URI"))
    return []


def wandb_problems(env: Mapping[str, str]) -> list[str]:
    mode = env.get("WANDB_MODE", "online")
    if mode not in WANDB_MODES:
        return [f"tracker: WANDB_MODE={mode!r} is not a W&B mode (allowed: {', '.join(WANDB_MODES)})"]
    if mode in ("offline", "disabled", "dryrun"):
        return []
    base = env.get("WANDB_BASE_URL", "https://api.wandb.ai")
    host = urllib.parse.urlsplit(base).hostname or ""
    if not env.get("WANDB_API_KEY") and not _netrc_has(host):
        return [
            "tracker: wandb has no credentials (WANDB_API_KEY, or `wandb login`); set them, or WANDB_MODE=offline "
            "to keep the W&B run in <run>/wandb/ and `wandb sync` it later"
        ]
    problem = unreachable(base)
    return [f"tracker: WANDB_BASE_URL {base}: {problem} (or WANDB_MODE=offline)"] if problem else []


def mlflow_problems(uri: str | None) -> list[str]:
    if uri is None:
        return []  # MLflow's default: sqlite:///mlflow.db in the working folder
    scheme = urllib.parse.urlsplit(uri).scheme
    if scheme in ("", "file"):
        return [
            f"tracker: MLFLOW_TRACKING_URI={uri} is a file store, which MLflow 3 no longer starts runs in; use "
            "MLFLOW_TRACKING_URI=sqlite:///mlflow.db (or an MLflow server's http:// address)"
        ]
    if scheme not in MLFLOW_SCHEMES:
        return [
            f"tracker: MLFLOW_TRACKING_URI={uri}: unknown scheme {scheme!r} (allowed: {', '.join(MLFLOW_SCHEMES)})"
        ]
    problem = unreachable(uri) if scheme in ("http", "https") else None
    return [f"tracker: MLFLOW_TRACKING_URI={uri}: {problem}"] if problem else []


def _netrc_has(host: str) -> bool:
    try:
        return netrc.netrc().authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def unreachable(url: str, timeout: float = 3.0) -> str | None:
    """Why nothing answers at `url`'s host and port (refused, no route, no such host, timed out), or None."""
    parts = urllib.parse.urlsplit(url)
    if not parts.hostname:
        return "not an address (expected http(s)://host[:port])"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout):
            return None
    except OSError as err:
        return f"cannot reach {parts.hostname}:{port} ({err.strerror or type(err).__name__})"


def flat_params(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """The config as dotted keys with values every tracker accepts (lists and None as text)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(flat_params(value, f"{prefix}{key}."))
        elif isinstance(value, (int, float, str, bool)):
            out[f"{prefix}{key}"] = value
        else:
            out[f"{prefix}{key}"] = json.dumps(value, ensure_ascii=False)
    return out


def start(accelerator: Any, tracker: str, run_dir: Path, config: dict[str, Any]) -> None:
    """Opens the run's tracker (the Accelerator was built with log_with=tracker)."""
    import os

    name = run_dir.name
    init_kwargs: dict[str, Any] = {
        "wandb": {"dir": str(run_dir), "name": name},
        "mlflow": {"run_name": name},
    }
    project = os.environ.get("WANDB_PROJECT" if tracker == "wandb" else "MLFLOW_EXPERIMENT_NAME", PROJECT)
    project = "tensorboard" if tracker == "tensorboard" else project  # TensorBoard: the folder's name
    _warned.clear()  # a new run warns again
    try:
        accelerator.init_trackers(project, config=flat_params(config), init_kwargs=init_kwargs)
    except Exception as err:  # noqa: BLE001 - each tracker raises its own: the run stops before training
        raise ConfigError(f"tracker: {tracker} cannot start ({_first_line(err)})") from None


def safely(what: str, call: Callable[[], Any]) -> None:
    """A tracker call during or after training: its failure (a server gone, a full disk) costs the tracker's copy,
    never the run's own files, metrics and model; warned about once per kind of call."""
    try:
        call()
    except Exception as err:  # noqa: BLE001 - any tracker's own error types
        if what not in _warned:
            _warned.add(what)
            log.warning(
                "tracker: %s failed (%s); the run goes on, its own files keep everything", what, _first_line(err)
            )


_warned: set[str] = set()


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else type(err).__name__


def log_final(accelerator: Any, metrics: dict[str, Any], step: int) -> None:
    """Every final metric, as final/<split>/<lang>/<metric>."""
    scalars = {
        f"final/{split}/{lang}/{key}": value
        for split, by_lang in metrics.items()
        if isinstance(by_lang, dict)
        for lang, values in by_lang.items()
        if isinstance(values, dict)
        for key, value in values.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool)
    }
    accelerator.log(scalars, step=step)


def log_report(accelerator: Any, tracker: str, files: list[Path]) -> None:
    """The run's report files as artifacts of the tracker's run (TensorBoard has no artifacts)."""
    if not accelerator.is_main_process:
        return
    present = [f for f in files if f.is_file()]
    if tracker == "wandb":
        run = accelerator.get_tracker("wandb", unwrap=True)
        for path in present:
            run.save(str(path), base_path=str(path.parent), policy="now")
    elif tracker == "mlflow":
        import mlflow

        for path in present:
            mlflow.log_artifact(str(path))
