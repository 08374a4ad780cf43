"""Typed schema of a training run: every key, its type, its default and (attribute docstrings) its help text.

The dataclass defaults are the only defaults: they are registered with Hydra (`register_schema_defaults`)
under the shipped presets, which state only what differs. Configs are frozen: a run's config, once
validated (mlft.validation), is never changed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_type_hints

from omegaconf import DictConfig, OmegaConf

from mlft.errors import ConfigError

Scheme = Literal["IOB1", "IOB2", "IOBES", "BMES", "BIO", "BIOES", "BILOU"]
Precision = Literal["no", "bf16", "fp16"]


@dataclass(frozen=True)
class ModelConfig:
    name: str
    """Preset name (the file in configs/model/)."""
    name_or_path: str
    """A hub model id or a local directory with a HuggingFace model."""
    revision: str | None = None
    """Hub revision (branch, tag or commit) to pin."""
    max_length: int = 256
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
    dropout: float | None = None
    """Dropout of the hidden states (hidden_dropout_prob, dropout, ... by model type); null keeps the model's."""
    attention_dropout: float | None = None
    """Dropout of the attention probabilities (attention_probs_dropout_prob, attention_dropout, ...); null keeps
    the model's."""


@dataclass(frozen=True)
class TaskConfig:
    name: str
    """Preset name (the file in configs/task/)."""
    type: str
    """Problem type: a key of mlft.tasks.TASKS (token_classification, sequence_classification, masked_lm)."""
    metric: str
    """Metric that selects the best checkpoint and drives early stopping; `evaluate:<module>[:<key>]` sets
    task.evaluate and selects by the module's number."""
    evaluate: str | None = None
    """An `evaluate` module (hub name, or path of a local script or folder) whose numbers are reported beside the
    built-in metrics, named `<module>` or `<module>.<key>`."""
    trust_metric_code: bool = False
    """Run the Python of task.evaluate's module (a local script or a hub module, which is code too). Only the
    command line grants it: a saved config's value is never read (resume, --config-path, eval, predict, export,
    serve, a teacher, an ensemble), as with model.trust_remote_code."""
    higher_is_better: bool | None = None
    """Whether task.metric is better higher: only for a metric of task.evaluate (default true); built-in metrics
    know their direction."""
    multi_label: bool = False
    """Sequence classification with several labels per text (label is a list)."""
    decoding: Literal["viterbi", "argmax"] = "viterbi"
    """NER: the best tag sequence without invalid I- transitions (viterbi), or each token's own best tag (argmax)."""
    datasets: dict[str, str | dict[str, str]] = field(default_factory=dict)
    """Dataset per language (used when data.train/dev/test are not given): builtin:<corpus>, hub:<id>, or a file
    path where `{split}` stands for train, dev and test (e.g. data/de/{split}.conll); or a source per split
    ({train: hub:rajpurkar/squad, test: hub:google/xquad/xquad.de@validation}: a language evaluated only)."""
    labels: list[str] | None = None
    """Fixed label set; by default the labels seen in the training data."""
    columns: dict[str, str] = field(default_factory=dict)
    """The column of a field in the task's datasets, where it is not named like the field (over data.columns)."""
    masking: Literal["token", "whole_word"] = "token"
    """Masked-LM: the unit masked together, a token or every token of a word (space-separated words; jieba's
    words for Chinese)."""
    mlm_probability: float = 0.15
    """Masked-LM: the share of units a training batch masks (80% mask token, 10% random token, 10% unchanged)."""
    label_map: dict[str, str | None] | None = None
    """Renames labels (NER entity types or classes) so corpora share one label space; null drops a label
    (NER: its entities become O). With a map, a label that is neither a key nor a target is an error."""
    label_smoothing: float = 0.0
    """Share of each gold label's probability spread over all labels in the training loss (Szegedy et al. 2016);
    NER and single-label classification."""
    class_weights: Literal["balanced"] | list[float] | None = None
    """Weights of the classes in the training loss, for skewed single-label classification: balanced (n / (k ×
    the class's count in the training data), as scikit-learn) or one number per label in task.labels order."""
    max_question_length: int = 64
    """Question answering: tokens of a question kept in every window of its context (a longer one is cut)."""
    max_answer_length: int = 30
    """Question answering: the longest answer predicted, in tokens."""
    n_best: int = 20
    """Question answering: the best starts and ends of each window searched for the best span."""
    no_answer: bool = False
    """Question answering: questions may have no answer in their context (SQuAD 2.0): training learns the CLS
    position for them, and a question is predicted to have none when the CLS score beats the best span."""
    null_threshold: float = 0.0
    """Question answering with no_answer: how much the CLS score must beat the best span's for no answer."""


