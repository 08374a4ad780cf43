"""`validate(cfg)`: a composed config in, the typed RunConfig out, or every problem at once.

Each problem reads `key: problem (allowed: ...)`. Types are checked first (mlft.schema); a key with a
wrong type is then given its default, or a well-typed stand-in, so that the range and consistency
checks still run over everything else; callers add their own checks (the task types' rules).
"""

from __future__ import annotations

import copy
import dataclasses
import os
import types
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from omegaconf import DictConfig

from mlft.config import (
    ALL_LANGS,
    DistillConfig,
    ModelConfig,
    PeftConfig,
    RunConfig,
    TrainerConfig,
    dataset_source,
    resolve_langs,
    to_container,
)
from mlft.errors import ConfigError
from mlft.metric_spec import expand_shorthand
from mlft.schema import build, check_fields, non_finite


def _semantic_problems(run: RunConfig, base_dir: Path) -> list[str]:
    problems = non_finite(run) + _bound_problems(run)
    opt = run.optimizer
    if opt.warmup_steps is not None and opt.warmup_fraction is not None:
        problems.append(
            f"optimizer.warmup_steps: conflicts with optimizer.warmup_fraction={opt.warmup_fraction} (set at most "
            "one; to count warmup in steps, also pass optimizer.warmup_fraction=null)"
        )
    if opt.warmup_fraction is not None and not 0 <= opt.warmup_fraction < 1:
        problems.append(f"optimizer.warmup_fraction: {opt.warmup_fraction} is not in [0, 1)")
    if len(opt.betas) != 2 or not all(0 <= b < 1 for b in opt.betas):
        problems.append(f"optimizer.betas: expected two numbers in [0, 1), got {opt.betas}")
    if not 0 <= run.seed < 2**32:
        problems.append(f"seed: must be in [0, 2^32), got {run.seed}")
    if run.trainer.precision == "fp16" and run.trainer.cpu:
        problems.append("trainer.precision: fp16 needs a GPU, but trainer.cpu=true; use bf16 or no")
    if run.trainer.eval_strategy == "steps" and run.trainer.eval_steps is None:
        problems.append("trainer.eval_steps: required with trainer.eval_strategy=steps")
    if run.trainer.eval_strategy != "steps" and run.trainer.eval_steps is not None:
        problems.append("trainer.eval_steps: only used with trainer.eval_strategy=steps")
    problems += _trainer_problems(run.trainer)
    if run.task.evaluate is not None and not run.task.trust_metric_code:
        problems.append(
            f"task.evaluate: {run.task.evaluate!r} is an evaluate module, which is Python code; it runs only when the "
            "command line grants it: add task.trust_metric_code=true if you trust it"
        )
    problems += _peft_problems(run.peft, run.model)
    if run.resume is not None and run.peft.method == "adalora":
        # Its rank-importance averages live in peft's allocator, outside the checkpointed state.
        problems.append("resume: an AdaLoRA run cannot continue exactly from a checkpoint; train it again")
    if run.trainer.early_stopping_patience is not None and run.trainer.eval_strategy == "no":
        problems.append("trainer.early_stopping_patience: needs evaluation (trainer.eval_strategy is 'no')")
    if opt.layer_decay is not None and not 0.0 < opt.layer_decay <= 1.0:
        problems.append(f"optimizer.layer_decay: must be in (0, 1], got {opt.layer_decay}")
    if not 0.0 < run.task.mlm_probability < 1.0:
        problems.append(f"task.mlm_probability: must be in (0, 1), got {run.task.mlm_probability}")
    if not 0.0 <= run.data.keep_entityless <= 1.0:
        problems.append(f"data.keep_entityless: must be in [0, 1], got {run.data.keep_entityless}")
    problems += _distill_problems(run.distill)
    problems += _prune_problems(run)
    if run.model.num_layers is not None and run.model.num_layers < 1:
        problems.append(f"model.num_layers: must be >= 1 (or null), got {run.model.num_layers}")
    if run.model.max_length < 8:
        problems.append(f"model.max_length: must be >= 8, got {run.model.max_length}")
    if not 0 <= run.model.stride < run.model.max_length // 2:
        problems.append(f"model.stride: must be in [0, max_length/2), got {run.model.stride}")
    problems += _lang_problems(run)
    for split in ("train", "dev", "test"):
        path = getattr(run.data, split)
        if path is None or path.startswith(("hub:", "builtin:")):
            continue
        if not (base_dir / path).exists():
            problems.append(f"data.{split}: file not found: {path}")
        elif (base_dir / path).is_dir():
            problems.append(f"data.{split}: {path} is a directory; give a data file (or hub:<dataset> for a dataset)")
        elif not (base_dir / path).is_file():  # a FIFO or a device would be read forever
            problems.append(f"data.{split}: {path} is not a regular file (a pipe or a device); give a data file")
    model_path = Path(run.model.name_or_path)
    looks_local = run.model.name_or_path.startswith((".", "/", "~")) or (
        ":" not in run.model.name_or_path and model_path.exists()
    )
    if looks_local and not (model_path.expanduser() / "config.json").exists():
        problems.append(f"model.name_or_path: {run.model.name_or_path} is not a model directory (no config.json)")
    return problems


