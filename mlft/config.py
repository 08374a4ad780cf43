"""Typed schema of a training run and `validate(cfg)`, which reports every problem at once.

The attribute docstrings double as help text. Hydra composes plain YAML; this module checks the
result before any model or data is loaded.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_type_hints

from omegaconf import DictConfig, OmegaConf

from mlft.errors import ConfigError
from mlft.schema import build, check_fields

TaskType = Literal["token_classification", "sequence_classification"]
Scheme = Literal["IOB1", "IOB2", "IOBES", "BMES"]
Precision = Literal["no", "bf16", "fp16"]

# Metrics each task type reports; the selection metric must be one of them.
METRICS: dict[str, tuple[str, ...]] = {
    "token_classification": ("f1", "precision", "recall", "accuracy"),
    "sequence_classification": ("accuracy", "macro_f1", "micro_f1"),
}


@dataclass
class ModelConfig:
    name: str
    """Preset name (the file in configs/model/)."""
    name_or_path: str
    """A hub model id or a local directory with a HuggingFace model."""
    revision: str | None = None
    """Hub revision (branch, tag or commit) to pin."""
    max_length: int = 128
    """Maximum subtokens per model input, special tokens included; longer NER inputs are windowed."""
    stride: int = 32
    """Subtokens of overlap between consecutive windows of a long NER input."""
    trust_remote_code: bool = False
    """Run code shipped with a hub model. Only when you trust its author."""
    freeze_embeddings: bool = False
    """Keep the word-embedding matrix fixed (for multilingual vocabularies most of the parameters)."""
    freeze_layers: int = 0
    """Keep all embeddings and the lowest N transformer layers fixed; backward then stops above them."""
    compact_embeddings: bool = True
    """Train only the embedding rows the run's data uses, put back into the full matrix when the model is saved
    (same results as training the full matrix, without its gradient and optimizer state)."""
    num_layers: int | None = None
    """Keep only N of the pretrained transformer layers, evenly spaced (6 of 12: layers 0, 2, 4, 7, 9, 11): a
    faster model, or the student of a distillation run. null keeps them all."""
    pooling: Literal["first", "mean"] = "first"
    """How text classification reads a text: the architecture's transformers head on the first token (first), or
    a linear classifier on the mean of the last hidden states over the real tokens (mean: how sentence encoders
    such as e5 were pre-trained). Token classification does not pool."""


@dataclass
class TaskConfig:
    name: str
    """Preset name (the file in configs/task/)."""
    type: TaskType
    """Problem type."""
    metric: str
    """Metric that selects the best checkpoint and drives early stopping."""
    multi_label: bool = False
    """Sequence classification with several labels per text (label is a list)."""
    decoding: Literal["viterbi", "argmax"] = "viterbi"
    """NER: the best tag sequence without invalid I- transitions (viterbi), or each token's own best tag (argmax)."""
    datasets: dict[str, str] = field(default_factory=dict)
    """Dataset per language (used when data.train/dev/test are not given): builtin:<corpus>, hub:<id>, or
    a file path where `{split}` stands for train, dev and test (e.g. data/de/{split}.conll)."""
    labels: list[str] | None = None
    """Fixed label set; by default the labels seen in the training data."""
    columns: dict[str, str] = field(default_factory=dict)
    """Column names of the task's datasets (tokens, tags, text, text_pair, label), over data.columns."""
    label_map: dict[str, str | None] | None = None
    """Renames labels (NER entity types or classes) so corpora share one label space; null drops a label
    (NER: its entities become O). With a map, a label that is neither a key nor a target is an error."""


ALL_LANGS = "all"
"""A language list `[all]` means every language the task's datasets (or the data files) have."""


@dataclass
class LangConfig:
    name: str
    """Preset name (the file in configs/lang/)."""
    train: list[str]
    """Languages trained on; [all] = every language of the task's datasets."""
    eval: list[str]
    """Languages evaluated on, zero-shot for those not in train; [all] = every language of the task's datasets."""


