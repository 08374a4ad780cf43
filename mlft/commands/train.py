"""`mlft train`: data -> task -> model -> training loop -> final evaluation, report and model in the run directory."""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from mlft import search
from mlft.commands.prepare import Prepared, attach_features, prepare, techniques
from mlft.config import RunConfig
from mlft.data.readers import LOCATION
from mlft.destinations import share
from mlft.engine import checkpoint, tracking
from mlft.engine.continual import StageInputs
from mlft.engine.devices import is_main_process, log_on_main_process_only, make_accelerator, world_size
from mlft.engine.evaluate import EvalSet, evaluate_sets
from mlft.engine.loop import TrainingLoop, TrainState
from mlft.engine.machine import device_problems
from mlft.engine.selection import final_weights, restore, selection_langs, selection_score
from mlft.errors import ConfigError
from mlft.models.adapters import is_peft, merge
from mlft.models.bottleneck import save_adapter as save_bottleneck
from mlft.models.compact import expand, record
from mlft.models.lang_adapters import adapter_folder, attach
from mlft.report.tables import learning_curves, write_reports
from mlft.rundir import Languages, RunDir, data_changes, now, read_paths
from mlft.tasks import higher_is_better
from mlft.tasks.evaluate_metric import check_metric

log = logging.getLogger("mlft")


def train(
    run: RunConfig,
    run_dir: Path,
    overrides: list[str] | None = None,
    hydra_settings: dict[str, Any] | None = None,
    claimed: bool = False,
    unique_dir: bool = False,
    origin: Path | None = None,
    stage: StageInputs | None = None,
) -> Path:
    """Trains one run into `run_dir`; returns the run directory (see unique_dir).

    `origin`: the config folder the run was started from (`--config-path`), recorded in env.json.
    `stage`: what a stage of continual training adds (replayed examples, the penalty; mlft.commands.continual).

    `claimed` means a launching process already checked the directory and saved the config.
    `unique_dir` (a directory named by the clock, not by the user) takes `<run_dir>-2`, ... when
    another run got there first in the same second.
    """
    problems = device_problems(run.trainer.precision, run.trainer.cpu) + tracking.tracker_problems(run.tracker)
    if problems:
        raise ConfigError(problems)
    resuming = run.resume is not None
    fresh = not resuming and not claimed and is_main_process(run.trainer.cpu)
    rd = RunDir(run_dir)
    if fresh:
        rd = rd.claim(run.overwrite, unique_dir and world_size() == 1, read_paths(run))
        rd.save_config(run, overrides or [], hydra_settings or {})
    # trainer.tensorboard=false (an older spelling of tracker=none) turns the default tracker off.
    tracker = "none" if run.tracker == "tensorboard" and not run.trainer.tensorboard else run.tracker
    accelerator = make_accelerator(run.trainer, tracker, rd.path)
    log_on_main_process_only(accelerator)
    with logged_to(rd.log_file if accelerator.is_main_process else None):
        return run_training(run, rd, accelerator, tracker, fresh, resuming, origin, stage)