def _bound_problems(run: RunConfig) -> list[str]:
    """Numbers outside the range where they mean anything (a negative learning rate, zero steps, ...)."""
    opt, trainer, data, model = run.optimizer, run.trainer, run.data, run.model
    # key, value (None: not set), lower bound, whether the bound itself is allowed
    bounds: list[tuple[str, float | None, int, bool]] = [
        ("optimizer.lr", opt.lr, 0, False),
        ("optimizer.head_lr", opt.head_lr, 0, False),
        ("optimizer.weight_decay", opt.weight_decay, 0, True),
        ("optimizer.eps", opt.eps, 0, False),
        ("optimizer.warmup_steps", opt.warmup_steps, 0, True),
        ("optimizer.max_grad_norm", opt.max_grad_norm, 0, False),
        ("trainer.max_steps", trainer.max_steps, 1, True),
        ("trainer.eval_steps", trainer.eval_steps, 1, True),
        ("trainer.early_stopping_patience", trainer.early_stopping_patience, 1, True),
        ("trainer.keep_last", trainer.keep_last, 0, True),
        ("trainer.log_seconds", trainer.log_seconds, 0, True),
        ("data.max_train_samples", data.max_train_samples, 1, True),
        ("data.max_dev_samples", data.max_dev_samples, 1, True),
        ("data.max_test_samples", data.max_test_samples, 1, True),
        ("data.max_train_length", data.max_train_length, 1, True),
        ("model.freeze_layers", model.freeze_layers, 0, True),
    ]
    bounds += [(f"trainer.{key}", getattr(trainer, key), 1, True) for key in ONE_OR_MORE]
    problems = []
    for key, value, low, inclusive in bounds:
        if value is not None and (value < low or (value == low and not inclusive)):
            problems.append(f"{key}: must be {'>=' if inclusive else '>'} {low}, got {value}")
    shares = [
        ("model.dropout", model.dropout),
        ("model.attention_dropout", model.attention_dropout),
        ("task.label_smoothing", run.task.label_smoothing),
    ]
    problems += [
        f"{key}: must be in [0, 1), got {value}" for key, value in shares if value is not None and not 0 <= value < 1
    ]
    weights = run.task.class_weights
    if isinstance(weights, list) and (not weights or any(w < 0 for w in weights) or not any(weights)):
        problems.append(f"task.class_weights: one number >= 0 per label, not all 0, got {weights}")
    return problems


ONE_OR_MORE = ("epochs", "batch_size", "eval_batch_size", "grad_accum", "num_processes", "log_every")
"""Trainer counts that must be at least 1."""


