"""`mlft train`: data -> task -> model -> training loop -> final evaluation, report and model in the run directory."""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from accelerate.utils import set_seed
from omegaconf import DictConfig
from safetensors.torch import load_file

from mlft import rundir
from mlft.config import RunConfig, validate
from mlft.data.feature_cache import Encoder, feature_cache_dir
from mlft.data.load import LoadedData, load_data
from mlft.destinations import share
from mlft.engine import checkpoint
from mlft.engine.distill import Distiller
from mlft.engine.loop import device_problems, is_main_process, make_accelerator, train_loop, use_cpu, world_size
from mlft.errors import ConfigError
from mlft.models.adapters import add_adapter, is_peft, load_adapter_weights, merge, trainable_summary
from mlft.models.compact import CompactVocab, compact, expand, kept_ids, record, remap
from mlft.models.compact import supports as compact_supported
from mlft.models.depth import keep_layers
from mlft.models.freeze import freeze
from mlft.models.load import check_max_length, load_model, load_tokenizer
from mlft.models.teacher import load_teacher
from mlft.report.tables import write_reports
from mlft.scoring import EvalSet, encode_sets, evaluate_sets, selection_langs, selection_score
from mlft.tasks import Task, build_task

log = logging.getLogger("mlft")


def write_predictions(
    run_dir: Path, sets: list[Any], predictions: dict[tuple[str, str], list[dict[str, Any]]]
) -> None:
    out_dir = run_dir / "predictions"
    out_dir.mkdir(exist_ok=True)
    for s in sets:
        with (out_dir / f"{s.split}-{s.lang}.jsonl").open("w") as f:
            for ex, pred in zip(s.examples, predictions[(s.split, s.lang)]):
                gold = {k: ex[k] for k in ("tokens", "tags", "text", "text_pair", "label") if k in ex}
                f.write(json.dumps({"loc": ex["loc"], **gold, "prediction": pred}, ensure_ascii=False) + "\n")


@dataclass
class Chosen:
    """Where the run's final weights come from (by `trainer.select`)."""

    source: Literal["last", "best", "average"]
    dirs: list[Path]
    """The checkpoint folder(s) to read: best/, or the step checkpoints to average."""
    steps: list[int | None]
    """The step(s) the final weights come from."""


def final_weights(select: str, checkpoints: Path, average_last: int, best_step: int | None) -> Chosen:
    """The final model of the run by `trainer.select` (best by dev score, last, or an average)."""
    if select == "last":
        return Chosen("last", [], [None])
    if select == "average":
        dirs = checkpoint.step_dirs(checkpoints)[-average_last:]
        return Chosen("average", dirs, [int(d.name.split("-")[1]) for d in dirs])
    # The best checkpoint by the selection score (the last weights when nothing was evaluated).
    return Chosen("best", [checkpoints / checkpoint.BEST], [best_step])


def restore(model: Any, chosen: Chosen) -> None:
    """Loads the chosen weights into `model` (the unwrapped model; a PeftModel's best/ holds only its adapter)."""
    if chosen.source == "average":
        model.load_state_dict(checkpoint.average_weights(chosen.dirs))
    elif chosen.source == "best" and is_peft(model):
        load_adapter_weights(model, chosen.dirs[0])
    elif chosen.source == "best":
        model.load_state_dict(load_file(chosen.dirs[0] / checkpoint.MODEL_FILE))


@dataclass
class Prepared:
    """Everything a run trains and evaluates, built before the first step."""

    loaded: LoadedData
    task: Task
    tokenizer: Any
    model: Any
    train_features: list[dict[str, Any]]
    feature_langs: list[str]
    """The language of each training feature."""
    eval_sets: list[EvalSet]
    vocab: CompactVocab | None
    """The full embedding matrix while the model trains a compact one (model.compact_embeddings)."""
    distiller: Distiller | None
    """The teacher's soft targets mixed into the loss (distill.teacher), or None."""
    timings: dict[str, Any]
    """Seconds spent reading the data and tokenizing it, and how many encoded sets came from the cache."""


