"""Processes and devices: the Accelerator of a run, which process is the main one, and what this machine runs.

Multi-process launches (torchrun / `accelerate launch`) run the same code on every rank; what only one
process may do (log, write files) is decided here, in one place.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from accelerate import Accelerator, PartialState
from accelerate.state import AcceleratorState
from accelerate.utils import broadcast_object_list

from mlft.config import TrainerConfig
from mlft.engine.machine import use_cpu


def world_size() -> int:
    """Processes of the launch this process belongs to (1 without a launcher)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def launcher_argv() -> list[str]:
    """The command line of the process that started this one (Linux; empty where /proc is not there)."""
    try:
        raw = Path(f"/proc/{os.getppid()}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def ignored_processes(argv: list[str]) -> int:
    """N of `accelerate launch --cpu --num_processes N ...`, which starts one process whatever N is (its CPU
    launcher is a plain `python`, not torchrun); 0 when `argv` is not such a launch."""
    start = next((i for i, a in enumerate(argv) if a in ("launch", "accelerate.commands.launch")), None)
    if start is None:
        return 0
    own = argv[start + 1 :]
    # The launcher's own options end where the program starts (`-m module` or a script).
    own = own[: next((i for i, a in enumerate(own) if a == "-m" or a.endswith(".py")), len(own))]
    if "--cpu" not in own:
        return 0
    for i, arg in enumerate(own):
        name, _, value = arg.partition("=")
        if name in ("--num_processes", "--num-processes"):
            value = value or (own[i + 1] if i + 1 < len(own) else "")
            return int(value) if value.isdigit() else 0
    return 0


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


def make_accelerator(trainer: TrainerConfig, tracker: str = "none", run_dir: Path | None = None) -> Accelerator:
    """An Accelerator for the run, built to log to `tracker` (mlft.engine.tracking starts it); TensorBoard
    writes under `run_dir`, W&B and MLflow where their own settings say."""
    log_with = None if tracker == "none" else tracker
    # One process may run several jobs (a Hydra sweep, tests) with different precisions; the
    # process group (PartialState) is kept, the per-run Accelerator settings are not.
    AcceleratorState._reset_state(reset_partial_state=False)
    accelerator = Accelerator(
        cpu=use_cpu(trainer.cpu),
        mixed_precision=trainer.precision,
        gradient_accumulation_steps=trainer.grad_accum,
        log_with=log_with,
        # MLflow would make a run folder its experiment's artifact store: only TensorBoard gets one.
        project_dir=str(run_dir) if tracker == "tensorboard" and run_dir is not None else None,
    )
    return accelerator


class _MainProcessOnly(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return False


def log_on_main_process_only(accelerator: Accelerator) -> None:
    """mlft's log lines come from the main process only: the other ranks would repeat each of them."""
    logger = logging.getLogger("mlft")
    for existing in [f for f in logger.filters if isinstance(f, _MainProcessOnly)]:
        logger.removeFilter(existing)
    if not accelerator.is_main_process:
        logger.addFilter(_MainProcessOnly())
