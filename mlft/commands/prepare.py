"""What a run builds before its first step: data, task, tokenizer and model, encoded features, the compact
embedding matrix, the teacher, the adapter, and the optional techniques attached to the loop."""

from __future__ import annotations

import logging
import math
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import set_seed

from mlft.commands.saved import load_run
from mlft.config import RunConfig, TrainerConfig
from mlft.data.augment import augment
from mlft.data.feature_cache import Encoder, feature_cache_dir
from mlft.data.load import LoadedData, load_data
from mlft.data.readers import Example
from mlft.engine.adversarial import attach_fgm, attach_pgd
from mlft.engine.class_loss import attach_class_loss, balanced_weights
from mlft.engine.continual import Anchor, attach_anchor, with_rows
from mlft.engine.devices import world_size
from mlft.engine.distill import Distiller, attach_distillation
from mlft.engine.ema import attach_ema
from mlft.engine.evaluate import EvalSet, encode_sets
from mlft.engine.hooks import Hooks, attach_save_steps
from mlft.engine.loop import optimizer_steps
from mlft.engine.machine import use_cpu
from mlft.engine.rdrop import attach_rdrop
from mlft.engine.sampling import attach_language_mix
from mlft.errors import ConfigError
from mlft.models import bottleneck, lang_adapters
from mlft.models.adapters import add_adapter, rank_budget, trainable_summary
from mlft.models.compact import CompactVocab, compact, kept_ids, remap
from mlft.models.compact import supports as compact_supported
from mlft.models.depth import keep_layers
from mlft.models.freeze import freeze
from mlft.models.load import check_max_length, dropout_settings, load_model, load_tokenizer, read_model_config
from mlft.models.pruning import prune_by_importance
from mlft.models.teacher import check_teacher
from mlft.tasks import Task, build_task

log = logging.getLogger("mlft")


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
    augmented: dict[str, int] = field(default_factory=dict)
    """Training examples each augmentation method added (data.augment)."""
    class_weights: list[float] | None = None
    """The training loss's weight per label (task.class_weights), or None."""
    pruning: dict[str, Any] | None = None
    """What prune.* removed (heads, neurons, parameters before and after), or None."""