def _prune_problems(run: RunConfig) -> list[str]:
    prune, problems = run.prune, []
    for key in ("heads", "neurons"):
        if not 0.0 <= getattr(prune, key) < 1.0:
            problems.append(f"prune.{key}: the share removed must be in [0, 1), got {getattr(prune, key)}")
    if prune.batches < 1:
        problems.append(f"prune.batches: must be >= 1, got {prune.batches}")
    if prune.enabled and run.peft.method != "none":
        problems.append(
            f"prune: prunes the model's own weights, not an adapter (peft.method={run.peft.method}); prune in one "
            "run, then train an adapter on its model/ (model.name_or_path=<run>/model)"
        )
    if prune.enabled and run.trainer.stages:
        problems.append("prune: would prune again before every stage of trainer.stages; prune in a run of its own")
    if prune.enabled and run.task.type == "masked_lm":
        problems.append("prune: scores heads by a fine-tuned task's loss; prune a token or sequence classifier")
    return problems


def _distill_problems(distill: DistillConfig) -> list[str]:
    problems = []
    if not 0.0 <= distill.alpha <= 1.0:
        problems.append(f"distill.alpha: must be in [0, 1], got {distill.alpha}")
    if distill.temperature <= 0:
        problems.append(f"distill.temperature: must be > 0, got {distill.temperature}")
    return problems


def _peft_problems(peft: PeftConfig, model: ModelConfig) -> list[str]:
    problems: list[str] = []
    if peft.method == "none":
        return problems
    if peft.r < 1:
        problems.append(f"peft.r: must be >= 1, got {peft.r}")
    if not 0.0 <= peft.dropout < 1.0:
        problems.append(f"peft.dropout: must be in [0, 1), got {peft.dropout}")
    if peft.lr is not None and peft.lr <= 0:
        problems.append(f"peft.lr: must be > 0, got {peft.lr}")
    if model.freeze_layers:
        problems.append(f"model.freeze_layers: conflicts with peft={peft.name} (the adapter decides what trains)")
    if peft.method == "adalora" and peft.init_r < peft.r:
        problems.append(
            f"peft.init_r: AdaLoRA prunes from init_r down to r, so it must be >= r ({peft.r}), got {peft.init_r}"
        )
    if peft.method == "bottleneck" and peft.reduction_factor < 1:
        problems.append(f"peft.reduction_factor: must be >= 1, got {peft.reduction_factor}")
    for key in ("use_dora", "use_rslora"):
        if getattr(peft, key) and peft.method != "lora":
            problems.append(f"peft.{key}: a LoRA option, but peft.method is {peft.method} (allowed with: lora)")
    if peft.lang_adapters and peft.method != "lora":
        # (Their folders are checked when a run starts: a finished run keeps copies, and must load without them.)
        problems.append(f"peft.lang_adapters: stack under a LoRA task adapter, but peft.method is {peft.method}")
    return problems


