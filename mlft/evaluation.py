"""`mlft eval run=<run-dir>`: re-evaluates a saved model per language, on the run's data or other data."""

from __future__ import annotations

import datetime
import logging
from dataclasses import dataclass
from pathlib import Path

from mlft.config import DataConfig
from mlft.data.feature_cache import Encoder, feature_cache_dir
from mlft.data.load import load_data
from mlft.engine.loop import make_accelerator
from mlft.report.tables import write_reports
from mlft.runs import SavedRun, load_run, parse_args, trained_langs
from mlft.scoring import EvalSet, encode_sets, evaluate_sets

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


def load_eval_data(saved: SavedRun, data: DataConfig, langs: list[str]) -> dict[str, dict[str, list[dict]]]:
    """Dev/test examples for `langs`, checked against the saved model's own labels."""
    cfg = saved.config
    cfg.task.labels = saved.task.labels
    return load_data(data, cfg.task, cfg.lang.train, langs, need_train=False).splits


def score_model(saved: SavedRun, sets: list[EvalSet], batch_size: int, cpu: bool) -> dict:
    """Metrics[split][lang] of the saved model on encoded sets, in one process."""
    cfg = saved.config
    cfg.trainer.cpu, cfg.trainer.tensorboard, cfg.trainer.num_processes = cpu, False, 1
    accelerator = make_accelerator(cfg.trainer, None)
    model = accelerator.prepare(saved.model)
    metrics, _ = evaluate_sets(accelerator, model, saved.task, saved.tokenizer.pad_token_id, sets, batch_size)
    return metrics


def evaluate_run(args: EvalArgs) -> tuple[dict, Path]:
    """Evaluates the run's final model; writes <run>/evals/<time>/{metrics.json, report.md}."""
    saved = load_run(Path(args.run))
    cfg = saved.config
    data = cfg.data
    data.dev = args.dev if args.dev is not None else data.dev
    data.test = args.test if args.test is not None else data.test
    loaded = load_eval_data(saved, data, args.lang or cfg.lang.eval)
    splits = {s: v for s, v in loaded.items() if s in (args.split or ["dev", "test"])}
    sets = encode_sets(Encoder(saved.task, saved.tokenizer, feature_cache_dir() if data.cache else None), splits)
    metrics = score_model(saved, sets, args.batch_size, args.cpu)
    out_dir = saved.run_dir / "evals" / datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S-%f")
    out_dir.mkdir(parents=True)
    title = f"eval of {saved.run_dir}"
    extra = {"run": str(saved.run_dir)}
    table = write_reports(
        out_dir, metrics, cfg.task.type, extra, title, trained_langs(saved.run_dir, cfg), cfg.task.metric
    )
    print(table)
    return metrics, out_dir


def eval_cli(args: list[str]) -> None:
    evaluate_run(parse_args(args, EvalArgs, "eval"))