ALL_LANGS = "all"
"""A language list `[all]` means every language the task's datasets (or the data files) have."""


@dataclass(frozen=True)
class LangConfig:
    name: str
    """Preset name (the file in configs/lang/)."""
    train: list[str]
    """Languages trained on; [all] = every language of the task's datasets."""
    eval: list[str]
    """Languages evaluated on, zero-shot for those not in train; [all] = every language of the task's datasets."""


@dataclass(frozen=True)
class OptimizerConfig:
    name: Literal["adamw"]
    lr: float = 1e-4
    head_lr: float | None = None
    """Learning rate of the new task head; null uses lr. A larger one speeds up short runs."""
    layer_decay: float | None = None
    """Layer-wise learning-rate decay (ELECTRA, BEiT): the head trains at lr, the top transformer layer at
    lr × decay, each layer below at one more factor, the embeddings at lr × decay^(layers + 1). Keeps the lower
    layers' pretrained knowledge; 0.75-0.95 are usual. null: every layer at lr."""
    weight_decay: float = 0.01
    """Applied to weight matrices only, never to biases or LayerNorm."""
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    schedule: Literal["linear", "cosine", "constant"] = "linear"
    warmup_steps: int | None = None
    """Warmup length in optimizer steps (exclusive with warmup_fraction)."""
    warmup_fraction: float | None = 0.1
    """Warmup length as a fraction of all optimizer steps (exclusive with warmup_steps: set this one to null to
    count warmup in steps)."""
    max_grad_norm: float | None = 1.0
    """Gradient clipping norm; null disables clipping."""


@dataclass(frozen=True)
class LangSamplingConfig:
    temperature: float | None = None
    """Draw training languages with p ∝ n^(1/T): 1 = proportional to size, large = near uniform.
    null: every training example once per epoch (no sampling)."""
    mixing: Literal["epoch", "step"] = "epoch"
    """epoch: each epoch holds the sampled mix, shuffled together; step: each batch draws one language."""


Selection = Literal["source_dev", "target_dev", "last", "average"]


@dataclass(frozen=True)
class StageConfig:
    """One stage of continual training (trainer.stages): what differs from the run's own config."""

    name: str | None = None
    """Names the stage's folder (stages/<k>-<name>) and its row and column of the forgetting matrix; default: the
    task or lang preset it names, else stage<k>."""
    task: str | None = None
    """A task preset (configs/task/<name>.yaml) this stage trains on, as `task=<name>` would select; null: the
    run's task."""
    lang: str | None = None
    """A language preset (configs/lang/<name>.yaml); null: the run's languages."""
    data: dict[str, Any] = field(default_factory=dict)
    """data.* keys of this stage (e.g. {train: a.conll, dev: b.conll, test: c.conll, max_train_samples: 2000})."""
    trainer: dict[str, Any] = field(default_factory=dict)
    """trainer.* keys of this stage (epochs, max_steps, ...), not stages or continual."""
    optimizer: dict[str, Any] = field(default_factory=dict)
    """optimizer.* keys of this stage (e.g. a lower lr for later stages)."""


@dataclass(frozen=True)
class ContinualConfig:
    """How later stages keep what earlier stages learnt (mlft/engine/continual.py)."""

    replay: float = 0.0
    """Share of each earlier stage's training examples (drawn once from the seed: a fixed memory) added to every
    later stage's training data; 0 = none."""
    regulariser: Literal["none", "ewc", "l2"] = "none"
    """Pull the weights towards those a stage started from: ewc weighs each parameter by its diagonal Fisher
    information on the earlier stages' training data (Kirkpatrick et al. 2017, summed over stages as online EWC
    does), l2 weighs all alike (L2-SP, Li et al. 2018)."""
    strength: float = 1.0
    """The penalty's weight λ in loss + λ/2 · Σ F_i (θ_i − θ*_i)²; the Fisher values are scaled to mean 1, so
    ewc and l2 take values of the same order."""
    fisher_batches: int = 32
    """EWC: training batches whose squared loss gradients estimate the Fisher information after each stage."""


