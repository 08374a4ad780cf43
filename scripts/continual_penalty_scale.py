"""How strong an EWC or L2 penalty is, measured on a finished two-stage run without one.

Prints Σ F (θ2 − θ1)² (F: the first stage's Fisher information, as trainer.continual.regulariser=ewc estimates
it) and Σ (θ2 − θ1)² over the parameters the second stage trains, and the strength λ at which λ/2 times each
equals 1 at the unregularised run's end point: a scale to choose trainer.continual.strength from.

    python scripts/continual_penalty_scale.py <run-dir>
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from mlft.commands.continual import estimate_stage_fisher, load_stages
from mlft.commands.saved import load_run, read_config
from mlft.engine.continual import load_fisher
from mlft.models.freeze import freeze
from mlft.tasks import build_task


def main(run_dir: Path) -> None:
    run = read_config(run_dir / "config.yaml")
    stages = load_stages(run)
    first, second = (load_run(run_dir / "stages" / s.folder) for s in stages[:2])
    stages[0].task = build_task(stages[0].run.task, stages[0].run.model, stages[0].loaded.labels)
    with tempfile.TemporaryDirectory() as tmp:
        estimate_stage_fisher(run, stages, stages[0], first.model, first.tokenizer, Path(tmp))
        fisher = load_fisher([Path(tmp) / "fisher.safetensors"])
    model = stages[1].run.model
    freeze(second.model, model.freeze_embeddings, model.freeze_layers)
    before = dict(first.model.named_parameters())
    ewc = l2 = 0.0
    for name, p in second.model.named_parameters():
        if p.requires_grad and name in before:
            squared = (p.detach() - before[name].detach()) ** 2
            l2 += float(squared.sum())
            ewc += float((squared * fisher[name]).sum()) if name in fisher else 0.0
    print(f"sum F (theta2 - theta1)^2 = {ewc:.4g}: ewc strength for a penalty of 1 = {2 / ewc:.3g}")
    print(f"sum (theta2 - theta1)^2   = {l2:.4g}: l2 strength for a penalty of 1 = {2 / l2:.3g}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
