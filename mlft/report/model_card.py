"""The README.md of an exported model: what it is, how well it does per language, and how to rebuild it."""

from __future__ import annotations

import json
from pathlib import Path

from mlft.config import RunConfig
from mlft.runs import trained_langs

PIPELINE_TAGS = {"token_classification": "token-classification", "sequence_classification": "text-classification"}


def fine_tuning(config: RunConfig) -> str:
    peft, distill, layers = config.peft, config.distill, config.model.num_layers
    if peft.method == "none":
        how = "full" + (" (word embeddings frozen)" if config.model.freeze_embeddings else "")
    else:
        targets = ", ".join(peft.target_modules) if peft.target_modules else "peft's default layers"
        shape = f"r={peft.r}, alpha={peft.alpha}, " if peft.method == "lora" else ""
        how = f"{peft.method} ({shape}on {targets}), merged into these weights; plain transformers loads them"
    if layers is not None:
        how += f"; {layers} of the base model's layers, evenly spaced"
    if distill.teacher is not None:
        how += f"; distilled from `{distill.teacher}` (alpha {distill.alpha}, temperature {distill.temperature})"
    return how


def model_card(run_dir: Path, config: RunConfig, labels: list[str], artifact: str, parity: str | None) -> str:
    """Markdown with Hub-style metadata; every number comes from files of the run."""
    env = json.loads((run_dir / "env.json").read_text()) if (run_dir / "env.json").is_file() else {}
    sources = sorted({v["source"] for v in env.get("data", {}).values()})
    report = (
        (run_dir / "report.md").read_text().split("\n", 1)[-1].strip() if (run_dir / "report.md").is_file() else ""
    )
    # The languages as the run resolved them ([all] -> the task's languages), from its metrics.json.
    metrics = json.loads((run_dir / "metrics.json").read_text()) if (run_dir / "metrics.json").is_file() else {}
    train_langs = trained_langs(run_dir, config)
    eval_langs = list(dict.fromkeys(lang for split in ("dev", "test") for lang in metrics.get(split, {})))
    eval_langs = eval_langs or config.lang.eval
    langs = sorted(set(train_langs) | set(eval_langs))
    pipeline = PIPELINE_TAGS[config.task.type]
    lines = [
        "---",
        f"language: [{', '.join(langs)}]",
        f"pipeline_tag: {pipeline}",
        "library_name: transformers",
        f"base_model: {config.model.name_or_path}",
        "tags: [mlft]",
        "---",
        "",
        f"# {config.task.name} ({', '.join(train_langs)}) — fine-tuned with mlft",
        "",
        f"- **Artifact:** {artifact}",
        f"- **Base model:** `{config.model.name_or_path}`"
        + (f" (revision `{config.model.revision}`)" if config.model.revision else ""),
        f"- **Fine-tuning:** {fine_tuning(config)}",
        f"- **Task:** {config.task.type}, metric `{config.task.metric}`, labels: {', '.join(labels)}",
        f"- **Training languages:** {', '.join(train_langs)}; evaluated on: {', '.join(eval_langs)}",
        f"- **Data:** {', '.join(sources) if sources else 'see config.yaml'}",
        f"- **Seed:** {config.seed}; mlft {env.get('versions', {}).get('mlft', '?')}, git {env.get('git_sha') or '?'}",
        "",
        "## Results of the run (PyTorch, per language)",
        "",
        report or "(no report.md in the run)",
        "",
    ]
    if parity:
        lines += ["## This artifact against the run's model", "", parity, ""]
    lines += [
        "## Use",
        "",
        "```bash",
        "mlft predict model=<this folder> input=texts.txt output=predictions.jsonl",
        "```",
        "",
    ]
    if artifact.startswith("HuggingFace") and config.model.pooling == "mean":
        lines += [
            "The classifier reads the mean of the last hidden states (`model.pooling=mean`); transformers' Auto",
            "classes would load the same weights but classify from the first token, so load it with mlft:",
            "",
            "```python",
            "from mlft.models.pooling import MeanPoolingClassifier",
            'model = MeanPoolingClassifier.from_pretrained("<this folder>")',
            "```",
            "",
        ]
    elif artifact.startswith("HuggingFace"):
        lines += [
            "```python",
            "from transformers import pipeline",
            f'nlp = pipeline("{pipeline}", model="<this folder>")',
            "```",
            "",
        ]
    lines += [
        "## Reproduce",
        "",
        "The run's resolved configuration is `mlft-config.yaml` in this folder; from the run directory:",
        "",
        "```bash",
        "mlft train --config-path <run-dir>/.hydra --config-name config hydra.run.dir=<new-dir>",
        "```",
        "",
    ]
    return "\n".join(lines)
