"""Task types: `TASKS` maps `task.type` to the class that implements mlft.tasks.protocol.Task.

Adding a task type is one module with one class (see the protocol) plus one entry here, or, from outside
the package, `TASKS["my_type"] = MyTask` before mlft runs; and a preset in configs/task/.
"""

from __future__ import annotations

from typing import Any

from mlft.config import ModelConfig, RunConfig, TaskConfig
from mlft.models.adapters import MASKED_LM
from mlft.tasks.masked_lm import MaskedLM
from mlft.tasks.protocol import Example, Task
from mlft.tasks.sequence_classification import SequenceClassification
from mlft.tasks.token_classification import TokenClassification

TASKS: dict[str, Any] = {
    TokenClassification.name: TokenClassification,
    SequenceClassification.name: SequenceClassification,
    MaskedLM.name: MaskedLM,
}
"""task.type -> a class with `build(task_config, model_config, labels)`, `config_problems(task_config, model_config)`
and the members of the Task protocol."""

__all__ = ["TASKS", "Example", "Task", "build_task", "config_problems"]


def build_task(task: TaskConfig, model: ModelConfig, labels: list[str]) -> Task:
    return TASKS[task.type].build(task, model, labels)


def config_problems(run: RunConfig) -> list[str]:
    """What the task type says about the run's config: a known type, a metric it reports, its own settings."""
    kind = TASKS.get(run.task.type)
    if kind is None:
        return [f"task.type: {run.task.type!r} is not a task type (allowed: {', '.join(TASKS)})"]
    problems = list(kind.config_problems(run.task, run.model))
    if run.peft.method != "none" and not kind.peft_task_type:
        problems.append(f"peft.method: {run.task.type} runs train full weights (allowed: none)")
    if run.peft.lang_adapters and kind.peft_task_type == MASKED_LM:
        problems.append("peft.lang_adapters: a masked-LM run trains one language adapter (peft=lang_adapter)")
    if run.task.metric not in kind.metrics:
        problems.append(f"task.metric: {run.task.metric!r} is not reported (allowed: {', '.join(kind.metrics)})")
    return problems
