"""`task.metric=evaluate:<module>[:<key>]`: the shorthand for a metric from an `evaluate` module, read before the
config is checked (the module itself is loaded by mlft.tasks.evaluate_metric)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

PREFIX = "evaluate:"


def module_name(spec: str) -> str:
    """The name a module's numbers are reported under: the script's or folder's name, or the hub name's last part."""
    return Path(spec.rstrip("/")).name.removesuffix(".py")


def parse_metric(metric: str) -> tuple[str, str]:
    """`evaluate:<module>[:<key>]` -> (the module, the reported name that selects checkpoints)."""
    spec, _, key = metric.removeprefix(PREFIX).partition(":")
    name = module_name(spec)
    return spec, name if not key or key == name else f"{name}.{key}"


def expand_shorthand(task: dict[str, Any], base_dir: Path) -> list[str]:
    """In a config's task section: `metric: evaluate:<module>[:<key>]` becomes `evaluate: <module>` and the reported
    name as the metric; a local module becomes an absolute path, so the saved config works from anywhere."""
    metric = task.get("metric")
    if isinstance(metric, str) and metric.startswith(PREFIX):
        spec, name = parse_metric(metric)
        if task.get("evaluate") not in (None, spec):
            return [f"task.metric: {metric!r} names another module than task.evaluate={task['evaluate']!r}"]
        task["evaluate"], task["metric"] = spec, name
    given = task.get("evaluate")
    if isinstance(given, str) and (base_dir / given).exists():
        task["evaluate"] = str((base_dir / given).resolve())
    return []