@contextmanager
def logged_to(path: Path | None) -> Iterator[None]:
    """mlft's log lines also go to `path` (the run's train.log, appended to on resume), as Hydra jobs keep theirs."""
    if path is None:
        yield
        return
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("[%(asctime)s] %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    log.addHandler(handler)
    try:
        yield
    finally:
        log.removeHandler(handler)
        handler.close()


def run_training(
    run: RunConfig,
    rd: RunDir,
    accelerator: Any,
    tracker: str,
    fresh: bool,
    resuming: bool,
    origin: Path | None,
    stage: StageInputs | None,
) -> Path:
    """The run after its directory is claimed: prepare, train, finish (see `train`)."""
    log.info("run directory: %s", rd.path)
    try:
        prepared = prepare(run, accelerator, stage.replay if stage else None)
        loop, select_langs, resume_from = set_up(run, rd, prepared, accelerator, resuming, stage)
        if tracker != "none":  # a tracker that cannot start (server, credentials) stops the run before training
            tracking.start(accelerator, tracker, rd.path, dataclasses.asdict(run))
    except BaseException:
        # Nothing was trained: leave the directory as it was, so the same command works once the input is fixed
        # (also after a bug, Ctrl-C or a damaged checkpoint to resume from: a half-made directory would only block
        # the next command, and a resumed run's records would tell of a session that never trained).
        tracking.safely("closing the tracker's run", accelerator.end_training)
        if fresh:
            rd.release()
        raise
    task, model = prepared.task, prepared.model
    if accelerator.is_main_process:
        record_inputs(rd, run, prepared, accelerator, resuming, origin)
    if (run.trainer.eval_before or task.evaluate_before) and resume_from is None:
        loop.state.before = evaluate_before(run, prepared, accelerator)
    state = loop.run()
    metrics = finish(run, rd, prepared, accelerator, model, state, select_langs)
    if tracker != "none":
        step = state.global_step
        tracking.safely("logging the final metrics", lambda: tracking.log_final(accelerator, metrics, step))
        files = [rd.report_file, rd.metrics_file, rd.config_file]
        tracking.safely("uploading the report", lambda: tracking.log_report(accelerator, tracker, files))
    tracking.safely("closing the tracker's run", accelerator.end_training)
    return rd.path


def set_up(
    run: RunConfig, rd: RunDir, prepared: Prepared, accelerator: Any, resuming: bool, stage: StageInputs | None
) -> tuple[TrainingLoop, list[str], Path | None]:
    """The training loop ready for its first step (on resume: the newest checkpoint loaded), the languages whose dev
    sets select checkpoints, and the checkpoint resumed from."""
    loaded, task, model = prepared.loaded, prepared.task, prepared.model
    dev_langs = [s.lang for s in prepared.eval_sets if s.split == "dev"]
    select_langs = selection_langs(run.trainer.select, loaded.train_langs, dev_langs)
    if loaded.labels:
        log.info("labels (%d): %s", len(loaded.labels), ", ".join(loaded.labels[:20]))
    pad_id = prepared.tokenizer.pad_token_id
    dev_sets = [s for s in prepared.eval_sets if s.split == "dev"]
    if run.task.evaluate:
        check_metric(task, (dev_sets or prepared.eval_sets)[0].examples if prepared.eval_sets else [], run.task.metric)

    def evaluate_dev() -> tuple[float | None, dict[str, float]]:
        metrics, _ = evaluate_sets(accelerator, model, task, pad_id, dev_sets, run.trainer.eval_batch_size)
        dev = metrics.get("dev", {})
        flat = {f"{lang}/{k}": v for lang, m in dev.items() for k, v in m.items() if isinstance(v, float)}
        score = selection_score(dev, run.task.metric, select_langs)
        if score is not None:
            per_lang = ", ".join(f"{lang}: {m[run.task.metric]:.4f}" for lang, m in dev.items())
            log.info("dev %s = %.4f (%s)", run.task.metric, score, per_lang)
        return score, flat

    if resuming:
        checkpoint.recover(rd.checkpoints / checkpoint.BEST)
    if prepared.vocab is not None:
        record(rd.checkpoints, prepared.vocab, resuming, accelerator.is_main_process)
    resume_from = checkpoint.latest(rd.checkpoints) if resuming else None
    if resuming and resume_from is None:
        log.warning("no complete checkpoint in %s: training starts from the beginning", rd.checkpoints)
    optim = replace(run.optimizer, lr=run.peft.lr) if run.peft.method != "none" and run.peft.lr else run.optimizer
    hooks = attach_features(run, prepared, accelerator, stage.anchor if stage else None)
    trial = search.trial_from_env() if stage is None else None
    if trial is not None:  # a search launched this run: it reports each dev score, and may be pruned
        search.attach_trial(hooks, trial, accelerator.is_main_process)
    loop = TrainingLoop(
        accelerator,
        model,
        prepared.train_features,
        lambda f: task.collate(f, pad_id, training=True),
        run.trainer,
        optim,
        run.seed,
        rd.checkpoints,
        evaluate_dev if dev_sets else lambda: (None, {}),
        higher_is_better(run.task),
        prepared.feature_langs,
        hooks,
    )
    loop.setup(resume_from)
    return loop, select_langs, resume_from


def evaluate_before(run: RunConfig, prepared: Prepared, accelerator: Any) -> dict[str, Any]:
    """The untrained model's metrics on every dev and test set."""
    task = prepared.task
    before, _ = evaluate_sets(
        accelerator,
        prepared.model,
        task,
        prepared.tokenizer.pad_token_id,
        prepared.eval_sets,
        run.trainer.eval_batch_size,
    )
    for split, by_lang in before.items():
        scores = ", ".join(f"{lang}: {m[run.task.metric]:.4f}" for lang, m in by_lang.items())
        log.info("before training: %s %s = %s", split, run.task.metric, scores)
    return before


def record_inputs(
    rd: RunDir, run: RunConfig, prepared: Prepared, accelerator: Any, resuming: bool, origin: Path | None
) -> None:
    """env.json and languages.json, once (a run resumed before its first checkpoint may still lack them); a resumed
    run, or one started from another run's saved config, records where it came from and whether its data files
    still are the ones that run trained on."""
    sources = prepared.loaded.sources
    if resuming and rd.env_file.is_file():
        changes = data_changes(rd.env().get("data", {}), sources, prepared.loaded.contents)
        warn_changes(changes, f"{rd.path} started")
        rd.add_env("resumed", {"at": now(), "changed_data": changes}, append=True)
    else:
        devices = {
            "device": str(accelerator.device),
            "processes": accelerator.num_processes,
            "precision": run.trainer.precision,
            "cuda_visible": os.environ.get("CUDA_VISIBLE_DEVICES"),
        }
        model_info = {
            "name_or_path": run.model.name_or_path,
            "revision": run.model.revision,
            "parameters": sum(p.numel() for p in prepared.model.parameters()),
            "trainable_parameters": sum(p.numel() for p in prepared.model.parameters() if p.requires_grad),
        }
        rd.write_env(devices, run.seed, sources, model_info, prepared.loaded.contents)
        if origin is not None:
            earlier = RunDir(origin.parent)  # <run>/.hydra: the run whose config this is
            changes = data_changes(earlier.env().get("data", {}), sources, prepared.loaded.contents)
            warn_changes(changes, f"{earlier.path} trained")
            from_run = str(earlier.path) if earlier.env_file.is_file() else None
            rd.add_env("origin", {"config": str(origin), "run": from_run, "changed_data": changes})
    if not rd.languages_file.is_file():
        rd.write_languages(Languages(prepared.loaded.train_langs, prepared.loaded.eval_langs))


def finish(
    run: RunConfig,
    rd: RunDir,
    prepared: Prepared,
    accelerator: Any,
    model: Any,
    state: TrainState,
    select_langs: list[str],
) -> dict[str, Any]:
    """The chosen weights evaluated on every dev and test set, saved as model/ with predictions and reports;
    returns the metrics (split -> lang -> metrics)."""
    task, tokenizer = prepared.task, prepared.tokenizer
    chosen = final_weights(run.trainer.select, rd.checkpoints, run.trainer.average_last, state.best_step)
    unwrapped = accelerator.unwrap_model(model)
    restore(unwrapped, chosen)
    adapter = is_peft(unwrapped)
    scored = model
    if adapter:
        if accelerator.is_main_process:
            unwrapped.save_pretrained(rd.adapter_dir)  # language adapters too, in adapter/lang_<code>/
        # Evaluated after merging, so the reported metrics are those of the saved model/ (with the language
        # adapters put back on top, on a copy: model/ itself stays plain).
        unwrapped = merge(unwrapped)
        if run.peft.lang_adapters:
            folders = {lang: adapter_folder(path) for lang, path in run.peft.lang_adapters.items()}
            scored = attach(copy.deepcopy(unwrapped), folders)
    metrics, predictions = evaluate_sets(
        accelerator,
        scored,
        task,
        tokenizer.pad_token_id,
        prepared.eval_sets,
        run.trainer.eval_batch_size,
        run.trainer.progress,
    )
    if not accelerator.is_main_process:
        return metrics
    if prepared.vocab is not None:
        expand(unwrapped, prepared.vocab)
        unwrapped.save_pretrained(rd.model_dir)
    elif chosen.source == "best" and not adapter:
        # The final model is the best checkpoint byte for byte: link it rather than store it twice.
        checkpoint.link_or_copy(chosen.dirs[0], rd.model_dir)
    else:
        unwrapped.save_pretrained(rd.model_dir)
    tokenizer.save_pretrained(rd.model_dir)
    share(rd.model_dir)
    if run.peft.method == "bottleneck":
        save_bottleneck(unwrapped, rd.adapter_dir)
    if adapter or run.peft.method == "bottleneck":
        share(rd.adapter_dir)
    write_predictions(rd, prepared.eval_sets, predictions)
    extra = summary(run, prepared, state, chosen.steps, select_langs)
    # The final weights' dev score: what a sweep ranks runs by (the best step's score may be of other weights).
    extra["selection"]["final_score"] = selection_score(metrics.get("dev", {}), run.task.metric, select_langs)
    title = f"{run.task.name} · {run.lang.name} · {rd.path.name}"
    if run.trainer.select == "target_dev":
        title += " · ORACLE selection on target-language dev"
    columns = tuple(task.metrics)
    train_langs = prepared.loaded.train_langs
    learning_curves(rd.path, state.losses, state.history, run.task.metric, title)
    table = write_reports(rd.path, metrics, columns, extra, title, train_langs, run.task.metric, state.before)
    print(table)
    return metrics


def warn_changes(changes: list[dict[str, str]], when: str) -> None:
    for c in changes:
        log.warning(
            "data %s: %s is not the file it was when %s (fingerprint %s, now %s): results will differ",
            c["key"], c["source"], when, c["was"], c["now"],
        )  # fmt: skip


# What an example holds besides its gold fields.
EXAMPLE_META = (*LOCATION, "lang")


def write_predictions(
    rd: RunDir, sets: list[EvalSet], predictions: dict[tuple[str, str], list[dict[str, Any]]]
) -> None:
    rd.predictions_dir.mkdir(exist_ok=True)
    for s in sets:
        with (rd.predictions_dir / f"{s.split}-{s.lang}.jsonl").open("w") as f:
            for ex, pred in zip(s.examples, predictions[(s.split, s.lang)]):
                gold = {k: v for k, v in ex.items() if k not in EXAMPLE_META}
                f.write(json.dumps({"loc": ex["loc"], **gold, "prediction": pred}, ensure_ascii=False) + "\n")


def summary(
    run: RunConfig, prepared: Prepared, state: TrainState, steps: list[int | None], select_langs: list[str]
) -> dict[str, Any]:
    """What metrics.json records besides the metrics: selection, history, timings, language mix."""
    seconds = state.train_seconds
    extra: dict[str, Any] = {
        "selection": {
            "metric": run.task.metric,
            "strategy": run.trainer.select,
            "oracle": run.trainer.select == "target_dev",
            "dev_langs": select_langs,
            "best_step": state.best_step,
            "best_score": state.best_score,
            "steps": steps,
        },
        "history": state.history,
        "losses": state.losses,
        "preprocessing": prepared.timings,
        "throughput": {
            "train_seconds": round(seconds, 3),
            "train_samples": state.train_samples,
            "train_tokens": state.train_tokens,
            "samples_per_second": round(state.train_samples / seconds, 3) if seconds else None,
            "tokens_per_second": round(state.train_tokens / seconds, 1) if seconds else None,
        },
    }
    if state.lang_mix:
        sampling = run.trainer.lang_sampling
        extra["lang_sampling"] = {
            "temperature": sampling.temperature,
            "mixing": sampling.mixing,
            "realised_mix": state.lang_mix,
        }
    if prepared.loaded.dropped:
        extra["label_map_dropped"] = prepared.loaded.dropped
    if prepared.augmented:
        extra["augmentation"] = {"added": prepared.augmented, "total": sum(prepared.augmented.values())}
    weights = prepared.class_weights
    if run.task.label_smoothing or weights is not None:
        by_label = dict(zip(prepared.loaded.labels, weights)) if weights is not None else None
        extra["loss"] = {"label_smoothing": run.task.label_smoothing, "class_weights": by_label}
    if prepared.pruning is not None:
        extra["pruning"] = prepared.pruning
    if state.inexact_resumes:
        extra["inexact_resumes"] = state.inexact_resumes
    if state.stopped_early is not None and state.stopped_early.get("pruned"):
        extra["search"] = {"pruned": state.stopped_early}
    used = techniques(run)
    if "early_stopping" in used:
        used["early_stopping"]["stopped"] = state.stopped_early  # None: training ran to its end
    if used:
        extra["techniques"] = used
    if state.before:
        extra["before"] = state.before
    return extra
