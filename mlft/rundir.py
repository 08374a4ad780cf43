"""The run directory, the reproducible record of one run: every file's name is here and nowhere else.

<run>/.hydra/config.yaml     composable config that reproduces the run (`--config-path <run>/.hydra`)
<run>/.hydra/overrides.yaml  the command-line overrides
<run>/config.yaml            the resolved config (every key)
<run>/env.json               versions, git sha, devices, seeds, data fingerprints, model; where a run started from
                             another run's config (origin) or was resumed (resumed), and changed data files
<run>/languages.json         the training and evaluation languages as resolved when the run started
<run>/metrics.json           metrics per split and language, means, transfer gaps, training history
<run>/metrics.csv            the same, one row per split and language
<run>/report.md              the per-language table, and the plots
<run>/plots/                 the task metric per language per split, learning curves, confusion matrix or
                             P/R/F1 per entity type or class
<run>/checkpoints/           step-N/ (resumable state) and best/
<run>/model/                 final model + tokenizer (save_pretrained, label maps)
<run>/adapter/               PEFT runs: the unmerged adapter
<run>/predictions/           <split>-<lang>.jsonl
<run>/tensorboard/           training curves
<run>/train.log              what the run logged (also while its progress bar ran)
<run>/evals/<time>/          reports of `mlft eval`
<run>/export/<format>/       folders written by `mlft export`
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import itertools
import json
import platform
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from mlft.config import ALL_LANGS, RunConfig, dataset_source, resolve_langs
from mlft.errors import RunDirError

# The files of a report (a run's final results, or one `mlft eval`): in the run or in evals/<time>/.
METRICS_FILE = "metrics.json"
METRICS_CSV = "metrics.csv"
REPORT_FILE = "report.md"
PLOTS_DIR = "plots"
PACKAGES = ("mlft", "torch", "transformers", "datasets", "accelerate", "tokenizers", "hydra-core", "seqeval")


@dataclass(frozen=True)
class Languages:
    train: list[str]
    eval: list[str]


@dataclass(frozen=True)
class RunDir:
    """A run directory: where each file is, and reading and writing the run's own records."""

    path: Path

    hydra_dir = property(lambda self: self.path / ".hydra")
    composable_config = property(lambda self: self.path / ".hydra" / "config.yaml")
    overrides_file = property(lambda self: self.path / ".hydra" / "overrides.yaml")
    config_file = property(lambda self: self.path / "config.yaml")
    env_file = property(lambda self: self.path / "env.json")
    languages_file = property(lambda self: self.path / "languages.json")
    metrics_file = property(lambda self: self.path / METRICS_FILE)
    report_file = property(lambda self: self.path / REPORT_FILE)
    checkpoints = property(lambda self: self.path / "checkpoints")
    model_dir = property(lambda self: self.path / "model")
    adapter_dir = property(lambda self: self.path / "adapter")
    predictions_dir = property(lambda self: self.path / "predictions")
    tensorboard_dir = property(lambda self: self.path / "tensorboard")
    evals_dir = property(lambda self: self.path / "evals")
    plots_dir = property(lambda self: self.path / PLOTS_DIR)
    log_file = property(lambda self: self.path / "train.log")
    export_dir = property(lambda self: self.path / "export")
    stages_dir = property(lambda self: self.path / "stages")
    """A continual run's stages, each a run directory of its own (`stages/<k>-<name>/`)."""

    @property
    def markers(self) -> tuple[Path, ...]:
        """Anything here means the directory already holds a run."""
        return (
            self.hydra_dir,
            self.config_file,
            self.env_file,
            self.languages_file,
            self.metrics_file,
            self.checkpoints,
            self.model_dir,
            self.report_file,
            self.log_file,
        )

    def is_run(self) -> bool:
        return self.config_file.is_file()

    def is_finished(self) -> bool:
        return (self.model_dir / "config.json").is_file()

    # Creating and removing

    def claim(self, overwrite: bool, unique: bool = False, reads: Sequence[tuple[str, Path]] = ()) -> RunDir:
        """Takes the directory for a new run and returns it.

        It must hold no earlier run; overwrite=true removes the earlier run's files, but only of a run (never files
        of a folder that holds no run) and never what the new run reads (`reads`: key and path of each input).
        Creating `.hydra/` is the atomic step, so of two runs that start together only one gets the directory; with
        `unique` the other takes `<dir>-2` (then -3, ...) instead of failing.
        """
        candidate = self
        for n in itertools.count(2):
            try:
                return candidate._claim(overwrite, reads)
            except RunDirError:
                if not unique:
                    raise
            candidate = RunDir(self.path.with_name(f"{self.path.name}-{n}"))
        raise AssertionError("unreachable")

    def _claim(self, overwrite: bool, reads: Sequence[tuple[str, Path]]) -> RunDir:
        present = [p for p in self.markers if p.exists() or p.is_symlink()]
        names = ", ".join(p.name for p in present)
        if present and not overwrite:
            raise RunDirError(
                f"{self.path}: already holds a run ({names}); nothing was changed. "
                f"Continue it with resume={self.path}, choose another hydra.run.dir, or pass overwrite=true to "
                "replace it"
            )
        if present and not (self.config_file.is_file() or self.composable_config.is_file()):
            raise RunDirError(
                f"{self.path}: holds {names} but no mlft run (no config.yaml); overwrite=true replaces only an "
                "earlier run's files, so nothing was changed: choose another hydra.run.dir"
            )
        doomed = [p.resolve() for p in present]
        for key, path in reads:
            target = path.resolve()
            if any(target == d or d in target.parents for d in doomed):
                raise RunDirError(
                    f"{key}: {path} is inside {self.path}, whose earlier run overwrite=true would delete; nothing "
                    "was changed: choose another hydra.run.dir (or copy the input out of the run first)"
                )
        try:
            for path in present:  # a link is removed itself, never what it points to
                shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
            self.path.mkdir(parents=True, exist_ok=True)
            self.hydra_dir.mkdir()
        except FileExistsError:
            raise RunDirError(f"{self.path}: another run claimed this directory at the same moment") from None
        except OSError as err:
            raise RunDirError(f"{self.path}: cannot create the run directory ({err.strerror or err})") from None
        return self

    def release(self) -> None:
        """Undoes a claim whose run never started: removes what mlft wrote, and the directory if that empties it."""
        for path in (*self.markers, self.tensorboard_dir):
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
        if self.path.is_dir() and not any(self.path.iterdir()):
            self.path.rmdir()

    # The run's records

    def save_config(self, run: RunConfig, overrides: list[str], hydra_settings: dict[str, Any]) -> None:
        """Writes the resolved config and a composable copy that `mlft train --config-path` reproduces."""
        plain = {**dataclasses.asdict(run), "resume": None}
        OmegaConf.save(OmegaConf.create(plain), self.config_file)
        self.hydra_dir.mkdir(exist_ok=True)
        OmegaConf.save(OmegaConf.create({**hydra_settings, **plain}), self.composable_config)
        OmegaConf.save(OmegaConf.create(list(overrides)), self.overrides_file)

    def write_env(
        self,
        devices: dict[str, Any],
        seed: int,
        sources: dict[str, str],
        model: dict[str, Any],
        contents: dict[str, str] | None = None,
    ) -> None:
        """`contents`: the content fingerprint of each source that is no local file (packaged corpora, hub sets)."""
        data = {
            key: {"source": src, "fingerprint": fingerprint(src, (contents or {}).get(key))}
            for key, src in sources.items()
        }
        env = {
            "versions": versions(),
            "git_sha": git_sha(),
            "git_dirty": git_dirty(),
            "platform": platform.platform(),
            "devices": devices,
            "seed": seed,
            "data": data,
            "model": model,
        }
        self.env_file.write_text(json.dumps(env, indent=2, ensure_ascii=False))

    def add_env(self, key: str, value: Any, append: bool = False) -> None:
        """Adds (or, with `append`, appends to the list of) one entry of env.json."""
        env = self.env()
        if append:
            env.setdefault(key, []).append(value)
        else:
            env[key] = value
        self.env_file.write_text(json.dumps(env, indent=2, ensure_ascii=False))

    def write_languages(self, languages: Languages) -> None:
        self.languages_file.write_text(json.dumps(dataclasses.asdict(languages), ensure_ascii=False))

    def languages(self, config: RunConfig) -> Languages:
        """The languages as the run resolved them when it started ([all] -> the languages its data had)."""
        if self.languages_file.is_file():
            recorded = read_record(self.languages_file)
            if not (isinstance(recorded, dict) and set(recorded) == {"train", "eval"}):
                raise RunDirError(
                    f'{self.languages_file}: not the run\'s languages ({{"train": [...], "eval": [...]}})'
                )
            return Languages(**recorded)
        # Runs written before languages.json: what metrics.json recorded, else the config with [all] resolved.
        metrics = self.metrics()
        train = metrics.get("languages", {}).get("train") or _resolved(config.lang.train, config)
        evaluated = list(dict.fromkeys(lang for split in ("dev", "test") for lang in metrics.get(split, {})))
        return Languages(train, evaluated or _resolved(config.lang.eval, config))

    def metrics(self) -> dict[str, Any]:
        return read_record(self.metrics_file) if self.metrics_file.is_file() else {}

    def env(self) -> dict[str, Any]:
        return read_record(self.env_file) if self.env_file.is_file() else {}