def prepare(run: RunConfig, accelerator: Any, replay: dict[str, list[Example]] | None = None) -> Prepared:
    """`replay`: earlier stages' training examples by language, added to this run's (trainer.stages)."""
    model_cfg = run.model
    config = read_model_config(model_cfg.name_or_path, model_cfg.revision, model_cfg.trust_remote_code)
    check_max_length(config, model_cfg.name_or_path, model_cfg.max_length)
    dropout = dropout_settings(config, model_cfg.dropout, model_cfg.attention_dropout)
    start = time.perf_counter()
    with accelerator.main_process_first():
        rules = build_task(run.task, run.model, [])
        loaded = load_data(run.data, run.task, rules, run.lang.train, run.lang.eval)
    load_seconds = time.perf_counter() - start
    task = build_task(run.task, run.model, loaded.labels)
    augmented = augment_training(run, loaded, task) if run.data.augment.enabled else {}
    for lang, examples in (replay or {}).items():
        loaded.splits["train"].setdefault(lang, []).extend(examples)
    if run.trainer.precision != "no" and not use_cpu(run.trainer.cpu):
        task.pad_to_multiple_of = 8
    tokenizer = load_tokenizer(model_cfg.name_or_path, model_cfg.revision, model_cfg.trust_remote_code)
    model = initial_model(run, task, tokenizer, dropout)
    if dropout:
        log.info("dropout: %s", ", ".join(f"{key}={value}" for key, value in dropout.items()))
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
    cached = f" ({encode.hits} of {encode.calls} sets from the feature cache)" if encode.hits else ""
    log.info("data: read in %.1f s, tokenized in %.1f s%s", load_seconds, timings["encode_seconds"], cached)
    pruned = prune_model(run, task, tokenizer, model, config, train_features) if run.prune.enabled else None
    freeze(model, model_cfg.freeze_embeddings, model_cfg.freeze_layers)
    vocab = None
    if model_cfg.compact_embeddings and run.peft.method == "none" and compact_supported(model):
        fed = [f["input_ids"] for f in train_features] + [f["input_ids"] for s in eval_sets for f in s.features]
        vocab = compact(model, kept_ids(tokenizer, fed))
        new_id = vocab.new_ids()
        remap(train_features, new_id)
        for eval_set in eval_sets:
            remap(eval_set.features, new_id)
        log.info(
            "embeddings: %d of %d rows are used by the run's data and trained", len(vocab.old_ids), len(vocab.full)
        )
    distiller = None
    if run.distill.teacher is not None:
        saved = load_run(Path(run.distill.teacher))
        teacher = (saved.task.name, saved.task.labels, saved.tokenizer, saved.model)
        student = (task.name, loaded.labels, tokenizer)
        model_teacher = check_teacher(run.distill.teacher, teacher, student, vocab)
        d = run.distill
        distiller = Distiller(model_teacher, d.alpha, d.temperature, task.model_outputs, task.model_inputs(tokenizer))
        log.info("distillation: teacher %s (alpha %g, temperature %g)", d.teacher, d.alpha, d.temperature)
    if run.peft.method == "bottleneck":
        size = max(1, model.config.hidden_size // run.peft.reduction_factor)
        bottleneck.add(model, run.peft.placement, size)
        bottleneck.train_only_adapters(model)
        log.info("bottleneck adapters: %s, %d dimensions", run.peft.placement, size)
    elif run.peft.method != "none":
        model = add_adapter(model, run.peft, task.peft_task_type, planned_steps(len(train_features), run.trainer))
    if run.peft.lang_adapters:
        model = stack_language_adapters(model, run.peft.lang_adapters, loaded.train_langs, loaded.eval_langs)
    log.info("%s", trainable_summary(model))
    return Prepared(
        loaded,
        task,
        tokenizer,
        model,
        train_features,
        feature_langs,
        eval_sets,
        vocab,
        distiller,
        timings,
        augmented,
        class_weights(run, loaded, task),
        pruned,
    )


def initial_model(run: RunConfig, task: Task, tokenizer: Any, dropout: dict[str, float] | None = None) -> Any:
    """The model before its first step: the encoder, cut to model.num_layers, with the task's head (new, or the
    saved one when its labels match), initialised from the seed."""
    model_cfg = run.model
    set_seed(run.seed)  # the new head's initialisation is part of the run's result
    model = load_model(
        task.model_class,
        model_cfg.name_or_path,
        task.head_config(),
        tokenizer,
        model_cfg.revision,
        model_cfg.trust_remote_code,
        dropout,
    )
    if model_cfg.num_layers is not None:
        kept = keep_layers(model, model_cfg.num_layers)
        log.info("layers: kept %d (%s of the pretrained stack)", len(kept), ", ".join(map(str, kept)))
    return model


def prune_model(
    run: RunConfig, task: Task, tokenizer: Any, model: Any, config: Any, features: list[dict[str, Any]]
) -> dict[str, Any]:
    """Removes the least important heads and neurons (prune.*), scored on prune.batches shuffled training
    batches; the model must come with a head trained for the task's labels (else the scores are noise)."""
    saved = [config.id2label[i] for i in range(len(config.id2label))] if getattr(config, "id2label", None) else []
    if task.labels and saved != list(task.labels):
        raise ConfigError(
            f"prune: scores heads and neurons by the loss of a model fine-tuned for this task, but "
            f"{run.model.name_or_path} has labels {saved[:8]} and the task {list(task.labels)[:8]}; start from "
            "a finished run's model (model.name_or_path=<run>/model)"
        )
    batches = scoring_batches(
        task, tokenizer.pad_token_id, features, run.seed, run.trainer.batch_size, run.prune.batches
    )
    start = time.perf_counter()
    summary = prune_by_importance(model, batches, run.prune.heads, run.prune.neurons)
    summary["seconds"] = round(time.perf_counter() - start, 2)
    heads, neurons, params = summary["heads"], summary["neurons"], summary["parameters"]
    log.info(
        "pruning: %d of %d heads and %d of %d neurons kept, %s of %s parameters (scored on %d batches in %.0f s)",
        heads["after"],
        heads["before"],
        neurons["after"],
        neurons["before"],
        f"{params['after']:,}",
        f"{params['before']:,}",
        len(batches),
        summary["seconds"],
    )
    return summary


def scoring_batches(
    task: Task, pad_id: int, features: list[dict[str, Any]], seed: int, size: int, count: int
) -> list[dict[str, Any]]:
    """`count` training batches of `size` features drawn without replacement in an order fixed by `seed`: what
    pruning scores units on and EWC estimates its Fisher information from."""
    order = list(range(len(features)))
    random.Random(seed).shuffle(order)
    starts = range(0, min(len(order), size * count), size)
    return [task.collate([features[i] for i in order[s : s + size]], pad_id, training=True) for s in starts]


def augment_training(run: RunConfig, loaded: LoadedData, task: Task) -> dict[str, int]:
    """Adds augmented copies to each language's training examples; returns how many each method added."""
    config, counts = run.data.augment, Counter[str]()
    original = sum(len(exs) for exs in loaded.splits["train"].values())
    for lang, examples in loaded.splits["train"].items():
        methods = task.augmenters(config, examples, lang)  # type: ignore[attr-defined]
        added, by_method = augment(examples, methods, config.copies, run.seed)
        examples.extend(added)
        counts.update(by_method)
    summary = ", ".join(f"{name} {n:,}" for name, n in counts.items())
    log.info(
        "augmentation: %s examples added to %s training examples (%s)", f"{counts.total():,}", f"{original:,}", summary
    )
    return dict(counts)


def attach_features(run: RunConfig, prepared: Prepared, accelerator: Any, anchor: Anchor | None = None) -> Hooks:
    """The optional techniques the config asks for, attached to the loop's one seam; `anchor`: a continual
    stage's penalty towards its starting weights."""
    hooks = Hooks()
    if run.trainer.lang_sampling.temperature is not None:
        attach_language_mix(hooks)
    if prepared.distiller is not None:
        attach_distillation(hooks, prepared.distiller, accelerator)
    trainer = run.trainer
    for line in technique_lines(run):
        log.info("%s", line)
    if trainer.adversarial == "fgm":
        attach_fgm(hooks, prepared.model, trainer.adv_epsilon, accelerator.backward)
    if trainer.adversarial == "pgd":
        attach_pgd(
            hooks, prepared.model, trainer.adv_epsilon, trainer.adv_alpha, trainer.adv_steps, accelerator.backward
        )
    if trainer.rdrop:
        attach_rdrop(hooks, trainer.rdrop, prepared.task.model_outputs)
    weights = prepared.class_weights
    if run.task.label_smoothing or weights is not None:
        attach_class_loss(hooks, run.task.label_smoothing, weights, prepared.task.model_outputs[0].name)
        if weights is not None:
            log.info("class weights: %s", ", ".join(f"{x}: {w:.3f}" for x, w in zip(prepared.loaded.labels, weights)))
    if run.trainer.save_steps:
        attach_save_steps(hooks, run.trainer.save_steps)
    if run.trainer.ema is not None:
        attach_ema(hooks, prepared.model, run.trainer.ema)
    if run.peft.method == "adalora":
        hooks.add("optimizer_step", rank_budget(prepared.model))
    if anchor is not None and prepared.vocab is not None:
        embeddings = prepared.model.get_input_embeddings().weight
        name = next(n for n, p in prepared.model.named_parameters() if p is embeddings)
        anchor = with_rows(anchor, name, torch.as_tensor(prepared.vocab.old_ids))
    if anchor is not None:  # last in the loss chain: added to whatever loss the techniques above make
        attach_anchor(hooks, prepared.model, anchor)
    return hooks


def techniques(run: RunConfig) -> dict[str, Any]:
    """The training techniques a run uses besides plain fine-tuning, with their settings (metrics.json records
    them, the log says them at the start)."""
    trainer = run.trainer
    used: dict[str, dict[str, Any]] = {}
    if trainer.adversarial != "none":
        used["adversarial"] = {"method": trainer.adversarial, "epsilon": trainer.adv_epsilon}
        if trainer.adversarial == "pgd":
            used["adversarial"].update(alpha=trainer.adv_alpha, steps=trainer.adv_steps)
    if trainer.rdrop:
        used["rdrop"] = {"alpha": trainer.rdrop}
    if trainer.ema is not None:
        used["ema"] = {"decay": trainer.ema}
    if trainer.early_stopping_patience is not None:
        used["early_stopping"] = {"patience": trainer.early_stopping_patience, "metric": run.task.metric}
    return used


def technique_lines(run: RunConfig) -> list[str]:
    return [
        f"{name}: " + ", ".join(f"{key} {value}" for key, value in settings.items())
        for name, settings in techniques(run).items()
    ]


def class_weights(run: RunConfig, loaded: LoadedData, task: Task) -> list[float] | None:
    """task.class_weights as one number per label (balanced: from the training data's class counts)."""
    given = run.task.class_weights
    if given is None:
        return None
    if given == "balanced":
        train = [label for exs in loaded.splits["train"].values() for ex in exs for label in task.label_values(ex)]
        return balanced_weights(loaded.labels, train)
    if len(given) != len(loaded.labels):
        raise ConfigError(
            f"task.class_weights: {len(given)} numbers for {len(loaded.labels)} labels ({', '.join(loaded.labels)})"
        )
    return list(given)


def stack_language_adapters(model: Any, given: dict[str, str], train: list[str], evaluated: list[str]) -> Any:
    """The task adapter with the language adapters under it; training runs with its language's adapter."""
    unknown = sorted(set(given) - set(train) - set(evaluated))
    if unknown:
        raise ConfigError(
            f"{lang_adapters.KEY}: {', '.join(unknown)} is not a language of this run "
            f"(training: {', '.join(train)}; evaluated: {', '.join(evaluated)})"
        )
    routed = [lang for lang in train if lang in given]
    if len(train) > 1 and routed:
        # A training batch mixes its languages, and a step runs one set of adapters.
        raise ConfigError(
            f"{lang_adapters.KEY}: language adapters train a task adapter on one language; this run trains on "
            f"{', '.join(train)}"
        )
    folders = {lang: lang_adapters.adapter_folder(path) for lang, path in given.items()}
    model = lang_adapters.attach(model, folders)
    lang_adapters.use(model, lang_adapters.task_adapters(model) + [lang_adapters.PREFIX + lang for lang in routed])
    missing = [lang for lang in dict.fromkeys(train + evaluated) if lang not in given]
    log.info(
        "language adapters: %s%s",
        ", ".join(f"{lang} ({folders[lang]})" for lang in given),
        f"; without one (task adapter alone): {', '.join(missing)}" if missing else "",
    )
    if routed and missing:
        # Measured: a task adapter trained over an English adapter predicted only O on Chinese without one.
        log.warning(
            "%s: no language adapter, but the task adapter trains over %s's: its scores there can collapse "
            "(docs/guide/language-adaptation.md); give each language one (task=mlm peft=lang_adapter)",
            ", ".join(missing),
            routed[0],
        )
    return model


def planned_steps(features: int, trainer: TrainerConfig) -> int:
    """The optimizer steps a run will take (before the loader exists: language sampling may differ slightly)."""
    return optimizer_steps(math.ceil(features / (trainer.batch_size * max(world_size(), 1))), trainer)