def prepare(run: RunConfig, accelerator: Any) -> Prepared:
    check_max_length(run.model.name_or_path, run.model.revision, run.model.trust_remote_code, run.model.max_length)
    start = time.perf_counter()
    with accelerator.main_process_first():
        loaded = load_data(run.data, run.task, run.lang.train, run.lang.eval)
    load_seconds = time.perf_counter() - start
    task = build_task(run.task, run.model, loaded.labels)
    if run.trainer.precision != "no" and not use_cpu(run.trainer.cpu):
        task.pad_to_multiple_of = 8
    tokenizer = load_tokenizer(run.model.name_or_path, run.model.revision, run.model.trust_remote_code)
    set_seed(run.seed)  # the new head's initialisation is part of the run's result
    model = load_model(
        task.model_class,
        run.model.name_or_path,
        loaded.labels,
        task.problem_type,
        tokenizer,
        run.model.revision,
        run.model.trust_remote_code,
    )
    if run.model.num_layers is not None:
        kept = keep_layers(model, run.model.num_layers)
        if accelerator.is_main_process:
            log.info("layers: kept %d (%s of the pretrained stack)", len(kept), ", ".join(map(str, kept)))
    freeze(model, run.model.freeze_embeddings, run.model.freeze_layers)
    start = time.perf_counter()
    encode = Encoder(task, tokenizer, feature_cache_dir() if run.data.cache else None)
    train_features, feature_langs = [], []
    for lang, exs in loaded.splits["train"].items():
        features = encode(exs, lang)
        train_features += features
        feature_langs += [lang] * len(features)
    eval_sets = encode_sets(encode, loaded.splits)
    timings: dict[str, Any] = {
        "load_data_seconds": round(load_seconds, 2),
        "encode_seconds": round(time.perf_counter() - start, 2),
        "encoded_sets": encode.calls,
        "sets_from_cache": encode.hits,
    }
    if accelerator.is_main_process:
        cached = f" ({encode.hits} of {encode.calls} sets from the feature cache)" if encode.hits else ""
        log.info("data: read in %.1f s, tokenized in %.1f s%s", load_seconds, timings["encode_seconds"], cached)
    vocab = None
    if run.model.compact_embeddings and run.peft.method == "none" and compact_supported(model):
        fed = [f["input_ids"] for f in train_features] + [f["input_ids"] for s in eval_sets for f in s.features]
        vocab = compact(model, kept_ids(tokenizer, fed))
        new_id = vocab.new_ids()
        remap(train_features, new_id)
        for eval_set in eval_sets:
            remap(eval_set.features, new_id)
        if accelerator.is_main_process:
            log.info(
                "embeddings: %d of %d rows are used by the run's data and trained", len(vocab.old_ids), len(vocab.full)
            )
    distiller = None
    if run.distill.teacher is not None:
        teacher = load_teacher(run.distill.teacher, run.task.type, loaded.labels, tokenizer, vocab)
        distiller = Distiller(teacher, run.distill.alpha, run.distill.temperature, run.task.multi_label)
        if accelerator.is_main_process:
            log.info(
                "distillation: teacher %s (alpha %g, temperature %g)",
                run.distill.teacher,
                run.distill.alpha,
                run.distill.temperature,
            )
    if run.peft.method != "none":
        model = add_adapter(model, run.peft, run.task.type)
    if accelerator.is_main_process:
        log.info("%s", trainable_summary(model))
    return Prepared(
        loaded, task, tokenizer, model, train_features, feature_langs, eval_sets, vocab, distiller, timings
    )


