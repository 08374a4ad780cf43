"""The one training/evaluation loop, on Accelerate. This is the only module that touches Accelerator.

The same code runs on CPU, one GPU, several GPUs or nodes (`accelerate launch`). The data order of
every epoch is a function of (seed, epoch) only, so a resumed run replays it exactly.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator, PartialState
from accelerate.data_loader import prepare_data_loader
from accelerate.state import AcceleratorState
from accelerate.utils import broadcast_object_list, parse_flag_from_env, set_seed
from torch.utils.data import DataLoader, Sampler
from tqdm.auto import tqdm

from mlft.config import OptimizerConfig, TrainerConfig
from mlft.engine import checkpoint
from mlft.engine.adversarial import EmbeddingPerturbation
from mlft.engine.distill import Distiller
from mlft.engine.optim import build_optimizer, build_scheduler
from mlft.engine.sampling import EpochSampler, LanguageSampler
from mlft.errors import DivergedError, RunDirError, StorageError

log = logging.getLogger("mlft")

# Evaluates the model; returns (selection score, metrics to log). Called on every process.
EvalFn = Callable[[], tuple[float | None, dict[str, float]]]


class IndexedFeatures(torch.utils.data.Dataset):
    def __init__(self, features: list[dict[str, Any]]):
        self.features = features

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {**self.features[index], "index": index}


def use_cpu(forced: bool) -> bool:
    """CPU when asked, when launched with `accelerate launch --cpu`, or when there is no GPU."""
    return forced or parse_flag_from_env("ACCELERATE_USE_CPU") or not torch.cuda.is_available()


def device_problems(trainer: TrainerConfig) -> list[str]:
    """What this machine cannot run of the trainer's settings (checked before a run directory is made)."""
    if trainer.precision == "fp16" and use_cpu(trainer.cpu):
        return ["trainer.precision: fp16 needs a CUDA GPU and none is used here; use bf16 or no"]
    return []


def world_size() -> int:
    """Processes of the launch this process belongs to (1 without a launcher)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process(cpu: bool) -> bool:
    return world_size() <= 1 or PartialState(cpu=use_cpu(cpu)).is_main_process


def shared_run_dir(own: Path, cpu: bool) -> Path:
    """Under a multi-process launch every rank composed its own timestamped directory: all adopt rank 0's."""
    if world_size() <= 1:
        return own
    state = PartialState(cpu=use_cpu(cpu))
    chosen = Path(broadcast_object_list([str(own)], from_process=0)[0])
    if not state.is_main_process and chosen != own and own.is_dir() and not any(own.iterdir()):
        own.rmdir()
    return chosen


def make_accelerator(trainer: TrainerConfig, run_dir: Path | None) -> Accelerator:
    """An Accelerator for the run; with a run directory, TensorBoard curves go to <run>/tensorboard/."""
    log_with = "tensorboard" if trainer.tensorboard and run_dir is not None else None
    # One process may run several jobs (a Hydra sweep, tests) with different precisions; the
    # process group (PartialState) is kept, the per-run Accelerator settings are not.
    AcceleratorState._reset_state(reset_partial_state=False)
    accelerator = Accelerator(
        cpu=use_cpu(trainer.cpu),
        mixed_precision=trainer.precision,
        gradient_accumulation_steps=trainer.grad_accum,
        log_with=log_with,
        project_dir=str(run_dir) if run_dir is not None else None,
    )
    if log_with:
        accelerator.init_trackers("tensorboard")
    return accelerator


