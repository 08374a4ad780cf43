"""No code path unpickles files or runs a model's own code unless the user asks for it."""

from __future__ import annotations

import ast
from pathlib import Path

import mlft
from mlft.cli import config_dir
from mlft.config import ModelConfig

SOURCE = Path(mlft.__file__).parent


def calls(tree: ast.AST) -> list[ast.Call]:
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call)]


def dotted(func: ast.expr) -> str:
    parts = []
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    if isinstance(func, ast.Name):
        parts.append(func.id)
    return ".".join(reversed(parts))


def keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def test_no_unsafe_deserialisation_anywhere_in_the_package():
    problems = []
    for path in sorted(SOURCE.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for call in calls(tree):
            name, where = dotted(call.func), f"{path.relative_to(SOURCE)}:{call.lineno}"
            if name.split(".")[-1] in ("loads", "load") and name.split(".")[0] in ("pickle", "marshal", "dill"):
                problems.append(f"{where}: {name}")
            if name.endswith("torch.load") or name == "load" and keyword(call, "map_location") is not None:
                value = keyword(call, "weights_only")
                if not (isinstance(value, ast.Constant) and value.value is True):
                    problems.append(f"{where}: {name} without weights_only=True")
            if name in ("yaml.load", "yaml.unsafe_load", "eval", "exec"):
                problems.append(f"{where}: {name}")
            if name.endswith("register_for_checkpointing"):  # Accelerate reloads these with weights_only=False
                problems.append(f"{where}: {name}")
            value = keyword(call, "trust_remote_code")
            if isinstance(value, ast.Constant) and value.value is True:
                problems.append(f"{where}: trust_remote_code=True")
    assert not problems, problems


def test_remote_code_is_off_unless_the_user_sets_it():
    assert ModelConfig(name="x", name_or_path="y").trust_remote_code is False
    presets = sorted((config_dir() / "model").glob("*.yaml"))
    assert presets and all("trust_remote_code: false" in p.read_text() for p in presets)