@dataclass(frozen=True)
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
    eval_before: bool = False
    """Also score dev and test before the first step (metrics.json `before`); masked-LM runs always do."""
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
    """Training loss and learning rate go to TensorBoard every N optimizer steps."""
    log_seconds: float = 30.0
    """Without progress bars (stderr not a terminal, or progress=false): a log line with step, loss, learning rate,
    samples/s and time left at most this often (0: none)."""
    num_processes: int = 1
    """Data-parallel processes; >1 relaunches through `accelerate launch`."""
    cpu: bool = False
    """Force CPU even when a GPU is present."""
    tensorboard: bool = True
    """false: no TensorBoard curves (the older spelling of tracker=none)."""
    progress: bool = True
    """Progress bars (off when stderr is not a terminal)."""
    group_by_length: bool = True
    """Batch examples of similar length (less padding): shuffled, sorted within groups of 50 batches, and the
    batches shuffled again (speed and quality measured in docs/results/benchmarks.md)."""
    lang_sampling: LangSamplingConfig = field(default_factory=LangSamplingConfig)
    """How joint multilingual training mixes its languages."""
    select: Selection = "source_dev"
    """Final weights: best on the training languages' dev sets (XTREME protocol), best on the other
    languages' dev sets (target_dev: an oracle, labelled as such), the last, or the average of the last
    `average_last` checkpoints."""
    average_last: int = 3
    """Checkpoints averaged by select=average (needs keep_last >= average_last)."""
    adversarial: Literal["none", "fgm", "pgd"] = "none"
    """fgm: every step also trains on the batch with its word embeddings moved by adv_epsilon along the loss
    gradient (about twice the step time); pgd: moved by adv_steps steps of adv_alpha, each along the gradient
    at the moved point and kept within adv_epsilon (Madry et al. 2018; about 1 + adv_steps times the step
    time). mlft/engine/adversarial.py."""
    adv_epsilon: float = 1.0
    """L2 size of the adversarial step per example (over all its tokens' embeddings); PGD's bound."""
    adv_alpha: float = 0.3
    """PGD: the L2 size of each of its steps."""
    adv_steps: int = 3
    """PGD: steps per batch (each one more forward and backward pass)."""
    rdrop: float = 0.0
    """R-Drop (Liang et al. 2021): the weight of the symmetric KL divergence between two dropout passes of every
    batch, added to their mean loss; 0 = off. About twice the step time (one pass of the doubled batch)."""
    ema: float | None = None
    """Weight EMA: the decay (e.g. 0.999) of an exponential moving average of the trainable weights, updated after
    every optimizer step and warmed up over the first ones; the run evaluates, keeps and ends with the averaged
    weights (null: off). mlft/engine/ema.py."""
    resume_inexact: bool = False
    """Resume even from a checkpoint whose RNG state is missing or unreadable (the run then differs from an
    uninterrupted one; metrics.json records the step in inexact_resumes). Off: such a resume is refused."""
    stages: list[StageConfig] = field(default_factory=list)
    """Continual training: the stages trained one after another, each starting from the weights the one before
    ended with, each stage's test sets scored after every stage (the forgetting matrix, in report.md). Empty: one
    ordinary run. mlft/commands/continual.py."""
    continual: ContinualConfig = field(default_factory=ContinualConfig)
    """Replay and regularisation against forgetting, for trainer.stages."""


MASKED_LM = "MASKED_LM"
"""The peft task type of masked-LM heads, which peft has none for: the model is wrapped as it is, and the head's
transform (dense + LayerNorm before the output layer, new in models shipped without one) trains beside the
adapter. The output layer is the word embeddings (tied) and stays frozen."""