def read_paths(run: RunConfig) -> list[tuple[str, Path]]:
    """The local files and folders a run reads, each with its key: what overwrite=true must never delete."""
    found: list[tuple[str, Path]] = []
    candidates: list[tuple[str, str | None]] = [
        ("model.name_or_path", run.model.name_or_path),
        ("distill.teacher", run.distill.teacher),
        ("data.augment.synonyms", run.data.augment.synonyms),
        ("data.augment.dictionary", run.data.augment.dictionary),
        ("task.evaluate", run.task.evaluate),
        *((f"data.{split}", getattr(run.data, split)) for split in ("train", "dev", "test")),
        *((f"peft.lang_adapters.{lang}", path) for lang, path in (run.peft.lang_adapters or {}).items()),
        *(
            (f"task.datasets.{lang}", dataset_source(run.task, lang, split))
            for lang in run.task.datasets
            for split in ("train", "dev", "test")
        ),
    ]
    for key, value in candidates:
        if value and not value.startswith(("hub:", "builtin:")) and Path(value).exists():
            found.append((key, Path(value)))
    return found


def read_record(path: Path) -> Any:
    """A JSON record of a run (metrics, languages, environment); a damaged one is a RunDirError naming it."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise RunDirError(f"{path}: not a readable record of the run ({str(err).splitlines()[0][:120]})") from None
    if not isinstance(record, dict):
        raise RunDirError(f"{path}: not a record of the run (expected a JSON object)")
    return record


def _resolved(langs: list[str], config: RunConfig) -> list[str]:
    return resolve_langs(langs, config.task, "lang") if langs == [ALL_LANGS] and config.task.datasets else langs


def fingerprint(source: str, content: str | None = None) -> str:
    """sha256 of a local file (first 16 hex digits); for a packaged corpus or hub dataset the fingerprint of the
    examples read from it (`content`), else its name."""
    path = Path(source)
    if not path.is_file():
        return content or source
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return f"sha256:{digest.hexdigest()[:16]}"


def data_changes(
    recorded: dict[str, dict[str, str]], sources: dict[str, str], contents: dict[str, str] | None = None
) -> list[dict[str, str]]:
    """The data (split/lang) that another record names too, whose content differs now. A record that fingerprinted a
    packaged corpus by its name only (written before contents were) says nothing of its content."""
    changes = []
    for key, source in sources.items():
        earlier = recorded.get(key, {})
        was = earlier.get("fingerprint", "")
        if earlier.get("source") != source or was == source:
            continue
        if was != (current := fingerprint(source, (contents or {}).get(key))):
            changes.append({"key": key, "source": source, "was": was, "now": current})
    return changes


def now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def git_sha() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_dirty() -> bool | None:
    """Whether mlft's own checkout had uncommitted changes (None: not a git checkout): git_sha alone would not
    reproduce such a run's code."""
    try:
        out = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).parent,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return bool(out.stdout.strip()) if out.returncode == 0 else None


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found