@dataclass
class OptimizerConfig:
    name: Literal["adamw"]
    lr: float = 1e-4
    head_lr: float | None = None
    """Learning rate of the new task head; null uses lr. A larger one speeds up short runs."""
    weight_decay: float = 0.01
    """Applied to weight matrices only, never to biases or LayerNorm."""
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    schedule: Literal["linear", "cosine", "constant"] = "linear"
    warmup_steps: int | None = None
    """Warmup length in optimizer steps (exclusive with warmup_fraction)."""
    warmup_fraction: float | None = None
    """Warmup length as a fraction of all optimizer steps (exclusive with warmup_steps)."""
    max_grad_norm: float | None = 1.0
    """Gradient clipping norm; null disables clipping."""


@dataclass
class LangSamplingConfig:
    temperature: float | None = None
    """Draw training languages with p ∝ n^(1/T): 1 = proportional to size, large = near uniform.
    null: every training example once per epoch (no sampling)."""
    mixing: Literal["epoch", "step"] = "epoch"
    """epoch: each epoch holds the sampled mix, shuffled together; step: each batch draws one language."""


Selection = Literal["source_dev", "target_dev", "last", "average"]


@dataclass
class TrainerConfig:
    epochs: int = 3
    max_steps: int | None = None
    """Stop after this many optimizer steps (overrides epochs when reached first)."""
    batch_size: int = 16
    eval_batch_size: int = 64
    grad_accum: int = 1
    precision: Precision = "no"
    """Mixed precision: bf16 works on recent CPUs and GPUs, fp16 on GPUs."""
    eval_strategy: Literal["epoch", "steps", "no"] = "epoch"
    eval_steps: int | None = None
    """Evaluate every N optimizer steps (required with eval_strategy=steps)."""
    save_steps: int | None = None
    """Also write a resumable checkpoint every N optimizer steps, without evaluating: long epochs on a machine
    that may stop lose at most N steps (resume=<run-dir>)."""
    early_stopping_patience: int | None = None
    """Stop after this many evaluations without improvement of task.metric."""
    keep_last: int = 1
    """Checkpoints kept besides the best one."""
    log_every: int = 10
    num_processes: int = 1
    """Data-parallel processes; >1 relaunches through `accelerate launch`."""
    cpu: bool = False
    """Force CPU even when a GPU is present."""
    tensorboard: bool = True
    progress: bool = True
    """Progress bars (off when stderr is not a terminal)."""
    group_by_length: bool = True
    """Batch examples of similar length (less padding): shuffled, sorted within groups of 50 batches, and the
    batches shuffled again. About 2x faster training on CPU with no measured F1 loss (docs/benchmarks.md)."""
    lang_sampling: LangSamplingConfig = field(default_factory=LangSamplingConfig)
    """How joint multilingual training mixes its languages."""
    select: Selection = "source_dev"
    """Final weights: best on the training languages' dev sets (XTREME protocol), best on the other
    languages' dev sets (target_dev: an oracle, labelled as such), the last, or the average of the last
    `average_last` checkpoints."""
    average_last: int = 3
    """Checkpoints averaged by select=average (needs keep_last >= average_last)."""
    adversarial: Literal["none", "fgm"] = "none"
    """fgm: every step also trains on the batch with its word embeddings moved by adv_epsilon along the loss
    gradient (mlft/engine/adversarial.py); about twice the step time."""
    adv_epsilon: float = 1.0
    """L2 size of the adversarial step per example (over all its tokens' embeddings)."""
    resume_inexact: bool = False
    """Resume even from a checkpoint whose RNG state is missing or unreadable (the run then differs from an
    uninterrupted one; metrics.json records the step in inexact_resumes). Off: such a resume is refused."""


@dataclass
class PeftConfig:
    name: str
    """Preset name (the file in configs/peft/)."""
    method: Literal["none", "lora", "ia3"] = "none"
    """none: every parameter trains; lora, ia3: an adapter and the head train, merged into the model at the end."""
    r: int = 8
    """LoRA rank."""
    alpha: int = 16
    """LoRA scaling numerator (the update is scaled by alpha / r)."""
    dropout: float = 0.1
    """LoRA dropout on the adapter's input."""
    target_modules: list[str] | None = None
    """Linear layers that get an adapter, by name (e.g. [query, value]); null: peft's default for the architecture."""
    feedforward_modules: list[str] | None = None
    """(IA)³: which of target_modules are feed-forward layers (scaled on their input); null: peft's default."""
    lr: float | None = None
    """Learning rate of the adapter weights (they want a larger step than full fine-tuning); null: optimizer.lr."""


