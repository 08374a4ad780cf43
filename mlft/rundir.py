"""The run directory: the reproducible record of one run.

<run>/.hydra/config.yaml     composable config that reproduces the run (`--config-path <run>/.hydra`)
<run>/.hydra/overrides.yaml  the command-line overrides
<run>/config.yaml            the resolved config
<run>/env.json               versions, git sha, devices, seeds, data fingerprints, model
<run>/metrics.json           metrics per split and language, means, training history
<run>/report.md              the per-language table (with the transfer gap when some languages are zero-shot)
<run>/metrics.csv            the same, one row per split and language
<run>/plots/                 a bar chart per split: the task metric per language
<run>/checkpoints/           step-N/ (resumable state) and best/
<run>/model/                 final model + tokenizer (save_pretrained, label maps)
<run>/predictions/           <split>-<lang>.jsonl
<run>/tensorboard/           training curves
"""

from __future__ import annotations

import hashlib
import itertools
import json
import platform
import shutil
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mlft.errors import RunDirError

# Anything here means the directory already holds a run.
RUN_MARKERS = (".hydra", "config.yaml", "env.json", "metrics.json", "checkpoints", "model", "report.md")
PACKAGES = ("mlft", "torch", "transformers", "datasets", "accelerate", "tokenizers", "hydra-core", "seqeval")


def claim(run_dir: Path, overwrite: bool, unique: bool = False) -> Path:
    """Takes `run_dir` for a new run and returns it.

    The directory must hold no earlier run; overwrite=true removes the earlier run. Creating
    `.hydra/` is the atomic step, so of two runs that start together only one gets the directory;
    with `unique` the other takes `<run_dir>-2` (then -3, ...) instead of failing.
    """
    candidate = run_dir
    for n in itertools.count(2):
        try:
            return _claim(candidate, overwrite)
        except RunDirError:
            if not unique:
                raise
        candidate = run_dir.with_name(f"{run_dir.name}-{n}")
    raise AssertionError("unreachable")


def _claim(run_dir: Path, overwrite: bool) -> Path:
    present = [name for name in RUN_MARKERS if (run_dir / name).exists()]
    if present and not overwrite:
        raise RunDirError(
            f"{run_dir}: already holds a run ({', '.join(present)}); nothing was changed. "
            f"Continue it with resume={run_dir}, choose another hydra.run.dir, or pass overwrite=true to replace it"
        )
    try:
        for name in present:
            path = run_dir / name
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / ".hydra").mkdir()
    except FileExistsError:
        raise RunDirError(f"{run_dir}: another run claimed this directory at the same moment") from None
    except OSError as err:
        raise RunDirError(f"{run_dir}: cannot create the run directory ({err.strerror or err})") from None
    return run_dir


def release(run_dir: Path) -> None:
    """Undoes a claim whose run never started: removes what mlft wrote, and the directory if that empties it."""
    for name in (*RUN_MARKERS, "tensorboard"):
        path = run_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    if run_dir.is_dir() and not any(run_dir.iterdir()):
        run_dir.rmdir()


def save_config(run_dir: Path, cfg: DictConfig, overrides: list[str], hydra_settings: dict[str, Any]) -> None:
    """Writes the resolved config and a composable copy that `mlft train --config-path` reproduces."""
    plain = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(plain, dict)
    plain.pop("hydra", None)
    plain["resume"] = None
    OmegaConf.save(OmegaConf.create(plain), run_dir / "config.yaml")
    hydra_dir = run_dir / ".hydra"
    hydra_dir.mkdir(exist_ok=True)
    composable = {**hydra_settings, **plain}
    OmegaConf.save(OmegaConf.create(composable), hydra_dir / "config.yaml")
    OmegaConf.save(OmegaConf.create(list(overrides)), hydra_dir / "overrides.yaml")


def fingerprint(source: str) -> str:
    """sha256 of a local file (first 16 hex digits), or the source itself for hub datasets."""
    path = Path(source)
    if not path.is_file():
        return source
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return f"sha256:{digest.hexdigest()[:16]}"


def git_sha() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def write_env(
    run_dir: Path, devices: dict[str, Any], seed: int, sources: dict[str, str], model: dict[str, Any]
) -> None:
    env = {
        "versions": versions(),
        "git_sha": git_sha(),
        "platform": platform.platform(),
        "devices": devices,
        "seed": seed,
        "data": {key: {"source": src, "fingerprint": fingerprint(src)} for key, src in sources.items()},
        "model": model,
    }
    (run_dir / "env.json").write_text(json.dumps(env, indent=2, ensure_ascii=False))
