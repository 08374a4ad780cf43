"""`mlft eval run=<run-dir>`: re-evaluates a saved model per language, on the run's data or other data."""

from __future__ import annotations

import datetime
import logging
from dataclasses import dataclass
from pathlib import Path

from mlft.data.load import load_data
from mlft.engine.loop import make_accelerator
from mlft.report.tables import write_reports
from mlft.runs import load_run, parse_args
from mlft.scoring import encode_sets, evaluate_sets

log = logging.getLogger("mlft")


@dataclass
class EvalArgs:
    run: str
    """The run directory to evaluate."""
    lang: list[str] | None = None
    """Languages to evaluate (default: the run's lang.eval)."""
    split: list[str] | None = None
    """Splits to evaluate: dev, test (default: both)."""
    dev: str | None = None
    """Other dev data (a file or hub:...), instead of the run's."""
    test: str | None = None
    """Other test data (a file or hub:...), instead of the run's."""
    batch_size: int = 64
    cpu: bool = False


def evaluate_run(args: EvalArgs) -> tuple[dict, Path]:
    """Evaluates the run's final model; writes <run>/evals/<time>/{metrics.json, report.md}."""
    saved = load_run(Path(args.run))
    cfg = saved.config
    data = cfg.data
    data.dev = args.dev if args.dev is not None else data.dev
    data.test = args.test if args.test is not None else data.test
    langs = args.lang or cfg.lang.eval
    cfg.task.labels = saved.task.labels
    loaded = load_data(data, cfg.task, cfg.lang.train, langs, need_train=False)
    splits = {s: v for s, v in loaded.splits.items() if s in (args.split or ["dev", "test"])}
    sets = encode_sets(saved.task, saved.tokenizer, splits)
    cfg.trainer.cpu, cfg.trainer.tensorboard, cfg.trainer.num_processes = args.cpu, False, 1
    accelerator = make_accelerator(cfg.trainer, None)
    model = accelerator.prepare(saved.model)
    metrics, _ = evaluate_sets(accelerator, model, saved.task, saved.tokenizer.pad_token_id, sets, args.batch_size)
    out_dir = saved.run_dir / "evals" / datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S-%f")
    out_dir.mkdir(parents=True)
    table = write_reports(out_dir, metrics, cfg.task.type, {"run": str(saved.run_dir)}, f"eval of {saved.run_dir}")
    print(table)
    return metrics, out_dir


def eval_cli(args: list[str]) -> None:
    evaluate_run(parse_args(args, EvalArgs, "eval"))
