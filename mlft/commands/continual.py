"""Continual training (trainer.stages): stages trained one after another on one model, and the forgetting matrix.

Each stage is an ordinary run in <run>/stages/<k>-<name>/ (its config, checkpoints, report and model/), whose
model.name_or_path is the model/ of the stage before: each stage can be evaluated, exported or continued on its
own. After every stage its model scores every stage's test set (dev where a stage has none): row k of the
forgetting matrix; row 0 is the model before the first stage. <run>/report.md and metrics.json hold the matrix,
the average final score, backward and forward transfer (Lopez-Paz & Ranzato 2017) and each stage's forgetting.
All stages share one label set (the union of theirs), so one head serves them all.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from mlft.commands.prepare import initial_model, scoring_batches
from mlft.commands.saved import load_run
from mlft.commands.stages import stage_configs
from mlft.commands.train import train
from mlft.config import RunConfig
from mlft.data.feature_cache import Encoder, feature_cache_dir
from mlft.data.load import LoadedData, load_data
from mlft.destinations import share
from mlft.engine.continual import FISHER_FILE, Anchor, StageInputs, estimate_fisher, load_fisher, save_fisher
from mlft.engine.devices import make_accelerator
from mlft.engine.evaluate import EvalSet, encode_sets, evaluate_sets
from mlft.errors import ConfigError
from mlft.models.freeze import freeze
from mlft.models.load import load_tokenizer
from mlft.report import plots
from mlft.rundir import RunDir, read_paths
from mlft.tasks import Task, build_task, higher_is_better

log = logging.getLogger("mlft")

PROGRESS_FILE = "stages.json"
"""The matrix rows scored so far: what a resumed run does not score again."""


@dataclass
class Stage:
    index: int
    """From 1."""
    name: str
    run: RunConfig
    loaded: LoadedData
    task: Task | None = None
    sets: list[EvalSet] = dataclasses.field(default_factory=list)
    """The sets this stage is scored on after every stage (encoded once: the tokenizer never changes)."""
    dev_sets: list[EvalSet] = dataclasses.field(default_factory=list)
    """Its dev sets, on which the final model is scored (what a sweep ranks the sequence by)."""

    @property
    def folder(self) -> str:
        return f"{self.index}-{self.name}"


def train_stages(
    run: RunConfig,
    run_dir: Path,
    overrides: list[str],
    hydra_settings: dict[str, Any],
    unique_dir: bool = False,
    origin: Path | None = None,
) -> Path:
    """Trains the stages into `run_dir`/stages/ and writes the forgetting matrix; returns the run directory."""
    resuming = run.resume is not None
    rd = RunDir(run_dir)
    if not resuming:
        rd = rd.claim(run.overwrite, unique_dir, read_paths(run))
        rd.save_config(run, overrides, hydra_settings)
        for leftover in (rd.stages_dir, rd.path / PROGRESS_FILE):  # of the run overwrite=true replaces
            shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink(missing_ok=True)
    try:
        stages = load_stages(run)
        tokenizer = load_tokenizer(run.model.name_or_path, run.model.revision, run.model.trust_remote_code)
        cache = feature_cache_dir() if run.data.cache else None
        for stage in stages:
            stage.task = build_task(stage.run.task, stage.run.model, stage.loaded.labels)
            encode = Encoder(stage.task, tokenizer, cache)
            stage.sets = scored_sets(stage.loaded, encode)
            stage.dev_sets = encode_sets(encode, {"dev": stage.loaded.splits.get("dev", {})})
            if not stage.sets:
                raise ConfigError(f"trainer.stages[{stage.index - 1}]: stage {stage.name} has no dev or test data")
    except BaseException:
        if not resuming:
            rd.release()
        raise
    progress = read_progress(rd) if resuming else {"rows": {}}
    if "before" not in progress:
        first = stages[0]
        assert first.task is not None
        log.info("continual: scoring the model before the first stage on every stage's sets")
        model = initial_model(first.run, first.task, tokenizer)
        progress["before"] = score_row(model, tokenizer, stages, run)
        write_progress(rd, progress)
    start, saved = run.model.name_or_path, None
    for stage in stages:
        stage_dir = rd.stages_dir / stage.folder
        stage_run = replace(stage.run, model=replace(stage.run.model, name_or_path=str(start)))
        start = str(RunDir(stage_dir).model_dir.resolve())
        if stage.name in progress["rows"] and RunDir(stage_dir).is_finished():
            log.info("continual: stage %s already trained (%s)", stage.folder, stage_dir)
            continue
        inputs = stage_inputs(run, stages, stage, rd)
        again = resuming and RunDir(stage_dir).composable_config.is_file()
        log.info("continual: stage %d of %d, %s -> %s", stage.index, len(stages), stage.name, stage_dir)
        stage_run = replace(stage_run, resume=str(stage_dir) if again else None)
        train(stage_run, stage_dir, [], hydra_settings, stage=inputs)
        saved = load_run(stage_dir)
        progress["rows"][stage.name] = score_row(saved.model, saved.tokenizer, stages, run)
        if run.trainer.continual.regulariser == "ewc" and stage.index < len(stages):
            estimate_stage_fisher(run, stages, stage, saved.model, saved.tokenizer, stage_dir)
        write_progress(rd, progress)
    # The last stage's model, unless this (resumed) process skipped it.
    final = saved if saved is not None and saved.origin == rd.stages_dir / stages[-1].folder else None
    final = final or load_run(rd.stages_dir / stages[-1].folder)
    dev = score_row(final.model, final.tokenizer, stages, run, dev=True)
    return write_matrix(run, rd, stages, progress, dev)


def load_stages(run: RunConfig) -> list[Stage]:
    """Every stage's config and data; stages whose label sets differ all get their union (task.labels)."""
    stages = []
    for index, (name, config) in enumerate(stage_configs(run), 1):
        rules = build_task(config.task, config.model, [])
        loaded = load_data(config.data, config.task, rules, config.lang.train, config.lang.eval)
        stages.append(Stage(index, name, config, loaded))
    union = list(dict.fromkeys(label for s in stages for label in s.loaded.labels))
    if any(s.loaded.labels != union for s in stages):
        log.info("continual: one label set for all stages: %s", ", ".join(union))
        for s in stages:
            s.run = replace(s.run, task=replace(s.run.task, labels=union))
            rules = build_task(s.run.task, s.run.model, [])
            s.loaded = load_data(s.run.data, s.run.task, rules, s.run.lang.train, s.run.lang.eval)
    return stages


