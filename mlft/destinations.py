"""Where a command writes: checked before the work starts, and left readable to others as the umask allows.

An hour of training or prediction must not end in a traceback because its output cannot be written, and a write
must never land outside the folder it was meant for, nor replace what the command reads.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from mlft.errors import ConfigError


def check_writable(path: Path, key: str) -> None:
    """Raises ConfigError (naming `key`) when `path` cannot be written.

    An existing folder must take new entries; an existing file must be replaceable (its folder takes
    new entries); a path still to be created needs its nearest existing ancestor to be a folder that
    takes new entries. access() applies permissions as the kernel will and also reports read-only file systems.
    """
    target = path.absolute()
    if target.is_dir():
        folder = target
    elif target.exists():
        folder = target.parent
    else:
        folder = target.parent
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        if not folder.is_dir():
            raise ConfigError(f"{key}: cannot create {path}: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"{key}: cannot write in {folder} (permission denied or a read-only file system)")
    try:  # access() says yes to root on pseudo-file systems (/proc) where nothing can be created: try it
        tempfile.TemporaryDirectory(dir=folder, prefix=".mlft-probe-").cleanup()
    except OSError as err:
        raise ConfigError(f"{key}: cannot create anything in {folder} ({err.strerror or err})") from None


def umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def share(path: Path) -> None:
    """Gives the files mlft wrote under `path` the permissions the user's umask allows: safetensors writes its
    files 0600, which locks other users of a shared run, export or cache out of the weights alone."""
    mask = umask()
    items = [path, *path.rglob("*")] if path.is_dir() else [path]
    for item in items:
        if item.is_symlink():
            continue
        try:
            os.chmod(item, (0o777 if item.is_dir() else 0o666) & ~mask)
        except OSError:  # another owner's file in a shared folder stays as it is
            continue


def check_within(path: Path, root: Path, key: str) -> None:
    """Refuses a path inside `root` as written that leads outside it through a link (a run's `evals/` or `export/`
    pointing elsewhere would make the command write there)."""
    try:
        path.absolute().relative_to(root.absolute())
    except ValueError:
        return  # not inside `root` as written: where it goes is the user's choice
    real, real_root = path.resolve(), root.resolve()
    if real != real_root and real_root not in real.parents:
        raise ConfigError(f"{key}: {path} leads outside {root} (through a link, to {real}); nothing was written")


def check_not_read(
    path: Path, reads: list[tuple[str, Path]], key: str, folders: list[tuple[str, Path]] | None = None
) -> None:
    """Refuses an output that is, holds or lies inside something the command reads (`reads`: what and where), or
    that is or holds one of `folders` (which may take new entries: a run's export/ folder)."""
    target = path.resolve()
    for what, source in reads + (folders or []):
        real = source.resolve()
        inside = real in target.parents and (what, source) in reads
        if target == real or inside or target in real.parents:
            raise ConfigError(
                f"{key}: {path} would replace {what} {source}, which this command reads; nothing was written"
            )
