"""`mlft export run=<run-dir> format=hf|onnx [quantize=int8]`: a self-contained model folder, checked per language;
`mlft export runs=[a,b,c] format=onnx out=<dir>`: an ensemble of runs as one ONNX graph.

The folder is written under a temporary name and renamed only after the parity gate passed: the
exported artifact is re-evaluated on the run's dev (or test) data next to the run's own model, and
any language whose metric drops by more than `max_drop` points fails the export with a table.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from mlft.commands.arguments import ExportArgs
from mlft.commands.evaluate import load_eval_data, score_model
from mlft.commands.exporters import EXPORTERS
from mlft.commands.manifest import write_manifest
from mlft.commands.preflight import export_out
from mlft.commands.saved import SavedRun, load_ensemble, load_exported, load_run, write_export_records
from mlft.data.feature_cache import Encoder
from mlft.destinations import share
from mlft.engine.evaluate import encode_sets
from mlft.errors import ConfigError, UserError
from mlft.models.lang_adapters import languages, merge_language
from mlft.models.onnx import FUSABLE
from mlft.models.pooling import MeanPoolingClassifier
from mlft.report.model_card import model_card


class ParityError(UserError):
    """The exported artifact scores worse than the run's model beyond the allowed drop."""

    title = "export failed the parity check"


def export(args: ExportArgs) -> Path:
    """Writes the export (arguments and destination checked by mlft.commands.preflight.check_export)."""
    saved = load_ensemble([Path(r) for r in args.runs]) if args.runs else load_run(Path(args.run or ""))
    if languages(saved.model) or args.lang is not None:
        saved = for_language(saved, args.lang)
    if args.fuse and saved.model.config.model_type not in FUSABLE:
        raise ConfigError(
            f"fuse: onnxruntime fuses {', '.join(FUSABLE)} encoders; this model is {saved.model.config.model_type}"
        )
    out = export_out(args)
    # Built beside it under a name of its own, then renamed: a failure leaves `out` as it was.
    made = [p for p in (out.parent, *out.parent.parents) if not p.exists()]  # removed again if the export fails
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{out.name}-", dir=out.parent))
    try:
        from mlft.models.trim import vocab_file_words

        extra = vocab_file_words(Path(args.vocab_file), args.vocab_min_count) if args.vocab_file else []
        source = trimmed(saved, args.trim_vocab == "train", extra) if args.trim_vocab != "none" else saved
        exporter = EXPORTERS[args.format]
        source.tokenizer.save_pretrained(tmp)
        write_export_records(source, tmp)
        artifact = exporter.write(source, tmp, args)
        if saved.members:
            artifact += f", one graph averaging the probabilities of {len(saved.members)} runs: " + ", ".join(
                map(str, saved.members)
            )
        if source is not saved:
            data = "training data" if args.trim_vocab == "train" else "data (all splits)"
            data += f" and {Path(args.vocab_file).name}" if args.vocab_file else ""
            artifact += f", vocabulary trimmed to the run's {data}: {len(source.tokenizer):,} pieces"
        parity = check_parity(saved, load_exported(tmp, args.format), args) if args.check else None
        usage = exporter.usage(saved.task.pipeline_tag, saved.task.model_class is MeanPoolingClassifier)
        card = model_card(
            saved.run,
            saved.config,
            saved.languages,
            saved.task.labels,
            saved.task.pipeline_tag,
            artifact,
            parity or "(parity check skipped)",
            usage,
        )
        (tmp / "README.md").write_text(card)
        if saved.run.plots_dir.is_dir() and not saved.members:  # the report the card quotes shows them
            shutil.copytree(saved.run.plots_dir, tmp / saved.run.plots_dir.name)
        write_manifest(tmp, args.format, artifact)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for folder in made:  # innermost first
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        raise
    share(tmp)
    if out.exists():  # an earlier export (check_destination): moved aside first, so no moment has neither
        earlier = tmp.with_name(f".old-{out.name}-{tmp.name}")
        out.replace(earlier)
        tmp.replace(out)
        shutil.rmtree(earlier)
    else:
        tmp.replace(out)
    print(f"exported {artifact} to {out}", file=sys.stderr)
    return out


def for_language(saved: SavedRun, lang: str | None) -> SavedRun:
    """The run as a plain model for `lang`: its language adapter merged (none: the task adapter alone); scored
    and checked on that language only."""
    adapters = languages(saved.model)
    known = list(dict.fromkeys(saved.languages.train + saved.languages.eval))
    if not adapters:
        raise ConfigError("lang: only for runs with language adapters (peft.lang_adapters); this run has none")
    if lang is None or lang not in known:
        raise ConfigError(
            f"lang: this run switches language adapters ({', '.join(adapters)}): export one model per language "
            f"with lang=<code> (allowed: {', '.join(known)})"
        )
    model = merge_language(saved.model, lang)
    config = replace(saved.config, lang=replace(saved.config.lang, eval=[lang]))
    return replace(saved, model=model, config=config, languages=replace(saved.languages, eval=[lang]))