@dataclass(frozen=True)
class PeftConfig:
    name: str
    """Preset name (the file in configs/peft/)."""
    method: Literal["none", "lora", "ia3", "loha", "lokr", "adalora", "bottleneck"] = "none"
    """none: every parameter trains; lora, ia3, loha (Hadamard product), lokr (Kronecker product), adalora (LoRA
    whose ranks are pruned to a budget while training): an adapter and the head train, merged at the end;
    bottleneck: Houlsby/Pfeiffer adapter layers and the head train, kept beside the frozen encoder (not merged)."""
    r: int = 8
    """Rank of LoRA, LoHa and LoKr; AdaLoRA: the average rank its budget ends with."""
    init_r: int = 12
    """AdaLoRA: the rank every adapted layer starts with, before the budget prunes it."""
    alpha: int = 16
    """Scaling numerator of LoRA, LoHa and LoKr (the update is scaled by alpha / r)."""
    dropout: float = 0.1
    """LoRA dropout on the adapter's input; LoHa and LoKr drop whole ranks with it."""
    use_dora: bool = False
    """LoRA: weight-decomposed LoRA (DoRA, Liu et al. 2024), a learned magnitude per output beside the update."""
    use_rslora: bool = False
    """LoRA: rank-stabilised scaling alpha / sqrt(r) (Kalajdzievski 2023), for larger ranks."""
    target_modules: list[str] | None = None
    """Linear layers that get an adapter, by name (e.g. [query, value]; [all-linear]: every linear layer of the
    encoder, not of the head); null: peft's default for the architecture."""
    feedforward_modules: list[str] | None = None
    """(IA)³: which of target_modules are feed-forward layers (scaled on their input); null: peft's default."""
    lr: float | None = None
    """Learning rate of the adapter weights (they want a larger step than full fine-tuning); null: optimizer.lr."""
    placement: Literal["pfeiffer", "houlsby"] = "pfeiffer"
    """Bottleneck adapters: after each block's feed-forward output (pfeiffer), or also after its attention
    output (houlsby)."""
    reduction_factor: int = 16
    """Bottleneck adapters: hidden size / bottleneck size (16: 24 dimensions in a 384-wide encoder)."""
    lang_adapters: dict[str, str] | None = None
    """Language adapters under the task adapter (MAD-X; peft.method=lora): {lang: run directory of a
    task=mlm peft=lang_adapter run, or an adapter folder}. Each language trains, is evaluated and predicts with
    its own; languages without one use the task adapter alone."""


@dataclass(frozen=True)
class AugmentConfig:
    """Training-data augmentation (never dev or test); every method off by default. mlft/data/augment.py."""

    copies: int = 1
    """Augmented copies of each training example per method (a copy equal to its original is dropped)."""
    mention_replacement: float = 0.0
    """NER: the probability that each entity mention becomes another training mention of its type."""
    shuffle_segments: float = 0.0
    """NER: the probability that the tokens of each segment (an entity, or a run of O tokens) are shuffled."""
    eda: float = 0.0
    """Classification: EDA's alpha, the share of a text's words swapped and deleted (and, with `synonyms`, replaced
    by a synonym and inserted)."""
    synonyms: str | None = None
    """A synonym file for EDA: per line a word, a tab, and its synonyms separated by tabs."""
    code_switch: float = 0.0
    """NER and classification: the probability that a word with an entry in `dictionary` becomes one of its
    translations (CoSDA-ML code-switching, for cross-lingual transfer)."""
    dictionary: str | None = None
    """A bilingual dictionary: per line a word, a tab (or a space) and a translation (MUSE's format)."""
    back_translation: list[str] | None = None
    """Classification: two seq2seq translation models (hub ids or folders), to a pivot language and back (e.g.
    [Helsinki-NLP/opus-mt-zh-en, Helsinki-NLP/opus-mt-en-zh]); one paraphrase per text, cached in mlft's cache."""
    bt_langs: list[str] | None = None
    """For many-to-many translation models (NLLB, M2M100): the codes of the texts' language and of the pivot (e.g.
    [zho_Hans, eng_Latn])."""

    @property
    def enabled(self) -> bool:
        return any(
            (self.mention_replacement, self.shuffle_segments, self.eda, self.code_switch, self.back_translation)
        )


@dataclass(frozen=True)
class DataConfig:
    train: str | None = None
    """Training data: a file (CoNLL, JSONL, CSV, TSV) or hub:<id>[/<config>]."""
    dev: str | None = None
    test: str | None = None
    format: Literal["auto", "conll", "text", "jsonl", "json", "csv", "tsv"] = "auto"
    """auto: by suffix (.jsonl; .json: a SQuAD file, else one object per line; .csv, .tsv); other files are CoNLL
    columns, or one text per line for masked-LM."""
    scheme: Scheme = "IOB2"
    """Label scheme of the input tags; converted to IOB2 on load (BIO is IOB2, BIOES and BILOU are IOBES)."""
    repair: bool = False
    """Repair invalid tag transitions instead of reporting them."""
    token_column: int = 0
    """CoNLL: column of the token (0-based)."""
    tag_column: int = -1
    """CoNLL: column of the tag (0-based; negative counts from the end, as in Python)."""
    columns: dict[str, str | None] = field(default_factory=dict)
    """The column of a field of the task type in JSONL/CSV/TSV/hub data, where it is not named like the field
    (data.columns.text=review, data.columns.text_pair=hypothesis; data.columns.lang: each record's language)."""
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
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    """Training-data augmentation (data.augment.mention_replacement=0.3, ...)."""


