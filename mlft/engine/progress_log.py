"""Progress as log lines when there are no progress bars (output to a file: CI, nohup, Slurm).

A bar redraws one terminal line; in a file it is noise, so bars are off there, and these lines say instead how
far a run is, at most every `seconds`: optimizer steps with loss, learning rate, speed and the time left, or
how many texts an evaluation has scored.
"""

from __future__ import annotations

import logging
import time

log = logging.getLogger("mlft")


def duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


class StepLog:
    """One line per `seconds` of training: step/total, mean loss since the last line, learning rate, samples per
    second and ETA (from the mean step time of this process, evaluation pauses excluded)."""

    def __init__(self, enabled: bool, seconds: float, total: int, first_step: int, train_seconds: float):
        self.enabled = enabled and seconds > 0
        self.seconds, self.total, self.first_step = seconds, total, first_step
        # Resumed runs count from where they resumed: the ETA uses this process's own step times.
        self.last, self.last_train, self.start_train = time.monotonic(), train_seconds, train_seconds
        self.loss, self.batches, self.samples = 0.0, 0, 0

    def batch(self, loss: float, samples: int) -> None:
        self.loss, self.batches, self.samples = self.loss + loss, self.batches + 1, self.samples + samples

    def step(self, step: int, lr: float, train_seconds: float) -> None:
        """After an optimizer step; `train_seconds`: the run's training time so far (pauses excluded)."""
        now = time.monotonic()
        if not self.enabled or (now - self.last < self.seconds and step < self.total) or not self.batches:
            return
        done = step - self.first_step
        eta = (train_seconds - self.start_train) / max(done, 1) * (self.total - step)
        log.info(
            "step %d/%d (%d%%) · loss %.4f · lr %.2e · %.1f samples/s · %s left",
            step,
            self.total,
            100 * step // max(self.total, 1),
            self.loss / self.batches,
            lr,
            self.samples / max(train_seconds - self.last_train, 1e-9),
            duration(eta),
        )
        self.last, self.last_train = now, train_seconds
        self.loss, self.batches, self.samples = 0.0, 0, 0


class CountLog:
    """One line per `seconds` while a set is scored: 'eval dev/zh: 1,280 of 5,000 texts'."""

    def __init__(self, enabled: bool, desc: str, total: int, seconds: float = 30.0):
        self.enabled, self.desc, self.total, self.seconds = enabled and seconds > 0, desc, total, seconds
        self.last = time.monotonic()
        self.done = 0

    def update(self, count: int) -> None:
        self.done += count
        now = time.monotonic()
        if self.enabled and now - self.last >= self.seconds:
            log.info("%s: %s of %s features", self.desc, f"{self.done:,}", f"{self.total:,}")
            self.last = now
