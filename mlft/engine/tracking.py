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
from pathlib import Path
from typing import Any

log = logging.getLogger("mlft")

TRACKERS = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow", "none": None}
"""tracker= value -> the module it needs."""
PROJECT = "mlft"
"""The W&B project and MLflow experiment unless WANDB_PROJECT / MLFLOW_EXPERIMENT_NAME say otherwise."""


def tracker_problems(tracker: str) -> list[str]:
    if tracker not in TRACKERS:
        return [f"tracker: {tracker!r} is not a tracker (allowed: {', '.join(TRACKERS)})"]
    module = TRACKERS[tracker]
    if module is not None and importlib.util.find_spec(module) is None:
        package = "mlflow-skinny" if tracker == "mlflow" else module
        return [f"tracker: {tracker!r} needs the {module} package (pip install {package})"]
    return []


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
    accelerator.init_trackers(project, config=flat_params(config), init_kwargs=init_kwargs)


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
