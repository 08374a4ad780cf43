"""The README.md of an exported model: what it is, how well it does per language, and how to rebuild it."""

from __future__ import annotations

from pathlib import Path

from mlft.config import RunConfig
from mlft.models.cache import HUB_ORIGIN, PREFIX
from mlft.rundir import Languages, RunDir


def fine_tuning(config: RunConfig) -> str:
    peft, distill, layers = config.peft, config.distill, config.model.num_layers
    if peft.method == "none":
        how = "full" + (" (word embeddings frozen)" if config.model.freeze_embeddings else "")
    else:
        targets = ", ".join(peft.target_modules) if peft.target_modules else "peft's default layers"
        shape = f"r={peft.r}, alpha={peft.alpha}, " if peft.method in ("lora", "loha", "lokr") else ""
        variant = "+".join(name for name, on in (("dora", peft.use_dora), ("rslora", peft.use_rslora)) if on)
        method = f"{peft.method} ({variant})" if variant and peft.method == "lora" else peft.method
        how = f"{method} ({shape}on {targets}), merged into these weights; plain transformers loads them"
    if layers is not None:
        how += f"; {layers} of the base model's layers, evenly spaced"
    if distill.teacher is not None:
        how += f"; distilled from `{distill.teacher}` (alpha {distill.alpha}, temperature {distill.temperature})"
    return how


def hub_base_model(name_or_path: str) -> str | None:
    """The hub id a model card names as base_model: the packaged e5's original, a hub id as given; None for a local
    folder, which the Hub's metadata cannot name."""
    if name_or_path.startswith(PREFIX):
        return HUB_ORIGIN
    if Path(name_or_path).exists() or name_or_path.startswith((".", "/", "~")):
        return None
    return name_or_path


def model_card(
    run: RunDir,
    config: RunConfig,
    languages: Languages,
    labels: list[str],
    pipeline_tag: str,
    artifact: str,
    parity: str | None,
    usage: list[str],
) -> str:
    """Markdown with Hub-style metadata; every number comes from files of the run. `usage`: how to use the artifact
    outside mlft, in the export format's words."""
    env = run.env()
    sources = sorted({v["source"] for v in env.get("data", {}).values()})
    report = run.report_file.read_text().split("\n", 1)[-1].strip() if run.report_file.is_file() else ""
    train_langs, eval_langs = languages.train, languages.eval
    langs = sorted(set(train_langs) | set(eval_langs))
    lines = [
        "---",
        f"language: [{', '.join(langs)}]",
        f"pipeline_tag: {pipeline_tag}",
        "library_name: transformers",
        *([f"base_model: {base}"] if (base := hub_base_model(config.model.name_or_path)) else []),
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
    lines += usage
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
