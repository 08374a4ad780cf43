"""The manifest of an export folder: what `mlft export` wrote there, listed last, so that `overwrite=true` replaces a
folder only when every file in it is one mlft wrote (never a run, a model folder or a folder of the user's)."""

from __future__ import annotations

import json
from pathlib import Path

from mlft.errors import ConfigError

MANIFEST = "mlft-export.json"


def write_manifest(folder: Path, fmt: str, artifact: str) -> None:
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    record = {"format": fmt, "artifact": artifact, "files": files}
    (folder / MANIFEST).write_text(json.dumps(record, indent=1, ensure_ascii=False))


def foreign_files(folder: Path) -> list[str] | None:
    """The files in `folder` its manifest does not list (empty: an export mlft wrote); None without a manifest."""
    try:
        listed = set(json.loads((folder / MANIFEST).read_text())["files"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    present = {str(p.relative_to(folder)) for p in folder.rglob("*") if not p.is_dir() or p.is_symlink()}
    return sorted(present - listed - {MANIFEST})


def check_replaceable(folder: Path, key: str) -> None:
    """Raises ConfigError unless `folder` is an export folder that overwrite=true may replace."""
    if folder.is_symlink():
        raise ConfigError(
            f"{key}: {folder} is a link; overwrite=true replaces only an export folder itself; nothing was written"
        )
    if not folder.is_dir():
        raise ConfigError(f"{key}: {folder} is a file, not an export folder; nothing was written (choose another one)")
    foreign = foreign_files(folder)
    if foreign is None:
        raise ConfigError(
            f"{key}: {folder} is not an export folder mlft wrote (no {MANIFEST}); overwrite=true replaces only those: "
            f"nothing was written (choose another {key}, or delete the folder yourself)"
        )
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise ConfigError(
            f"{key}: {folder} holds files mlft did not write there ({shown}); nothing was written (move them, or "
            f"choose another {key})"
        )
