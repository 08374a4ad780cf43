"""The training loop, on Accelerate: set-up, then epochs of optimizer steps, with evaluation and checkpoints.

The same code runs on CPU, one GPU, several GPUs or nodes (`accelerate launch`). The data order of every
epoch is a function of (seed, epoch) only, so a resumed run replays it exactly. Optional techniques
(distillation, FGM, language-mix logging, save_steps) attach through mlft.engine.hooks, not here.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch.utils.data import DataLoader, Sampler
from tqdm.auto import tqdm

from mlft.config import OptimizerConfig, TrainerConfig
from mlft.engine import checkpoint, tracking
from mlft.engine.hooks import Hooks
from mlft.engine.optim import build_optimizer, build_scheduler
from mlft.engine.predict import IndexedFeatures, collate_with_index, show_progress
from mlft.engine.progress_log import StepLog
from mlft.engine.sampling import EpochSampler, LanguageSampler
from mlft.errors import DivergedError, RunDirError, StorageError

log = logging.getLogger("mlft")

# Evaluates the model; returns (selection score, metrics to log). Called on every process.
EvalFn = Callable[[], tuple[float | None, dict[str, float]]]


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
    losses: list[dict[str, float]] = field(default_factory=list)
    """The mean training loss and the learning rate every `trainer.log_every` steps (the learning curve)."""
    lang_mix: list[dict[str, int]] = field(default_factory=list)
    """Training examples per language in each epoch (with language sampling)."""
    train_seconds: float = 0.0
    """Time spent in training steps (evaluation and checkpointing excluded), over all sessions of the run."""
    train_samples: int = 0
    train_tokens: int = 0
    """Non-padding tokens trained on (this process)."""
    inexact_resumes: list[int] = field(default_factory=list)
    """Steps at which the run was resumed without a checkpoint's RNG state (trainer.resume_inexact)."""
    before: dict[str, Any] | None = None
    """Metrics of the model before training (trainer.eval_before), kept with the checkpoints for a resumed run."""
    stopped_early: dict[str, Any] | None = None
    """Where early stopping ended training and why (trainer.early_stopping_patience); None: it did not."""


def optimizer_steps(batches_per_epoch: int, trainer: TrainerConfig) -> int:
    """The optimizer steps of a run: one per grad_accum batches (a last partial group counts), capped by max_steps."""
    total = math.ceil(batches_per_epoch / trainer.grad_accum) * trainer.epochs
    return min(total, trainer.max_steps) if trainer.max_steps is not None else total


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


