"""The package's shape: imports point downward only (cli -> commands -> components -> config -> errors) and no
two components import each other, directly or around a cycle. Lazy imports inside functions count too."""

from __future__ import annotations

import ast
from pathlib import Path

import mlft

SOURCE = Path(mlft.__file__).parent
# Rank of each top-level module or package: a module may import only from its own rank or below, and
# within a rank the imports between units form no cycle.
RANKS = {
    "errors": 0,
    "schema": 1,
    "config": 1,
    "validation": 1,
    "metric_spec": 1,
    "destinations": 1,
    "helptext": 1,
    "rundir": 2,
    "saved_config": 2,
    "models": 2,
    "data": 2,
    "tasks": 2,
    "engine": 2,
    "report": 2,
    "sweeps": 2,
    "search": 2,
    "commands": 3,
    "cli_train": 4,
    "cli": 4,
    "__main__": 4,
    "__init__": 4,
}


def unit(module: str) -> str:
    """mlft.engine.loop -> engine; mlft.cli -> cli."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports() -> dict[str, set[str]]:
    """Module name -> the mlft modules it imports (anywhere in its body)."""
    found: dict[str, set[str]] = {}
    for path in sorted(SOURCE.rglob("*.py")):
        name = ".".join(("mlft", *path.relative_to(SOURCE).with_suffix("").parts)).removesuffix(".__init__")
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mlft"):
                targets.add(node.module)
                targets |= {f"{node.module}.{a.name}" for a in node.names if (SOURCE / a.name).exists()}
            elif isinstance(node, ast.Import):
                targets |= {a.name for a in node.names if a.name.startswith("mlft")}
        found[name] = targets
    return found


def test_every_unit_has_a_rank():
    units = {unit(m) for m in imports()}
    assert units <= set(RANKS), units - set(RANKS)


def test_imports_point_downward():
    upward = []
    for module, targets in imports().items():
        for target in targets:
            if target == "mlft":
                continue
            if RANKS[unit(target)] > RANKS[unit(module)]:
                upward.append(f"{module} imports {target}")
    assert not upward, upward


def test_no_cycles_between_units_of_a_rank():
    edges: dict[str, set[str]] = {}
    for module, targets in imports().items():
        for target in targets:
            a, b = unit(module), unit(target)
            if target != "mlft" and a != b and RANKS[a] == RANKS[b]:
                edges.setdefault(a, set()).add(b)

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(n == goal or (n not in seen and reaches(n, goal, seen | {n})) for n in edges.get(start, ()))

    cycles = sorted(f"{a} -> {b} -> ... -> {a}" for a in edges for b in edges[a] if reaches(b, a, {b}))
    assert not cycles, cycles


def test_data_knows_formats_not_task_types():
    # Task-type knowledge lives in mlft/tasks/: data/ never names a task type or branches on one.
    for path in sorted((SOURCE / "data").glob("*.py")):
        text = path.read_text()
        for word in ("token_task", "token_classification", "sequence_classification"):
            assert word not in text, f"{path.name} mentions {word}"


def test_only_rundir_names_the_files_of_a_run():
    names = ('"config.yaml"', '"env.json"', '"languages.json"', '"metrics.json"', '"report.md"', '"checkpoints"')
    for path in sorted(SOURCE.rglob("*.py")):
        if path.name == "rundir.py":
            continue
        text = path.read_text()
        assert not [n for n in names if n in text], f"{path.relative_to(SOURCE)} spells a run file's name"


def test_only_task_types_name_model_outputs_and_example_fields():
    """The task owns the model boundary: outside mlft/tasks/ no module reads a model output by name (`.logits`,
    "start_logits") or names a field of a task type's examples. Exempt: the column names that headerless formats
    and packaged corpora give their records (a CoNLL file's tokens and tags, a text file's lines, a corpus's columns),
    SQuAD's keys in its reader, and "text" as the name of a file format."""
    from mlft.tasks import TASKS

    outputs = {"logits", "start_logits", "end_logits"}
    outputs |= {o.name for kind in TASKS.values() for o in getattr(kind, "model_outputs", ())}
    # ("id", QA's optional question id, is also a language code and a common word: not checked.)
    fields = {f for kind in TASKS.values() for f in (*kind.fields, *kind.optional_fields)} - {"id"}
    squad = {"question", "context", "answers"}  # SQuAD's own keys, which its reader keeps
    formats = {
        "data/readers.py": {"tokens", "tags", "text", *squad},
        "data/builtin.py": {"tokens", "tags", "text", "label"},
    }
    formats["config.py"] = formats["data/load.py"] = {"text"}  # data.format=text
    found = []
    for path in sorted(SOURCE.rglob("*.py")):
        where = str(path.relative_to(SOURCE))
        if where.startswith("tasks/"):
            continue
        tree = ast.parse(path.read_text(), str(path))
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and node.body
            and isinstance(node.body[0], ast.Expr)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in outputs:
                found.append(f"{where}:{node.lineno}: .{node.attr}")
            named = outputs | (fields - formats.get(where, set()))
            if isinstance(node, ast.Constant) and node.value in named and id(node) not in docstrings:
                found.append(f"{where}:{node.lineno}: {node.value!r}")
    assert not found, found


def test_only_the_run_directory_spells_the_names_of_its_folders():
    """stages/, evals/, plots/, model/, ... are named by mlft.rundir.RunDir, so a layout change is one edit."""
    import re

    spelled = re.compile(r'/ "(stages|evals|plots|checkpoints|model|adapter|export|predictions|tensorboard|\.hydra)"')
    found = [
        f"{path.relative_to(SOURCE)}:{number}"
        for path in sorted(SOURCE.rglob("*.py"))
        if path.name != "rundir.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if spelled.search(line) and "config_dir()" not in line  # configs/model/ is a config group, not a run's
    ]
    assert not found, found