@dataclass
class ColumnsConfig:
    tokens: str = "tokens"
    tags: str = "tags"
    text: str = "text"
    text_pair: str | None = None
    label: str = "label"
    lang: str = "lang"


@dataclass
class DataConfig:
    train: str | None = None
    """Training data: a file (CoNLL, JSONL, CSV, TSV) or hub:<id>[/<config>]."""
    dev: str | None = None
    test: str | None = None
    format: Literal["auto", "conll", "jsonl", "csv", "tsv"] = "auto"
    scheme: Scheme = "IOB2"
    """Label scheme of the input tags; converted to IOB2 on load."""
    repair: bool = False
    """Repair invalid tag transitions instead of reporting them."""
    token_column: int = 0
    """CoNLL: column of the token (0-based)."""
    tag_column: int = -1
    """CoNLL: column of the tag (0-based; negative counts from the end, as in Python)."""
    columns: ColumnsConfig = field(default_factory=ColumnsConfig)
    """Column names in JSONL/CSV/TSV/hub data."""
    label_separator: str | None = None
    """Multi-label CSV/TSV: separator inside the label column (e.g. '|')."""
    max_train_samples: int | None = None
    """Use the first N training examples (per language)."""
    keep_entityless: float = 1.0
    """NER: fraction of training sentences without any entity that is kept (seeded; 1.0 keeps all)."""
    max_train_length: int | None = None
    """Drop training examples with more than N tokens (NER) or characters (classification)."""
    max_dev_samples: int | None = None
    """Use the first N dev examples (per language)."""
    max_test_samples: int | None = None
    """Use the first N test examples (per language)."""
    cache: bool = True
    """Keep tokenized features ($MLFT_FEATURE_CACHE, default $MLFT_CACHE/features): a rerun skips tokenizing."""


@dataclass
class DistillConfig:
    teacher: str | None = None
    """A finished run directory whose model teaches this run (same task, labels and tokenizer); null: no teacher.
    The student is the run's model: e.g. model.num_layers=6, from the pretrained encoder or from the teacher's
    own model/ folder (model.name_or_path=<teacher run>/model)."""
    alpha: float = 0.5
    """Weight of the teacher's soft targets in the loss; the gold labels get 1 - alpha."""
    temperature: float = 2.0
    """Softens both distributions before they are compared (the soft loss is scaled by its square)."""


@dataclass
class RunConfig:
    model: ModelConfig
    task: TaskConfig
    lang: LangConfig
    optimizer: OptimizerConfig
    trainer: TrainerConfig
    peft: PeftConfig
    data: DataConfig = field(default_factory=DataConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    """Knowledge distillation from a trained teacher run (mlft/engine/distill.py)."""
    seed: int = 42
    run_root: str = "runs"
    """Where run directories are created."""
    overwrite: bool = False
    """Reuse a run directory that already holds a run."""
    resume: str | None = None
    """Continue the run in this directory from its newest checkpoint."""


def to_container(cfg: DictConfig | dict) -> dict[str, Any]:
    data: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)  # type: ignore[assignment]
    data.pop("hydra", None)
    data.pop("defaults", None)
    return data


