"""`mlft eval run=<run-dir>`: re-evaluates a saved model per language, on the run's data or other data."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

from mlft.commands.arguments import EvalArgs
from mlft.commands.preflight import eval_out
from mlft.commands.saved import SavedRun, load_ensemble, load_run
from mlft.config import DataConfig
from mlft.data.feature_cache import Encoder, feature_cache_dir
from mlft.data.load import load_data
from mlft.engine.devices import make_accelerator
from mlft.engine.evaluate import EvalSet, encode_sets, evaluate_sets
from mlft.errors import ConfigError
from mlft.report.tables import write_reports
from mlft.tasks import build_task


def load_eval_data(saved: SavedRun, data: DataConfig, langs: list[str]) -> dict[str, dict[str, list[dict]]]:
    """Dev/test examples for `langs`, checked against the saved model's own labels."""
    cfg = saved.config
    task = replace(cfg.task, labels=saved.task.labels)
    return load_data(data, task, saved.task, cfg.lang.train, langs, need_train=False).splits


def score_model(saved: SavedRun, sets: list[EvalSet], batch_size: int, cpu: bool) -> dict:
    """Metrics[split][lang] of the saved model on encoded sets, in one process."""
    trainer = replace(saved.config.trainer, cpu=cpu, tensorboard=False, num_processes=1)
    accelerator = make_accelerator(trainer)
    model = accelerator.prepare(saved.model)
    metrics, _ = evaluate_sets(accelerator, model, saved.task, saved.tokenizer.pad_token_id, sets, batch_size)
    return metrics


def check_own_file_langs(saved: SavedRun, args: EvalArgs, langs: list[str]) -> None:
    """A data file without a language column holds the run's own languages: scoring it as another
    language (lang=[de] on a zh run) would report a meaningless number under de's name."""
    data = saved.config.data
    known = set(saved.languages.train) | set(saved.languages.eval)
    for split in args.split or ["dev", "test"]:
        own = getattr(args, split) is None and getattr(data, split) is not None
        foreign = [lang for lang in langs if lang not in known]
        if own and foreign:
            raise ConfigError(
                f"lang: {', '.join(foreign)} is not a language of the run's {split} data {getattr(data, split)} "
                f"(it has {', '.join(sorted(known))}); give that data with {split}=<file>, or choose split=[...]"
            )


def evaluate(args: EvalArgs) -> tuple[dict, Path]:
    """Evaluates the run's final model; writes <run>/evals/<time>/{metrics.json, report.md} (or into out). The
    arguments were checked by mlft.commands.preflight.check_eval."""
    saved = load_run(Path(args.run)) if args.run else load_ensemble([Path(r) for r in args.runs or []])
    if args.evaluate:
        module = str(Path(args.evaluate).resolve()) if Path(args.evaluate).exists() else args.evaluate
        config = replace(saved.config, task=replace(saved.config.task, evaluate=module))
        saved = replace(saved, config=config, task=build_task(config.task, config.model, saved.task.labels))
    cfg = saved.config
    data = replace(cfg.data, dev=args.dev or cfg.data.dev, test=args.test or cfg.data.test)
    langs = args.lang or cfg.lang.eval
    check_own_file_langs(saved, args, langs)
    loaded = load_eval_data(saved, data, langs)
    splits: dict[str, dict[str, list[dict]]] = {
        s: v for s, v in loaded.items() if s in (args.split or ["dev", "test"])
    }
    sets = encode_sets(Encoder(saved.task, saved.tokenizer, feature_cache_dir() if data.cache else None), splits)
    metrics = score_model(saved, sets, args.batch_size, args.cpu)
    out_dir = Path(args.out) if args.out else eval_out(args)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise ConfigError(f"out: {out_dir} is not empty; nothing was written (choose another folder)")
    out_dir.mkdir(parents=True, exist_ok=True)
    title = f"eval of {saved.name}"
    extra: dict = {"run": str(saved.origin)}
    if saved.members:
        extra["ensemble"] = [str(m) for m in saved.members]
    columns = tuple(saved.task.metrics)
    table = write_reports(out_dir, metrics, columns, extra, title, saved.languages.train, cfg.task.metric)
    print(table)
    print(f"wrote the metrics, report and plots to {out_dir}", file=sys.stderr)
    return metrics, out_dir