class TrainingLoop:
    """Trains a model in place; the best weights by `evaluate` go to checkpoints/best.

    setup() prepares data order, optimizer, schedule and (on resume) the saved state; run() trains
    epoch by epoch; each batch is one `train_batch`, each optimizer step ends in `after_step`, which
    evaluates and checkpoints when due.
    """

    def __init__(
        self,
        accelerator: Accelerator,
        model: torch.nn.Module,
        features: list[dict[str, Any]],
        collate: Callable[[list[dict]], dict[str, torch.Tensor]],
        trainer: TrainerConfig,
        optim: OptimizerConfig,
        seed: int,
        checkpoints: Path,
        evaluate: EvalFn,
        higher_is_better: bool = True,
        langs: list[str] | None = None,
        hooks: Hooks | None = None,
    ):
        """`langs` (one per feature) turns on temperature sampling of languages when the trainer asks for it."""
        self.accelerator, self.model, self.features, self.collate = accelerator, model, features, collate
        self.trainer, self.optim, self.seed, self.checkpoints = trainer, optim, seed, checkpoints
        self.evaluate_fn, self.higher_is_better, self.langs = evaluate, higher_is_better, langs
        self.hooks = hooks or Hooks()
        self.state = TrainState()
        self.stop = False
        self.stopping = False
        self.saved_at = -1

    # Set-up

    def setup(self, resume_from: Path | None = None) -> None:
        set_seed(self.seed)
        self.sampler = make_sampler(self.features, self.langs, self.trainer, self.seed)
        # Every DataLoader iterator draws a seed from its generator; with the global one, an evaluation or
        # a resumed epoch would shift the dropout RNG and a resumed run would no longer match.
        loader = DataLoader(
            IndexedFeatures(self.features),
            batch_size=self.trainer.batch_size,
            sampler=self.sampler,
            collate_fn=collate_with_index(self.collate),
            generator=torch.Generator().manual_seed(self.seed),
        )
        optimizer = build_optimizer(self.model, self.optim)
        self.model, self.optimizer, self.loader = self.accelerator.prepare(self.model, optimizer, loader)
        steps_per_epoch = math.ceil(len(self.loader) / self.trainer.grad_accum)
        self.total = optimizer_steps(len(self.loader), self.trainer)
        self.scheduler = build_scheduler(self.optimizer, self.optim, self.total)
        if resume_from is not None:
            self.resume(resume_from)
        log.info(
            "training: %d features, %d optimizer steps (%d per epoch)", len(self.features), self.total, steps_per_epoch
        )

    def resume(self, directory: Path) -> None:
        inexact = check_resumable(self.accelerator, directory, self.trainer.resume_inexact)
        try:
            self.accelerator.load_state(str(directory))
            self.state = TrainState(**checkpoint.read_state(directory))
            self.hooks.run("after_resume", directory)
        except RunDirError:
            raise
        except Exception as err:  # noqa: BLE001 - truncated weights, a pickled or zeroed optimizer.bin, bad JSON
            reason = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
            if "weights_only" in reason:  # torch's advice to load with weights_only=False must not be followed
                reason = "a state file holds something other than plain tensors, which mlft never unpickles"
            raise RunDirError(
                [
                    f"{directory}: cannot resume from this checkpoint ({reason})",
                    f"delete {directory} to resume from the checkpoint before it, or train the run again",
                ]
            ) from None
        if inexact:
            self.state.inexact_resumes.append(self.state.global_step)
        # The schedule is a function of the step: replayed, not saved, because Accelerate saves
        # registered objects with pickle and loads them with weights_only=False.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for _ in range(self.state.global_step):
                self.scheduler.step()
        log.info("resumed from %s (step %d, epoch %d)", directory, self.state.global_step, self.state.epoch)

    # Training

    def run(self) -> TrainState:
        state = self.state
        self.model.train()
        self.stop = state.global_step >= self.total
        self.bar = tqdm(
            total=self.total,
            initial=state.global_step,
            desc="train",
            disable=not show_progress(self.accelerator, self.trainer.progress),
        )
        quiet = self.accelerator.is_main_process and self.bar.disable
        self.lines = StepLog(quiet, self.trainer.log_seconds, self.total, state.global_step, state.train_seconds)
        while not self.stop and state.epoch < self.trainer.epochs:
            self.run_epoch()
        evaluated = bool(state.history) and state.history[-1]["step"] == state.global_step
        if self.trainer.eval_strategy != "no" and not evaluated:
            self.evaluate()
            self.checkpoint(again=True)  # the step's checkpoint now also holds this evaluation
        self.bar.close()
        self.hooks.run("after_training")
        self.hooks.run("close")
        if state.best_step is None:
            self.save_best()
        self.accelerator.wait_for_everyone()
        self.release()
        return state

    def release(self) -> None:
        """Drops the prepared (data-parallel) model, optimizer and loader, keeping the plain model.

        The data-parallel wrapper holds the process group. Freed later, after end_training() has
        unregistered the group, it would destroy the group while holding the GIL and wait for a Gloo
        worker thread that needs the GIL to free the tensors of the last all-gather: the process hangs at
        exit (pytorch/pytorch#56297). Freed now, the group's last reference goes with end_training(),
        which releases the GIL first.
        """
        self.model = self.accelerator.unwrap_model(self.model)
        del self.optimizer, self.loader, self.scheduler
        self.accelerator.free_memory()

    def run_epoch(self) -> None:
        state = self.state
        loader = (
            self.accelerator.skip_first_batches(self.loader, state.batches_done) if state.batches_done else self.loader
        )
        # The prepared loader re-seeds its sampler from its own epoch counter: set it explicitly.
        loader.set_epoch(state.epoch)
        self.hooks.run("epoch_start", self)
        self.running, self.seen = 0.0, 0
        self.step_start = time.perf_counter()
        for batch in loader:
            self.train_batch(batch)
            if not self.accelerator.sync_gradients:
                continue
            self.after_step()
            if self.stop or state.global_step >= self.total:
                self.stop = True
                break
            self.step_start = time.perf_counter()  # evaluation and checkpoints are not training time
        if state.batches_done >= len(self.loader):
            state.epoch, state.batches_done = state.epoch + 1, 0
            if self.trainer.eval_strategy == "epoch":
                self.stop = self.evaluate() or self.stop
        self.checkpoint()

    def train_batch(self, batch: dict[str, torch.Tensor]) -> None:
        """Forward and backward passes of one batch; an optimizer step when gradients are synchronised."""
        state, accelerator = self.state, self.accelerator
        batch.pop("index")
        samples = batch["input_ids"].shape[0]  # before a hook may change the batch (R-Drop doubles it)
        state.train_samples += samples
        state.train_tokens += int(batch["attention_mask"].sum())
        with accelerator.accumulate(self.model):
            self.hooks.run("batch_start", batch)
            loss = self.hooks.training_loss(batch, self.model(**batch))
            if not torch.isfinite(loss):
                raise DivergedError(
                    f"loss is {loss.item()} at step {state.global_step}; lower optimizer.lr or use "
                    f"trainer.precision=no (last complete checkpoint: {checkpoint.latest(self.checkpoints)}, "
                    "continue from it with resume=<run-dir>)"
                )
            accelerator.backward(loss)
            self.hooks.run("extra_passes", lambda: self.hooks.training_loss(batch, self.model(**batch)))
            if accelerator.sync_gradients and self.optim.max_grad_norm is not None:
                accelerator.clip_grad_norm_(self.model.parameters(), self.optim.max_grad_norm)
            self.optimizer.step()
            if accelerator.sync_gradients:
                self.hooks.run("optimizer_step", state.global_step)
            self.optimizer.zero_grad()
        state.batches_done += 1
        self.running, self.seen = self.running + loss.item(), self.seen + 1
        self.lines.batch(loss.item(), samples)

    def after_step(self) -> None:
        """After an optimizer step: schedule, logging, evaluation and checkpoints when due, then the hooks."""
        state = self.state
        state.train_seconds += time.perf_counter() - self.step_start
        self.scheduler.step()
        state.global_step += 1
        self.bar.update(1)
        self.lines.step(state.global_step, float(self.scheduler.get_last_lr()[0]), state.train_seconds)
        if state.global_step % self.trainer.log_every == 0:
            loss = self.running / self.seen
            lr = float(self.scheduler.get_last_lr()[0])
            state.losses.append({"step": state.global_step, "loss": loss, "lr": lr})
            scalars = {"train/loss": loss, "train/lr": lr}
            if state.train_seconds > 0:
                scalars["train/samples_per_second"] = state.train_samples / state.train_seconds
            tracking.safely("logging", lambda: self.accelerator.log(scalars, state.global_step))
            self.bar.set_postfix(loss=f"{loss:.4f}")
            self.running, self.seen = 0.0, 0
        if self.trainer.eval_strategy == "steps" and state.global_step % (self.trainer.eval_steps or 1) == 0:
            self.stop = self.evaluate()
            self.checkpoint()
        self.hooks.run("step_end", self)

    # Evaluation and checkpoints

    def improved(self, score: float | None) -> bool:
        best = self.state.best_score
        return score is not None and (best is None or (score > best if self.higher_is_better else score < best))

    def evaluate(self) -> bool:
        """Evaluates, keeps the best weights, returns True when training should stop early."""
        self.hooks.run("before_evaluate")
        try:
            return self.evaluate_and_keep()
        finally:
            self.hooks.run("after_evaluate")

    def evaluate_and_keep(self) -> bool:
        state = self.state
        score, metrics = self.evaluate_fn()
        self.model.train()
        state.history.append({"step": state.global_step, "epoch": state.epoch, "score": score, **metrics})
        evaluated = {f"eval/{k}": v for k, v in metrics.items()}
        tracking.safely("logging", lambda: self.accelerator.log(evaluated, step=state.global_step))
        if self.improved(score):
            state.best_score, state.best_step, state.bad_evals = score, state.global_step, 0
            self.save_best()
        else:
            state.bad_evals += 1
        self.accelerator.wait_for_everyone()
        self.stopping = False
        patience = self.trainer.early_stopping_patience
        if patience is not None and state.bad_evals >= patience:
            self.stop_early(f"{state.bad_evals} evaluations without a dev score better than step {state.best_step}'s")
        self.hooks.run("scored", self, score)
        return self.stopping

    def stop_early(self, why: str, **record: Any) -> None:
        """Ends training after this evaluation (early stopping, a search's pruner); metrics.json says why."""
        state = self.state
        state.stopped_early = {"step": state.global_step, "epoch": state.epoch, "why": why, **record}
        log.info("early stopping at step %d: %s", state.global_step, why)
        self.stopping = True

    def save_best(self) -> None:
        if not self.accelerator.is_main_process:
            return
        target = self.checkpoints / checkpoint.BEST
        weights = self.accelerator.unwrap_model(self.model)  # the transformers model
        try:
            checkpoint.write_atomic(target, lambda tmp: weights.save_pretrained(tmp))
        except OSError as err:
            raise StorageError(f"{target}: cannot write the best weights ({err.strerror or err})") from None

    def checkpoint(self, again: bool = False) -> None:
        """A resumable step-N checkpoint (once per step unless `again`). Every process writes its part (its RNG
        state) into one temporary folder; the main process then renames it, so a crash at any point leaves the
        previous one."""
        state, accelerator = self.state, self.accelerator
        if self.saved_at == state.global_step and not again:
            return
        target = self.checkpoints / f"step-{state.global_step}"
        tmp = self.checkpoints / f".tmp-{target.name}"
        if accelerator.is_main_process:
            checkpoint.begin(target)
        accelerator.wait_for_everyone()
        failure: OSError | None = None
        try:
            accelerator.save_state(str(tmp))
            if accelerator.is_main_process:
                checkpoint.write_state(tmp, vars(state))
                self.hooks.run("before_save", tmp)
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
                f"complete checkpoint is {checkpoint.latest(self.checkpoints)} (resume=<run-dir> continues from it)"
            )
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            checkpoint.commit(tmp, target)
            checkpoint.prune(self.checkpoints, self.trainer.keep_last)
        accelerator.wait_for_everyone()
        self.saved_at = state.global_step