def trimmed(saved: SavedRun, train_only: bool, extra: list[str]) -> SavedRun:
    """A copy of the run's model and tokenizer with only the pieces its data and the `extra` texts use
    (see mlft.models.trim)."""
    import copy

    from mlft.data.load import load_data
    from mlft.models.trim import trim, used_ids

    cfg = saved.config
    task_cfg = replace(cfg.task, labels=saved.task.labels)
    splits = load_data(cfg.data, task_cfg, saved.task, cfg.lang.train, cfg.lang.eval).splits
    if train_only:
        splits = {"train": splits["train"]}
    id_lists = [
        f["input_ids"]
        for by_lang in splits.values()
        for lang, exs in by_lang.items()
        for f in saved.task.encode(exs, saved.tokenizer, lang)
    ]
    examples = [ex for by_lang in splits.values() for exs in by_lang.values() for ex in exs]
    texts = saved.task.vocabulary_texts(examples)
    if texts:
        id_lists += saved.tokenizer(texts, add_special_tokens=False)["input_ids"]
    if extra:  # a text per line, or a word of a frequency list: tokenized alone, with and without a space
        id_lists += saved.tokenizer(extra + [" " + t for t in extra], add_special_tokens=False)["input_ids"]
    keep = used_ids(saved.tokenizer, id_lists)
    before = saved.model.get_input_embeddings().weight.shape[0]
    model, tokenizer = trim(copy.deepcopy(saved.model), saved.tokenizer, keep)
    print(f"trim_vocab: {before} -> {len(keep)} vocabulary entries", file=sys.stderr)
    return replace(saved, model=model, tokenizer=tokenizer)


def check_parity(reference: SavedRun, exported: SavedRun, args: ExportArgs) -> str:
    """Evaluates both models on the same data; raises ParityError when a language drops beyond max_drop."""
    cfg = reference.config
    splits = load_eval_data(reference, cfg.data, cfg.lang.eval)
    data: dict[str, dict[str, list[dict[str, Any]]]] = {args.split: splits.get(args.split, {})}
    # Not cached: an export's (possibly trimmed) tokenizer would leave an entry no run reads again.
    sets = encode_sets(Encoder(reference.task, reference.tokenizer, None), data)
    if not sets:
        raise ConfigError(f"split: the run has no {args.split} data to check the export on (split=dev or split=test)")
    before = score_model(reference, sets, args.batch_size, cpu=True)
    # A trimmed vocabulary numbers its pieces differently: the export's data is encoded with its own tokenizer.
    same_vocab = exported.tokenizer.get_vocab() == reference.tokenizer.get_vocab()
    exported_sets = sets if same_vocab else encode_sets(Encoder(exported.task, exported.tokenizer, None), data)
    after = score_model(exported, exported_sets, args.batch_size, cpu=True)
    scores: dict[str, tuple[float, float]] = {}
    metric = cfg.task.metric
    for lang, m in before[args.split].items():
        scores[lang] = (m[metric], after[args.split][lang][metric])
    higher = reference.task.metrics[metric]
    table = parity_table(scores, metric, args.split, args.max_drop, higher)
    failed = [lang for lang, (a, b) in scores.items() if drop_points(a, b, higher) > args.max_drop]
    if failed:
        raise ParityError(
            [f"{lang}: {metric} {scores[lang][0]:.4f} -> {scores[lang][1]:.4f}" for lang in failed]
            + [f"allowed drop: {args.max_drop} points (max_drop=...); nothing was written", table]
        )
    print(table, file=sys.stderr)
    return table


def drop_points(run: float, export: float, higher_is_better: bool) -> float:
    """How much worse the export scores, in points (positive: worse)."""
    return (run - export if higher_is_better else export - run) * 100


def parity_table(
    scores: dict[str, tuple[float, float]], metric: str, split: str, max_drop: float, higher_is_better: bool = True
) -> str:
    lines = [
        f"| {split} lang | {metric} (run) | {metric} (export) | drop (points) | within {max_drop} |",
        "|---|---:|---:|---:|---|",
    ]
    for lang, (a, b) in sorted(scores.items()):
        drop = drop_points(a, b, higher_is_better)
        lines.append(f"| {lang} | {a:.4f} | {b:.4f} | {drop:+.2f} | {'yes' if drop <= max_drop else 'NO'} |")
    return "\n".join(lines)