def _collate_with_index(collate: Callable[[list[dict]], dict[str, torch.Tensor]]) -> Callable:
    def wrapped(items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = collate(items)
        batch["index"] = torch.tensor([item["index"] for item in items])
        return batch

    return wrapped


def show_progress(accelerator: Accelerator, enabled: bool) -> bool:
    return enabled and accelerator.is_local_main_process and sys.stderr.isatty()


def predict_features(
    accelerator: Accelerator,
    model: torch.nn.Module,
    features: list[dict[str, Any]],
    collate: Callable[[list[dict]], dict[str, torch.Tensor]],
    outputs: Callable[[torch.Tensor], dict[str, torch.Tensor]],
    batch_size: int,
    progress: bool = False,
    desc: str = "eval",
) -> list[dict[str, Any]]:
    """Runs the model over features on all processes; returns per-feature outputs, in order, everywhere.

    Batches are gathered with `gather_for_metrics`, which drops the samples that the last uneven
    batch duplicated, so the result equals a single-process run.
    """
    if not features:
        return []
    # Similar lengths together: less padding. The order is restored from the gathered indices.
    order = sorted(range(len(features)), key=lambda i: len(features[i]["input_ids"]))
    loader = DataLoader(
        torch.utils.data.Subset(IndexedFeatures(features), order),
        batch_size=batch_size,
        shuffle=False,
        collate_fn=_collate_with_index(collate),
        generator=torch.Generator(),  # see train_loop: loaders must not draw from the global RNG
    )
    # Not accelerator.prepare: that would register the loader in the checkpointed state, and
    # evaluation loaders must not change what a checkpoint holds.
    loader = prepare_data_loader(
        loader, accelerator.device, accelerator.num_processes, accelerator.process_index, put_on_device=True
    )
    results: list[dict[str, Any] | None] = [None] * len(features)
    model.eval()
    with torch.inference_mode():
        for batch in tqdm(loader, desc=desc, disable=not show_progress(accelerator, progress), leave=False):
            index = batch.pop("index")
            batch.pop("labels", None)
            with accelerator.autocast():
                logits = model(**batch).logits
            outs = outputs(logits)
            if logits.dim() == 3:  # token outputs: equal widths before gathering across processes
                outs = {k: accelerator.pad_across_processes(v, dim=1, pad_index=0) for k, v in outs.items()}
            gathered_index, gathered = accelerator.gather_for_metrics((index, outs))
            for row, i in enumerate(gathered_index.tolist()):
                results[i] = {k: v[row].cpu() for k, v in gathered.items()}
    assert all(r is not None for r in results)
    return results  # type: ignore[return-value]


@dataclass
class TrainState:
    global_step: int = 0
    epoch: int = 0
    batches_done: int = 0
    """Batches of the current epoch already consumed (for resuming mid-epoch)."""
    best_score: float | None = None
    best_step: int | None = None
    bad_evals: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    lang_mix: list[dict[str, int]] = field(default_factory=list)
    """Training examples per language in each epoch (with language sampling)."""
    train_seconds: float = 0.0
    """Time spent in training steps (evaluation and checkpointing excluded), over all sessions of the run."""
    train_samples: int = 0
    train_tokens: int = 0
    """Non-padding tokens trained on (this process)."""
    inexact_resumes: list[int] = field(default_factory=list)
    """Steps at which the run was resumed without a checkpoint's RNG state (trainer.resume_inexact)."""


def make_sampler(
    features: list[dict[str, Any]], langs: list[str] | None, trainer: TrainerConfig, seed: int
) -> Sampler:
    lengths = [len(f["input_ids"]) for f in features] if trainer.group_by_length else None
    temperature = trainer.lang_sampling.temperature
    if temperature is None or langs is None or len(set(langs)) < 2:
        return EpochSampler(len(features), seed, lengths, trainer.batch_size)
    return LanguageSampler(langs, seed, temperature, trainer.lang_sampling.mixing, trainer.batch_size, lengths)


def check_resumable(accelerator: Accelerator, directory: Path, allow_inexact: bool) -> bool:
    """Refuses a checkpoint that cannot reproduce the uninterrupted run (every process decides together);
    returns True when it is resumed anyway without some process's RNG state (trainer.resume_inexact)."""
    fatal, inexact = checkpoint.resume_problems(directory, accelerator.process_index)
    blocked = fatal + ([] if allow_inexact else inexact)
    flags = torch.tensor([float(bool(blocked)), float(bool(inexact))], device=accelerator.device)
    any_blocked, any_inexact = (bool(v > 0) for v in accelerator.reduce(flags, "sum").tolist())
    if any_blocked:
        hint = f"delete {directory} to resume from the checkpoint before it" + (
            "" if fatal else ", or pass trainer.resume_inexact=true to continue anyway (metrics.json records it)"
        )
        raise RunDirError((blocked or ["another process's part of the checkpoint is incomplete"]) + [hint])
    if any_inexact:
        log.warning(
            "resuming from %s WITHOUT its RNG state (%s): the run will not equal an uninterrupted one; "
            "metrics.json records this (inexact_resumes)",
            directory,
            "; ".join(inexact) or "another process",
        )
    return any_inexact


def _improved(score: float | None, best: float | None) -> bool:
    return score is not None and (best is None or score > best)


def train_loop(
    accelerator: Accelerator,
    model: torch.nn.Module,
    features: list[dict[str, Any]],
    collate: Callable[[list[dict]], dict[str, torch.Tensor]],
    trainer: TrainerConfig,
    optim: OptimizerConfig,
    seed: int,
    checkpoints: Path,
    evaluate: EvalFn,
    resume_from: Path | None = None,
    langs: list[str] | None = None,
    distiller: Distiller | None = None,
) -> TrainState:
    """Trains `model` in place; the best weights (by `evaluate`) are saved to checkpoints/best.

    `langs` (one per feature) turns on temperature sampling of languages when the trainer asks for it;
    a `distiller` mixes a teacher's soft targets into the loss.
    """
    set_seed(seed)
    sampler = make_sampler(features, langs, trainer, seed)
    # Every DataLoader iterator draws a seed from its generator; with the global one, an evaluation or
    # a resumed epoch would shift the dropout RNG and a resumed run would no longer match.
    loader = DataLoader(
        IndexedFeatures(features),
        batch_size=trainer.batch_size,
        sampler=sampler,
        collate_fn=_collate_with_index(collate),
        generator=torch.Generator().manual_seed(seed),
    )
    optimizer = build_optimizer(model, optim)
    perturbation = EmbeddingPerturbation(model, trainer.adv_epsilon) if trainer.adversarial == "fgm" else None
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    if distiller is not None:  # only run forward: not wrapped for data parallelism
        distiller.teacher.to(accelerator.device)

    def training_loss(batch: dict[str, torch.Tensor], teacher_logits: torch.Tensor | None) -> torch.Tensor:
        outputs = model(**batch)
        if distiller is None or teacher_logits is None:
            return outputs.loss
        return distiller.loss(outputs.logits, outputs.loss, batch["labels"], teacher_logits)

    steps_per_epoch = math.ceil(len(loader) / trainer.grad_accum)
    total = steps_per_epoch * trainer.epochs
    if trainer.max_steps is not None:
        total = min(total, trainer.max_steps)
    scheduler = build_scheduler(optimizer, optim, total)
    state = TrainState()
    if resume_from is not None:
        inexact = check_resumable(accelerator, resume_from, trainer.resume_inexact)
        accelerator.load_state(str(resume_from))
        state = TrainState(**checkpoint.read_state(resume_from))
        if inexact:
            state.inexact_resumes.append(state.global_step)
        # The schedule is a function of the step: replayed, not saved, because Accelerate saves
        # registered objects with pickle and loads them with weights_only=False.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for _ in range(state.global_step):
                scheduler.step()
        log.info("resumed from %s (step %d, epoch %d)", resume_from, state.global_step, state.epoch)
    if accelerator.is_main_process:
        log.info("training: %d features, %d optimizer steps (%d per epoch)", len(features), total, steps_per_epoch)

    def save_best(weights: Any) -> None:  # the unwrapped transformers model
        target = checkpoints / checkpoint.BEST
        try:
            checkpoint.write_atomic(target, lambda tmp: weights.save_pretrained(tmp))
        except OSError as err:
            raise StorageError(f"{target}: cannot write the best weights ({err.strerror or err})") from None

    def save_checkpoint() -> None:
        # Every process writes its part (its RNG state) into one temporary folder; the main process
        # then renames it, so a crash at any point leaves the previous checkpoint intact.
        target = checkpoints / f"step-{state.global_step}"
        tmp = checkpoints / f".tmp-{target.name}"
        if accelerator.is_main_process:
            checkpoint.begin(target)
        accelerator.wait_for_everyone()
        failure: OSError | None = None
        try:
            accelerator.save_state(str(tmp))
            if accelerator.is_main_process:
                checkpoint.write_state(tmp, vars(state))
        except OSError as err:  # disk full, quota, permissions: the previous checkpoint stays as it was
            failure = err
        # Every process learns whether any failed: a rank that stopped alone would leave the others
        # waiting at the next barrier forever.
        failed = accelerator.reduce(torch.tensor([float(failure is not None)], device=accelerator.device), "sum")
        if failed.item() > 0:
            if accelerator.is_main_process:
                checkpoint.discard(tmp)
            reason = f"{failure.strerror or failure}" if failure is not None else "another process could not write"
            raise StorageError(
                f"{target}: cannot write the checkpoint ({reason}); nothing was replaced, the newest "
                f"complete checkpoint is {checkpoint.latest(checkpoints)} (resume=<run-dir> continues from it)"
            )
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            checkpoint.commit(tmp, target)
            checkpoint.prune(checkpoints, trainer.keep_last)
        accelerator.wait_for_everyone()

    def run_eval() -> bool:
        """Evaluates, keeps the best weights, returns True when training should stop early."""
        score, metrics = evaluate()
        model.train()
        state.history.append({"step": state.global_step, "epoch": state.epoch, "score": score, **metrics})
        accelerator.log({f"eval/{k}": v for k, v in metrics.items()}, step=state.global_step)
        if _improved(score, state.best_score):
            state.best_score, state.best_step, state.bad_evals = score, state.global_step, 0
            if accelerator.is_main_process:
                save_best(accelerator.unwrap_model(model))
        else:
            state.bad_evals += 1
        accelerator.wait_for_everyone()
        patience = trainer.early_stopping_patience
        return patience is not None and state.bad_evals >= patience

    model.train()
    saved_at, stop = -1, state.global_step >= total
    bar = tqdm(
        total=total, initial=state.global_step, desc="train", disable=not show_progress(accelerator, trainer.progress)
    )
    while not stop and state.epoch < trainer.epochs:
        epoch_loader = accelerator.skip_first_batches(loader, state.batches_done) if state.batches_done else loader
        # The prepared loader re-seeds its sampler from its own epoch counter: set it explicitly.
        epoch_loader.set_epoch(state.epoch)
        if isinstance(sampler, LanguageSampler):
            sampler.set_epoch(state.epoch)
            mix = sampler.mix()
            if len(state.lang_mix) <= state.epoch:
                state.lang_mix.append(mix)
            total_mix = sum(mix.values())
            accelerator.log({f"lang_mix/{lang}": n / total_mix for lang, n in mix.items()}, step=state.global_step)
            if accelerator.is_main_process:
                log.info(
                    "epoch %d language mix: %s (target %s)",
                    state.epoch,
                    ", ".join(f"{lang} {n / total_mix:.1%}" for lang, n in sorted(mix.items())),
                    ", ".join(f"{lang} {p:.1%}" for lang, p in sorted(sampler.probabilities.items())),
                )
        running, seen = 0.0, 0
        step_start = time.perf_counter()
        for batch in epoch_loader:
            batch.pop("index")
            state.train_samples += batch["input_ids"].shape[0]
            state.train_tokens += int(batch["attention_mask"].sum())
            with accelerator.accumulate(model):
                teacher_logits = None
                if distiller is not None:
                    with accelerator.autocast():
                        teacher_logits = distiller.targets(batch)
                loss = training_loss(batch, teacher_logits)
                if not torch.isfinite(loss):
                    raise DivergedError(
                        f"loss is {loss.item()} at step {state.global_step}; lower optimizer.lr or use "
                        f"trainer.precision=no (last complete checkpoint: {checkpoint.latest(checkpoints)}, "
                        "continue from it with resume=<run-dir>)"
                    )
                accelerator.backward(loss)
                if perturbation is not None:
                    with perturbation.perturbed():
                        accelerator.backward(training_loss(batch, teacher_logits))
                if accelerator.sync_gradients and optim.max_grad_norm is not None:
                    accelerator.clip_grad_norm_(model.parameters(), optim.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad()
            state.batches_done += 1
            running, seen = running + loss.item(), seen + 1
            if not accelerator.sync_gradients:
                continue
            state.train_seconds += time.perf_counter() - step_start
            scheduler.step()
            state.global_step += 1
            bar.update(1)
            if state.global_step % trainer.log_every == 0:
                accelerator.log(
                    {"train/loss": running / seen, "train/lr": scheduler.get_last_lr()[0]}, step=state.global_step
                )
                bar.set_postfix(loss=f"{running / seen:.4f}")
                running, seen = 0.0, 0
            if trainer.eval_strategy == "steps" and state.global_step % (trainer.eval_steps or 1) == 0:
                stop = run_eval()
                save_checkpoint()
                saved_at = state.global_step
            if trainer.save_steps and state.global_step % trainer.save_steps == 0 and saved_at != state.global_step:
                save_checkpoint()
                saved_at = state.global_step
            if stop or state.global_step >= total:
                stop = True
                break
            step_start = time.perf_counter()  # evaluation and checkpoints are not training time
        if state.batches_done >= len(loader):
            state.epoch, state.batches_done = state.epoch + 1, 0
            if trainer.eval_strategy == "epoch":
                stop = run_eval() or stop
        if saved_at != state.global_step:
            save_checkpoint()
            saved_at = state.global_step
    evaluated = bool(state.history) and state.history[-1]["step"] == state.global_step
    if trainer.eval_strategy != "no" and not evaluated:
        run_eval()
        save_checkpoint()
    bar.close()
    if perturbation is not None:
        perturbation.remove()
    if state.best_step is None and accelerator.is_main_process:
        save_best(accelerator.unwrap_model(model))
    accelerator.wait_for_everyone()
    return state