def train(
    cfg: DictConfig,
    run_dir: Path,
    overrides: list[str] | None = None,
    hydra_settings: dict[str, Any] | None = None,
    claimed: bool = False,
    unique_dir: bool = False,
) -> dict:
    """Trains one run into `run_dir`; returns the final metrics (split -> lang -> metrics).

    `claimed` means a launching process already checked the directory and saved the config.
    `unique_dir` (a directory named by the clock, not by the user) takes `<run_dir>-2`, ... when
    another run got there first in the same second.
    """
    run: RunConfig = validate(cfg)
    if device_problems(run.trainer):
        raise ConfigError(device_problems(run.trainer))
    resuming = run.resume is not None
    fresh = not resuming and not claimed and is_main_process(run.trainer.cpu)
    if fresh:
        run_dir = rundir.claim(run_dir, run.overwrite, unique=unique_dir and world_size() == 1)
        rundir.save_config(run_dir, cfg, overrides or [], hydra_settings or {})
    accelerator = make_accelerator(run.trainer, run_dir)
    if accelerator.is_main_process:
        log.info("run directory: %s", run_dir)
    try:
        prepared = prepare(run, accelerator)
        dev_langs = [s.lang for s in prepared.eval_sets if s.split == "dev"]
        select_langs = selection_langs(run.trainer.select, prepared.loaded.train_langs, dev_langs)
    except BaseException:
        # Nothing was trained: leave the directory as it was, so the same command works once the input is fixed
        # (also after a bug or Ctrl-C: a half-made directory would only block the next command).
        accelerator.end_training()
        if fresh:
            rundir.release(run_dir)
        raise
    loaded, task, tokenizer, model = prepared.loaded, prepared.task, prepared.tokenizer, prepared.model
    train_features, eval_sets = prepared.train_features, prepared.eval_sets
    dev_sets = [s for s in eval_sets if s.split == "dev"]
    # A resumed run that was stopped before its first checkpoint may not have written env.json yet.
    if accelerator.is_main_process and not (resuming and (run_dir / "env.json").is_file()):
        devices = {
            "device": str(accelerator.device),
            "processes": accelerator.num_processes,
            "precision": run.trainer.precision,
            "cuda_visible": os.environ.get("CUDA_VISIBLE_DEVICES"),
        }
        model_info = {
            "name_or_path": run.model.name_or_path,
            "revision": run.model.revision,
            "parameters": sum(p.numel() for p in model.parameters()),
        }
        rundir.write_env(run_dir, devices, run.seed, loaded.sources, model_info)
    if accelerator.is_main_process:
        log.info("labels (%d): %s", len(loaded.labels), ", ".join(loaded.labels[:20]))

    pad_id = tokenizer.pad_token_id
    train_langs = loaded.train_langs

    def evaluate_dev() -> tuple[float | None, dict[str, float]]:
        metrics, _ = evaluate_sets(accelerator, model, task, pad_id, dev_sets, run.trainer.eval_batch_size)
        dev = metrics.get("dev", {})
        flat = {f"{lang}/{k}": v for lang, m in dev.items() for k, v in m.items() if isinstance(v, float)}
        score = selection_score(dev, run.task.metric, select_langs)
        if accelerator.is_main_process and score is not None:
            log.info(
                "dev %s = %.4f (%s)",
                run.task.metric,
                score,
                ", ".join(f"{lang}: {m[run.task.metric]:.4f}" for lang, m in dev.items()),
            )
        return score, flat

    checkpoints = run_dir / "checkpoints"
    if resuming:
        checkpoint.recover(checkpoints / checkpoint.BEST)
    if prepared.vocab is not None:
        record(checkpoints, prepared.vocab, resuming, accelerator.is_main_process)
    resume_from = checkpoint.latest(checkpoints) if resuming else None
    if resuming and resume_from is None:
        log.warning("no complete checkpoint in %s: training starts from the beginning", checkpoints)
    state = train_loop(
        accelerator,
        model,
        train_features,
        lambda f: task.collate(f, pad_id),
        run.trainer,
        replace(run.optimizer, lr=run.peft.lr) if run.peft.method != "none" and run.peft.lr else run.optimizer,
        run.seed,
        checkpoints,
        evaluate_dev if dev_sets else lambda: (None, {}),
        resume_from,
        prepared.feature_langs,
        prepared.distiller,
    )

    chosen = final_weights(run.trainer.select, checkpoints, run.trainer.average_last, state.best_step)
    unwrapped = accelerator.unwrap_model(model)
    restore(unwrapped, chosen)
    adapter = is_peft(unwrapped)
    if adapter:
        if accelerator.is_main_process:
            unwrapped.save_pretrained(run_dir / "adapter")
        # Evaluated after merging, so the reported metrics are those of the saved model/.
        unwrapped = merge(unwrapped)
    metrics, predictions = evaluate_sets(
        accelerator, model, task, pad_id, eval_sets, run.trainer.eval_batch_size, run.trainer.progress
    )
    if accelerator.is_main_process:
        if prepared.vocab is not None:
            expand(unwrapped, prepared.vocab)
            unwrapped.save_pretrained(run_dir / "model")
        elif chosen.source == "best" and not adapter:
            # The final model is the best checkpoint byte for byte: link it rather than store it twice.
            checkpoint.link_or_copy(chosen.dirs[0], run_dir / "model")
        else:
            unwrapped.save_pretrained(run_dir / "model")
        tokenizer.save_pretrained(run_dir / "model")
        share(run_dir / "model")
        if adapter:
            share(run_dir / "adapter")
        write_predictions(run_dir, eval_sets, predictions)
        extra = {
            "selection": {
                "metric": run.task.metric,
                "strategy": run.trainer.select,
                "oracle": run.trainer.select == "target_dev",
                "dev_langs": select_langs,
                "best_step": state.best_step,
                "best_score": state.best_score,
                "steps": chosen.steps,
            },
            "history": state.history,
            "preprocessing": prepared.timings,
            "throughput": {
                "train_seconds": round(state.train_seconds, 3),
                "train_samples": state.train_samples,
                "train_tokens": state.train_tokens,
                "samples_per_second": round(state.train_samples / state.train_seconds, 3)
                if state.train_seconds
                else None,
                "tokens_per_second": round(state.train_tokens / state.train_seconds, 1)
                if state.train_seconds
                else None,
            },
        }
        if state.lang_mix:
            extra["lang_sampling"] = {
                "temperature": run.trainer.lang_sampling.temperature,
                "mixing": run.trainer.lang_sampling.mixing,
                "realised_mix": state.lang_mix,
            }
        if loaded.dropped:
            extra["label_map_dropped"] = loaded.dropped
        if state.inexact_resumes:
            extra["inexact_resumes"] = state.inexact_resumes
        title = f"{run.task.name} · {run.lang.name} · {run_dir.name}"
        if run.trainer.select == "target_dev":
            title += " · ORACLE selection on target-language dev"
        table = write_reports(run_dir, metrics, run.task.type, extra, title, train_langs, run.task.metric)
        print(table)
    accelerator.end_training()
    return metrics