def scored_sets(loaded: LoadedData, encode: Encoder) -> list[EvalSet]:
    """The test sets of a stage's languages (dev for a language without test data)."""
    splits = loaded.splits
    langs = dict.fromkeys([*splits.get("test", {}), *splits.get("dev", {})])
    chosen: dict[str, dict[str, list[dict[str, Any]]]] = {"test": {}, "dev": {}}
    for lang in langs:
        split = "test" if splits.get("test", {}).get(lang) else "dev"
        chosen[split][lang] = splits[split][lang]
    return encode_sets(encode, chosen)


def score_row(model: Any, tokenizer: Any, stages: list[Stage], run: RunConfig, dev: bool = False) -> dict[str, Any]:
    """One row of the matrix: each stage's metric on its sets (mean over its languages) and per language; `dev`:
    on the stages' dev sets instead (stages without one are left out)."""
    accelerator = make_accelerator(replace(run.trainer, tensorboard=False, num_processes=1))
    prepared = accelerator.prepare(model)
    row = {}
    for stage in stages:
        assert stage.task is not None
        sets = stage.dev_sets if dev else stage.sets
        if not sets:
            continue
        metrics, _ = evaluate_sets(
            accelerator, prepared, stage.task, tokenizer.pad_token_id, sets, run.trainer.eval_batch_size
        )
        metric = stage.run.task.metric
        by_lang = {f"{s.split}/{s.lang}": float(metrics[s.split][s.lang][metric]) for s in sets}
        row[stage.name] = {"score": sum(by_lang.values()) / len(by_lang), "by_lang": by_lang}
    return row