def _semantic_problems(run: RunConfig, base_dir: Path) -> list[str]:
    problems = _bound_problems(run)
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
    problems += _peft_problems(run.peft, run.model)
    if run.trainer.early_stopping_patience is not None and run.trainer.eval_strategy == "no":
        problems.append("trainer.early_stopping_patience: needs evaluation (trainer.eval_strategy is 'no')")
    if not 0.0 <= run.data.keep_entityless <= 1.0:
        problems.append(f"data.keep_entityless: must be in [0, 1], got {run.data.keep_entityless}")
    problems += _distill_problems(run.distill)
    if run.model.num_layers is not None and run.model.num_layers < 1:
        problems.append(f"model.num_layers: must be >= 1 (or null), got {run.model.num_layers}")
    if run.model.max_length < 8:
        problems.append(f"model.max_length: must be >= 8, got {run.model.max_length}")
    if not 0 <= run.model.stride < run.model.max_length // 2:
        problems.append(f"model.stride: must be in [0, max_length/2), got {run.model.stride}")
    allowed = METRICS[run.task.type]
    if run.task.metric not in allowed:
        problems.append(f"task.metric: {run.task.metric!r} is not reported (allowed: {', '.join(allowed)})")
    if run.task.multi_label and run.task.type != "sequence_classification":
        problems.append("task.multi_label: only for type=sequence_classification")
    problems += _lang_problems(run)
    for split in ("train", "dev", "test"):
        path = getattr(run.data, split)
        if path is None or path.startswith(("hub:", "builtin:")):
            continue
        if not (base_dir / path).exists():
            problems.append(f"data.{split}: file not found: {path}")
        elif (base_dir / path).is_dir():
            problems.append(f"data.{split}: {path} is a directory; give a data file (or hub:<dataset> for a dataset)")
    model_path = Path(run.model.name_or_path)
    looks_local = run.model.name_or_path.startswith((".", "/", "~")) or (
        ":" not in run.model.name_or_path and model_path.exists()
    )
    if looks_local and not (model_path.expanduser() / "config.json").exists():
        problems.append(f"model.name_or_path: {run.model.name_or_path} is not a model directory (no config.json)")
    if run.resume is not None and not (Path(run.resume) / ".hydra" / "config.yaml").is_file():
        problems.append(f"resume: {run.resume} is not a run directory (no .hydra/config.yaml)")
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
    return problems


ONE_OR_MORE = ("epochs", "batch_size", "eval_batch_size", "grad_accum", "num_processes", "log_every")
"""Trainer counts that must be at least 1."""


def _distill_problems(distill: DistillConfig) -> list[str]:
    problems = []
    if not 0.0 <= distill.alpha <= 1.0:
        problems.append(f"distill.alpha: must be in [0, 1], got {distill.alpha}")
    if distill.temperature <= 0:
        problems.append(f"distill.temperature: must be > 0, got {distill.temperature}")
    teacher = distill.teacher
    if teacher is not None and not (Path(teacher) / "config.yaml").is_file():
        problems.append(f"distill.teacher: {teacher} is not a run directory (no config.yaml)")
    elif teacher is not None and not (Path(teacher) / "model" / "config.json").is_file():
        problems.append(f"distill.teacher: {teacher} has no final model (model/config.json); did training finish?")
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
    return problems


def resolve_langs(requested: list[str], task: TaskConfig, key: str) -> list[str]:
    """[all] -> every language of the task's datasets; a language without a dataset is a config error."""
    if requested == [ALL_LANGS]:
        return list(task.datasets)
    missing = [lang for lang in requested if lang not in task.datasets]
    if missing:
        raise ConfigError(
            f"{key}: task '{task.name}' has no dataset for {', '.join(missing)} "
            f"(languages it has: {', '.join(task.datasets) or 'none'})"
        )
    return requested


def _without_bad_values(data: dict[str, Any], schema: type, problems: list[str]) -> dict[str, Any] | None:
    """A copy where every key with a schema problem is back at its default (None when one has none).

    This lets the semantic checks run too, so one invocation reports every problem.
    """
    clean = copy.deepcopy(data)
    for problem in problems:
        path = problem.split(":", 1)[0].split("[")[0].split(".")
        node, node_schema = clean, schema
        for part in path[:-1]:
            hints = get_type_hints(node_schema)
            if part not in hints or not isinstance(node.get(part), dict):
                return None
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
            return None
    return clean


def validate(cfg: DictConfig | dict, base_dir: Path | None = None) -> RunConfig:
    """Checks a composed config and returns it typed; raises ConfigError with every problem."""
    data = to_container(cfg)
    problems = check_fields(data, RunConfig)
    clean = _without_bad_values(data, RunConfig, problems) if problems else data
    if clean is not None and not check_fields(clean, RunConfig):
        problems += _semantic_problems(build(RunConfig, clean), base_dir or Path.cwd())
    if problems:
        raise ConfigError(problems)
    return build(RunConfig, data)
