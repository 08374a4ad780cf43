"""Metrics from Hugging Face `evaluate` modules: `task.evaluate=<module>`, or `task.metric=evaluate:<module>[:<key>]`
to also select checkpoints by it.

The built-in scoring (seqeval, scikit-learn) needs no network and stays; a module's numbers are added beside it,
named `<module>` (its key named like the module, or its only number) or `<module>.<key>`, so they never shadow a
built-in metric. The module gets what the task predicts in evaluate's conventions: tag sequences for NER (as
`seqeval` takes them), class ids for classification, 0/1 rows for multi-label. A hub name needs the network once
(evaluate caches it); offline, give the path of a module script or of its folder.
"""

from __future__ import annotations

import functools
import numbers
from typing import Any

from mlft.errors import ConfigError
from mlft.metric_spec import module_name


def reported(result: dict[str, Any], name: str) -> dict[str, float]:
    """A module's result -> its numbers under reported names (nested values such as per-type dicts are dropped)."""
    values = {key: float(v) for key, v in result.items() if isinstance(v, numbers.Real) and not isinstance(v, bool)}
    if len(values) == 1:
        return {name: next(iter(values.values()))}
    return {name if key == name else f"{name}.{key}": value for key, value in values.items()}


@functools.cache
def load(spec: str) -> Any:
    """The module, loaded once per process (`import evaluate` alone takes seconds)."""
    import evaluate

    try:
        return evaluate.load(spec)
    except Exception as err:  # noqa: BLE001 - evaluate raises FileNotFoundError, ConnectionError, ImportError, ...
        raise ConfigError(
            f"task.evaluate: cannot load the evaluate module {spec!r} ({type(err).__name__}: {err}); offline, give "
            "the path of a local module script or its folder"
        ) from None


class EvaluateScored:
    """A task whose `score` also runs an evaluate module; everything else is the task's own."""

    def __init__(self, task: Any, spec: str, higher_is_better: bool):
        self._task, self.module, self.name, self.higher = task, load(spec), module_name(spec), higher_is_better
        self.metrics = dict(task.metrics)
        """The task's metrics, then the module's once it has scored (their names come from its result)."""

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self._task, attribute)

    def score(self, examples: list[dict[str, Any]], predictions: list[dict[str, Any]]) -> dict[str, Any]:
        out = self._task.score(examples, predictions)
        if not examples:
            return out
        preds, refs = self._task.evaluate_inputs(examples, predictions)
        try:
            result = self.module.compute(predictions=preds, references=refs)
        except Exception as err:  # noqa: BLE001 - any failure of user code inside the module
            raise ConfigError(f"evaluate: the module {self.name!r} failed ({type(err).__name__}: {err})") from None
        scores = reported(result, self.name)
        self.metrics.update({key: self.higher for key in scores if key not in self.metrics})
        return {**out, **scores}


def check_metric(task: Any, examples: list[dict[str, Any]], metric: str) -> None:
    """Scores a few examples against themselves (gold fields are named like predictions), so a module that
    fails on the task's inputs, or a selected key it does not return, is reported before training."""
    try:
        result = task.score(examples[:8], examples[:8])
    except ConfigError:
        raise
    except Exception as err:  # noqa: BLE001 - any failure of user code inside the module
        failure = f"{type(err).__name__}: {err}"
        raise ConfigError(f"task.evaluate: the module fails on this task's predictions ({failure})") from None
    if metric not in result:
        names = [key for key in result if key not in ("n",) and isinstance(result[key], float)]
        raise ConfigError(f"task.metric: {metric!r} is not reported (reported: {', '.join(names)})")