def stage_inputs(run: RunConfig, stages: list[Stage], stage: Stage, rd: RunDir) -> StageInputs:
    """The replayed examples of the earlier stages and the penalty towards the stage's starting weights."""
    continual, earlier = run.trainer.continual, stages[: stage.index - 1]
    replay: dict[str, list[dict[str, Any]]] = {}
    for before in earlier if continual.replay else []:
        for lang, examples in memory(before, continual.replay, run.seed).items():
            replay.setdefault(lang, []).extend(examples)
    if replay:
        counts = ", ".join(f"{lang} {len(exs):,}" for lang, exs in replay.items())
        total = sum(map(len, replay.values()))
        log.info("continual: replaying %s examples of earlier stages (%s)", f"{total:,}", counts)
    anchor = None
    if earlier and continual.regulariser == "l2":
        anchor = Anchor(continual.strength)
    elif earlier and continual.regulariser == "ewc":
        files = [rd.stages_dir / s.folder / FISHER_FILE for s in earlier]
        anchor = Anchor(continual.strength, load_fisher(files))
    return StageInputs(replay, anchor)


def memory(stage: Stage, share_kept: float, seed: int) -> dict[str, list[dict[str, Any]]]:
    """The share of a stage's training examples kept for replay: drawn once per stage from the seed, so every
    later stage replays the same ones (a fixed memory, as a buffer filled while training that stage would be)."""
    rng = random.Random(f"{seed}-{stage.index}")
    kept = {}
    for lang, examples in stage.loaded.splits["train"].items():
        n = round(share_kept * len(examples))
        kept[lang] = [examples[i] for i in sorted(rng.sample(range(len(examples)), n))] if n else []
    return {lang: exs for lang, exs in kept.items() if exs}


def estimate_stage_fisher(
    run: RunConfig, stages: list[Stage], stage: Stage, model: Any, tokenizer: Any, stage_dir: Path
) -> None:
    """The Fisher information of the stage's finished model on its training data, over the parameters the next
    stage trains (frozen ones have none), saved in the stage's folder."""
    assert stage.task is not None
    following = stages[stage.index].run.model
    freeze(model, following.freeze_embeddings, following.freeze_layers)
    encode = Encoder(stage.task, tokenizer, feature_cache_dir() if run.data.cache else None)
    features = [f for lang, exs in stage.loaded.splits["train"].items() for f in encode(exs, lang)]
    torch.manual_seed(run.seed)  # masking of a masked-LM batch
    count = run.trainer.continual.fisher_batches
    batches = scoring_batches(stage.task, tokenizer.pad_token_id, features, run.seed, run.trainer.batch_size, count)
    path = save_fisher(estimate_fisher(model, batches), stage_dir)
    log.info("continual: Fisher information of stage %s on %d batches -> %s", stage.name, len(batches), path)


def read_progress(rd: RunDir) -> dict[str, Any]:
    path = rd.path / PROGRESS_FILE
    return json.loads(path.read_text()) if path.is_file() else {"rows": {}}


def write_progress(rd: RunDir, progress: dict[str, Any]) -> None:
    path = rd.path / PROGRESS_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(progress, indent=2))
    tmp.replace(path)


def transfer(names: list[str], before: dict[str, Any], rows: dict[str, Any], higher: bool) -> dict[str, Any]:
    """Average final score, backward transfer (how the last model does on earlier stages against right after
    each), forward transfer (each stage's score before training on it against the untrained model's), and each
    earlier stage's forgetting (its best score after any stage before the last minus the last one's); signs as
    for a higher-is-better metric (flipped otherwise, so positive is always good)."""
    sign = 1.0 if higher else -1.0
    r = [[rows[k][j]["score"] for j in names] for k in names]
    b = [before[j]["score"] for j in names]
    t = len(names)
    last = r[-1]
    result: dict[str, Any] = {"average": sum(last) / t}
    if t > 1:
        result["backward_transfer"] = sign * sum(last[j] - r[j][j] for j in range(t - 1)) / (t - 1)
        result["forward_transfer"] = sign * sum(r[j - 1][j] - b[j] for j in range(1, t)) / (t - 1)
        best = max if higher else min
        result["forgetting"] = {
            names[j]: sign * (best(r[k][j] for k in range(j, t - 1)) - last[j]) for j in range(t - 1)
        }
    return result