def _trainer_problems(trainer: TrainerConfig) -> list[str]:
    problems = []
    sampling = trainer.lang_sampling
    if sampling.temperature is not None and sampling.temperature <= 0:
        problems.append(f"trainer.lang_sampling.temperature: must be > 0, got {sampling.temperature}")
    if trainer.select == "average":
        if trainer.average_last < 1:
            problems.append(f"trainer.average_last: must be >= 1, got {trainer.average_last}")
        elif trainer.keep_last < trainer.average_last:
            problems.append(
                f"trainer.keep_last: select=average needs the last {trainer.average_last} checkpoints "
                f"(trainer.average_last), but keep_last={trainer.keep_last}"
            )
    if trainer.save_steps is not None and trainer.save_steps < 1:
        problems.append(f"trainer.save_steps: must be >= 1 (or null), got {trainer.save_steps}")
    if trainer.adversarial != "none" and trainer.adv_epsilon <= 0:
        problems.append(
            f"trainer.adv_epsilon: must be > 0 with adversarial={trainer.adversarial}, got {trainer.adv_epsilon}"
        )
    if trainer.adversarial == "pgd" and trainer.adv_alpha <= 0:
        problems.append(f"trainer.adv_alpha: must be > 0 with adversarial=pgd, got {trainer.adv_alpha}")
    if trainer.adversarial == "pgd" and trainer.adv_steps < 1:
        problems.append(f"trainer.adv_steps: must be >= 1 with adversarial=pgd, got {trainer.adv_steps}")
    if trainer.rdrop < 0:
        problems.append(f"trainer.rdrop: must be >= 0 (0 = off), got {trainer.rdrop}")
    if trainer.ema is not None and not 0 < trainer.ema < 1:
        problems.append(f"trainer.ema: the decay of the weight average, in (0, 1) (e.g. 0.999), got {trainer.ema}")
    if trainer.ema is not None and trainer.select == "average":
        problems.append(
            "trainer.select: average averages checkpoints of the trained weights, not of trainer.ema's average; "
            "use source_dev or last with trainer.ema"
        )
    continual = trainer.continual
    if not 0 <= continual.replay <= 1:
        problems.append(f"trainer.continual.replay: must be in [0, 1], got {continual.replay}")
    if continual.strength < 0:
        problems.append(f"trainer.continual.strength: must be >= 0, got {continual.strength}")
    if continual.fisher_batches < 1:
        problems.append(f"trainer.continual.fisher_batches: must be >= 1, got {continual.fisher_batches}")
    if not trainer.stages and (continual.replay or continual.regulariser != "none"):
        problems.append("trainer.continual: replay and regularisers act between stages; set trainer.stages too")
    if trainer.select == "target_dev" and trainer.eval_strategy == "no":
        problems.append("trainer.select: target_dev needs evaluation (trainer.eval_strategy is 'no')")
    return problems


def _lang_problems(run: RunConfig) -> list[str]:
    """Languages against the task's datasets; with data files, the files decide which languages exist."""
    problems = []
    if not run.lang.train:
        problems.append("lang.train: at least one training language is required")
    for key in ("train", "eval"):
        langs = getattr(run.lang, key)
        if ALL_LANGS in langs and len(langs) > 1:
            problems.append(f"lang.{key}: '{ALL_LANGS}' stands alone (got {langs})")
    uses_task_datasets = all(getattr(run.data, split) is None for split in ("train", "dev", "test"))
    if not uses_task_datasets:
        return problems
    for key in ("train", "eval"):
        langs = getattr(run.lang, key)
        if ALL_LANGS not in langs:
            try:
                resolve_langs(langs, run.task, f"lang.{key}")
            except ConfigError as err:
                problems += err.problems
    for lang in resolve_langs(run.lang.train, run.task, "lang.train") if not problems else []:
        if dataset_source(run.task, lang, "train") is None:
            given = run.task.datasets[lang]
            has = ", ".join(given) if isinstance(given, dict) else "all splits"
            problems.append(
                f"lang.train: task '{run.task.name}' has no training data for {lang} (it has {has}); train on a "
                "language that has, or give data.train"
            )
    return problems


def placeholder(tp: Any) -> Any:
    """A well-typed stand-in for a value that failed its type check, so that the other checks can still run."""
    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return {f.name: placeholder(hint) for f, hint in zip(dataclasses.fields(tp), get_type_hints(tp).values())}
    if origin is Literal:
        return get_args(tp)[0]
    if origin in (Union, types.UnionType):
        return None if type(None) in get_args(tp) else placeholder(get_args(tp)[0])
    return {list: [], dict: {}, str: "", int: 0, float: 0.0, bool: False}.get(origin or tp)