@dataclass(frozen=True)
class DistillConfig:
    teacher: str | None = None
    """A finished run directory whose model teaches this run (same task, labels and tokenizer); null: no teacher.
    The student is the run's model: e.g. model.num_layers=6, from the pretrained encoder or from the teacher's
    own model/ folder (model.name_or_path=<teacher run>/model)."""
    alpha: float = 0.5
    """Weight of the teacher's soft targets in the loss; the gold labels get 1 - alpha."""
    temperature: float = 2.0
    """Softens both distributions before they are compared (the soft loss is scaled by its square)."""


@dataclass(frozen=True)
class PruneConfig:
    heads: float = 0.0
    """Share of all attention heads removed, the least important first (Michel et al. 2019; at least one head
    stays in every layer); 0: none. The model must already be fine-tuned for the task
    (model.name_or_path=<run>/model); the run then fine-tunes what is left (mlft/models/pruning.py)."""
    neurons: float = 0.0
    """Share of all feed-forward neurons removed, the same way; 0: none."""
    batches: int = 32
    """Training batches the heads and neurons are scored on (trainer.batch_size each)."""

    @property
    def enabled(self) -> bool:
        return self.heads > 0 or self.neurons > 0


@dataclass(frozen=True)
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
    prune: PruneConfig = field(default_factory=PruneConfig)
    """Structured pruning of a fine-tuned model's heads and neurons before training (mlft/models/pruning.py)."""
    seed: int = 42
    run_root: str = "runs"
    """Where run directories are created."""
    overwrite: bool = False
    """Reuse a run directory that already holds a run."""
    resume: str | None = None
    """Continue the run in this directory from its newest checkpoint."""
    tracker: str = "tensorboard"
    """Where training curves, the config and the report go: tensorboard (<run>/tensorboard/), wandb, mlflow
    (their own settings: WANDB_MODE, WANDB_PROJECT, MLFLOW_TRACKING_URI, MLFLOW_EXPERIMENT_NAME) or none."""


def to_container(cfg: DictConfig | dict) -> dict[str, Any]:
    data: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)  # type: ignore[assignment]
    data.pop("hydra", None)
    data.pop("defaults", None)
    return data


def dataset_source(task: TaskConfig, lang: str, split: str) -> str | None:
    """Where the task's dataset of `lang` has its `split` (None: the language has no such split)."""
    given = task.datasets[lang]
    source = given.get(split) if isinstance(given, dict) else given
    return source.replace("{split}", split) if source is not None else None


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


def config_dir() -> Path:
    """configs/ inside the installed package, else the source checkout's top-level configs/."""
    packaged = Path(__file__).resolve().parent / "configs"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parent.parent / "configs"


def presets(group: str, directory: Path | None = None) -> list[str]:
    """The options of a config group (the YAML files in configs/<group>/)."""
    return sorted(p.stem for p in ((directory or config_dir()) / group).glob("*.yaml"))


PRIMARY_CONFIG = "config"
"""configs/config.yaml: the defaults list and Hydra settings every run is composed from."""
SCHEMA_DEFAULTS = "mlft_schema_defaults"
"""The config node holding the schema's defaults, first in the defaults list of configs/config.yaml."""


def schema_defaults(schema: type = RunConfig) -> dict[str, Any]:
    """Every field's default, nested sections included (required fields are left to the presets)."""
    out: dict[str, Any] = {}
    hints = get_type_hints(schema)
    for f in dataclasses.fields(schema):
        if dataclasses.is_dataclass(hints[f.name]):
            out[f.name] = schema_defaults(hints[f.name])
        elif f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            value = f.default_factory()
            out[f.name] = dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value  # type: ignore[arg-type]
    return out


def register_schema_defaults() -> None:
    """Makes the schema's defaults the base every composed config starts from (Hydra's config store)."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name=SCHEMA_DEFAULTS, node=schema_defaults())