def write_matrix(
    run: RunConfig, rd: RunDir, stages: list[Stage], progress: dict[str, Any], dev: dict[str, Any]
) -> Path:
    """metrics.json, report.md and plots/forgetting.png of the whole sequence; `dev`: the final model's dev scores
    per stage, whose mean is what a sweep ranks the sequence by."""
    names = [s.name for s in stages]
    rows, before = progress["rows"], progress["before"]
    metric = stages[-1].run.task.metric
    summary = transfer(names, before, rows, higher_is_better(stages[-1].run.task))
    continual = run.trainer.continual
    record = {
        "continual": {
            "metric": metric,
            "stages": [
                {"name": s.name, "folder": str((rd.stages_dir / s.folder).relative_to(rd.path))} for s in stages
            ],
            "before": before,
            "after": rows,
            "matrix": [[rows[k][j]["score"] for j in names] for k in names],
            **summary,
            "replay": continual.replay,
            "regulariser": continual.regulariser,
            "strength": continual.strength if continual.regulariser != "none" else None,
        },
        "selection": {
            "metric": metric,
            "final_dev": dev,
            "final_score": sum(d["score"] for d in dev.values()) / len(dev) if dev else None,
        },
    }
    rd.metrics_file.write_text(json.dumps(record, indent=2))
    plots_dir = rd.plots_dir
    plots_dir.mkdir(exist_ok=True)
    values = {(f"after {k}", j): rows[k][j]["score"] for k in names for j in names}
    values |= {("before", j): before[j]["score"] for j in names}
    title = f"{metric} on each stage's sets after each stage"
    plots.heatmap(plots_dir / "forgetting.png", ["before", *(f"after {k}" for k in names)], names, values, title)
    rd.report_file.write_text(report(run, stages, record["continual"]))
    share(rd.path)
    print(rd.report_file.read_text())
    return rd.path


def report(run: RunConfig, stages: list[Stage], record: dict[str, Any]) -> str:
    names = [s.name for s in stages]
    metric = record["metric"]
    header = "| after \\ scored on | " + " | ".join(names) + " |"
    lines = [
        f"# continual training · {' → '.join(names)}",
        "",
        f"Test {metric} (dev where a stage has no test set; mean over a stage's languages) of the model after each "
        "stage, on every stage's sets. Row `before`: the model before the first stage.",
        "",
        header,
        "|" + "---|" * (len(names) + 1),
        "| before | " + " | ".join(f"{record['before'][j]['score']:.4f}" for j in names) + " |",
    ]
    lines += [f"| {k} | " + " | ".join(f"{record['after'][k][j]['score']:.4f}" for j in names) + " |" for k in names]
    lines += ["", f"- average final {metric}: {record['average']:.4f}"]
    if "backward_transfer" in record:
        lines += [
            f"- backward transfer: {record['backward_transfer']:+.4f} (negative = forgetting)",
            f"- forward transfer: {record['forward_transfer']:+.4f}",
            "- forgetting: " + ", ".join(f"{k} {v:+.4f}" for k, v in record["forgetting"].items()),
        ]
    continual = run.trainer.continual
    strength = f" (strength {continual.strength:g})" if continual.regulariser != "none" else ""
    lines += [
        f"- replay: {continual.replay:g} of each earlier stage's training examples; regulariser: "
        f"{continual.regulariser}{strength}",
        "",
        "Stages (each an ordinary run: its own report.md, metrics.json and model/):",
        "",
    ]
    lines += [f"{s.index}. `stages/{s.folder}`" for s in stages]
    lines += ["", "![forgetting matrix](plots/forgetting.png)", ""]
    return "\n".join(lines)