def _without_bad_values(data: dict[str, Any], schema: type, problems: list[str]) -> dict[str, Any] | None:
    """A copy where every key with a schema problem is at its default, or a well-typed placeholder when it has
    none, so that the semantic checks run too and one invocation reports every problem. None when the problem
    is above a field (a whole section of the wrong type)."""
    clean = copy.deepcopy(data)
    for problem in problems:
        path = problem.split(":", 1)[0].split("[")[0].split(".")
        node, node_schema = clean, schema
        for part in path[:-1]:
            hints = get_type_hints(node_schema)
            if part not in hints or not dataclasses.is_dataclass(hints[part]):
                return None
            if not isinstance(node.get(part), dict):
                node[part] = placeholder(hints[part])
            node, node_schema = node[part], hints[part]
        fields = {f.name: f for f in dataclasses.fields(node_schema)}
        field_ = fields.get(path[-1])
        if field_ is None:
            node.pop(path[-1], None)
        elif field_.default is not dataclasses.MISSING:
            node[path[-1]] = field_.default
        elif field_.default_factory is not dataclasses.MISSING:
            node[path[-1]] = field_.default_factory()
        else:
            node[path[-1]] = placeholder(get_type_hints(node_schema)[path[-1]])
    return clean


def _key(problem: str) -> str:
    return problem.split(":", 1)[0].split("[")[0]


Check = Callable[["RunConfig"], list[str]]
"""A check a caller adds to validation (the task types' own rules): problems as `key: problem`."""


PATH_KEYS = (
    ("model", "name_or_path"),
    ("data", "train"),
    ("data", "dev"),
    ("data", "test"),
    ("distill", "teacher"),
)
"""Keys that may name a local file or folder (besides task.datasets, peft.lang_adapters and data.augment's)."""


def absolute_paths(data: dict[str, Any], base_dir: Path) -> None:
    """Makes every local path of a config absolute (relative to `base_dir`, where the command runs), so that the
    config a run saves reproduces it from any folder; hub ids, builtin: corpora and missing paths stay as given."""

    def fixed(value: Any) -> Any:
        if not isinstance(value, str) or value.startswith(("hub:", "builtin:")) or Path(value).is_absolute():
            return value
        candidates = [value.replace("{split}", split) for split in ("train", "dev", "test")]
        if not any((base_dir / c).exists() for c in candidates):
            return value
        return (
            os.path.join(os.path.abspath(base_dir), value) if "{split}" in value else os.path.abspath(base_dir / value)
        )

    def section(*keys: str) -> dict[str, Any] | None:
        node: Any = data
        for key in keys:
            node = node.get(key) if isinstance(node, dict) else None
        return node if isinstance(node, dict) else None

    for where, key in PATH_KEYS:
        if (node := section(where)) is not None and key in node:
            node[key] = fixed(node[key])
    for keys in (("task", "datasets"), ("peft", "lang_adapters")):
        if (node := section(*keys)) is not None:
            for lang, value in node.items():
                node[lang] = {s: fixed(v) for s, v in value.items()} if isinstance(value, dict) else fixed(value)
    if (node := section("data", "augment")) is not None:
        for key in ("synonyms", "dictionary"):
            if key in node:
                node[key] = fixed(node[key])


def validate(cfg: DictConfig | dict, base_dir: Path | None = None, checks: Sequence[Check] = ()) -> RunConfig:
    """Checks a composed config and returns it typed; raises ConfigError with every problem at once."""
    data = to_container(cfg)
    absolute_paths(data, base_dir or Path.cwd())
    problems = expand_shorthand(data["task"], base_dir or Path.cwd()) if isinstance(data.get("task"), dict) else []
    problems += check_fields(data, RunConfig)
    clean = _without_bad_values(data, RunConfig, problems) if problems else data
    # Checked once: a clean copy is checked again only when bad values were taken out of it.
    if clean is not None and (clean is data or not check_fields(clean, RunConfig)):
        run = build(RunConfig, clean)
        reported = [_key(p) for p in problems]
        more = _semantic_problems(run, base_dir or Path.cwd()) + [p for check in checks for p in check(run)]
        # A key already reported as malformed holds a stand-in: what the stand-in violates is not news.
        problems += [p for p in more if not any(_key(p) == r or _key(p).startswith(r + ".") for r in reported)]
    if problems:
        raise ConfigError(problems)
    return build(RunConfig, data)
