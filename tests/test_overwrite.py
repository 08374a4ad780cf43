"""overwrite=true replaces only what mlft itself wrote there before: an earlier run (train), an export folder whose
manifest lists every file in it (export), a predictions file (predict). Never a run directory or a folder of the
user's, never what the command reads, never through a link out of a run. Each refusal is exit 2 naming the path,
with every file as it was (a snapshot of the whole folder, links included)."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from mlft.cli import main

from conftest import FIXTURES
from helpers import cli_error, snapshot

TEXTS = "张伟在北京工作。\n"


def put(path: Path, content: str = "mine\n") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)


def link(path: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    put(target / "kept.txt")
    path.symlink_to(target, target_is_directory=True)


# (id, set-up of the folder {d} beside the copied run {d}/run, argv, pattern the message must match)
CASES: list[tuple[str, Callable[[Path], None], list[str], str]] = [
    ("export-out-is-the-run", lambda d: None, ["export", "run={d}/run", "out={d}/run"], r"would replace the run"),
    ("export-out-holds-the-run", lambda d: None, ["export", "run={d}/run", "out={d}"], r"would replace the run"),
    ("export-out-is-the-model", lambda d: None, ["export", "run={d}/run", "out={d}/run/model"], r"no mlft-export"),
    (
        "export-out-holds-user-files",
        lambda d: put(d / "mine" / "notes.txt"),
        ["export", "run={d}/run", "out={d}/mine"],
        r"out: .*mine is not an export folder mlft wrote",
    ),
    (
        "export-out-is-an-export-plus-user-files",
        lambda d: (shutil.copytree(d / "run" / "export" / "hf", d / "exp"), put(d / "exp" / "notes.txt")),
        ["export", "run={d}/run", "out={d}/exp"],
        r"out: .*exp holds files mlft did not write there \(notes\.txt\)",
    ),
    ("export-out-is-a-file", lambda d: put(d / "afile"), ["export", "run={d}/run", "out={d}/afile"], r"is a file"),
    (
        "export-out-is-a-link-to-a-folder",
        lambda d: link(d / "to-folder", d / "elsewhere"),
        ["export", "run={d}/run", "out={d}/to-folder"],
        r"out: .*to-folder is a link",
    ),
    (
        "export-folder-of-the-run-leads-out",
        lambda d: (shutil.rmtree(d / "run" / "export"), link(d / "run" / "export", d / "elsewhere")),
        ["export", "run={d}/run", "format=hf"],
        r"out: .*leads outside .*run \(through a link",
    ),
    (
        "eval-folder-of-the-run-leads-out",
        lambda d: link(d / "run" / "evals", d / "elsewhere"),
        ["eval", "run={d}/run"],
        r"out: .*evals leads outside .*run \(through a link",
    ),
    ("eval-out-is-a-file", lambda d: put(d / "afile"), ["eval", "run={d}/run", "out={d}/afile"], r"out: .*is a file"),
    (
        "predict-output-is-the-runs-config",
        lambda d: None,
        ["predict", "run={d}/run", "input={d}/in.txt", "output={d}/run/config.yaml"],
        r"output: .*config\.yaml would replace the run",
    ),
    (
        "predict-output-is-the-input",
        lambda d: None,
        ["predict", "run={d}/run", "input={d}/in.txt", "output={d}/in.txt"],
        r"output: .*in\.txt would replace the input",
    ),
    (
        "predict-output-inside-the-export",
        lambda d: None,
        ["predict", "model={d}/run/export/hf", "input={d}/in.txt", "output={d}/run/export/hf/README.md"],
        r"would replace the exported model",
    ),
    (
        "predict-output-is-not-predictions",
        lambda d: put(d / "notes.md", "# my notes\n"),
        ["predict", "run={d}/run", "input={d}/in.txt", "output={d}/notes.md"],
        r"output: .*notes\.md is not a predictions file",
    ),
    (
        "train-into-a-folder-without-a-run",
        lambda d: (put(d / "project" / "model" / "weights.bin"), put(d / "project" / "report.md")),
        ["train", "task=ner", "lang=zh", "model={model}", "data.train={train}", "hydra.run.dir={d}/project"],
        r"project: holds model, report\.md but no mlft run",
    ),
    (
        "train-over-the-run-it-starts-from",
        lambda d: None,
        ["train", "task=ner", "lang=zh", "model={d}/run/model", "data.train={train}", "hydra.run.dir={d}/run"],
        r"model\.name_or_path: .*run/model is inside .*run, whose earlier run overwrite=true would delete",
    ),
    (
        "train-over-the-run-its-data-is-in",
        lambda d: shutil.copy(FIXTURES / "zh_ner" / "train.conll", d / "run" / "checkpoints" / "train.conll"),
        ["train", "task=ner", "lang=zh", "model={model}", "data.train={d}/run/checkpoints/train.conll"]
        + ["hydra.run.dir={d}/run"],
        r"data\.train: .* is inside",
    ),
]


@pytest.fixture
def folder(tmp_path, ner_run) -> Path:
    """{d}: a copy of a finished run with an earlier HF export, and a text file to predict."""
    shutil.copytree(ner_run, tmp_path / "run")
    main(["export", f"run={tmp_path / 'run'}", "max_drop=100"])  # run/export/hf
    put(tmp_path / "in.txt", TEXTS)
    return tmp_path


@pytest.mark.parametrize("setup,argv,pattern", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_overwrite_refuses_what_mlft_did_not_write(folder, tiny_models, capsys, setup, argv, pattern):
    setup(folder)
    before = snapshot(folder)
    train = FIXTURES / "zh_ner" / "train.conll"
    args = [a.format(d=folder, model=tiny_models["unigram"], train=train) for a in argv]
    args += ["overwrite=true"] if args[0] != "eval" else []  # eval never replaces: its out must be empty
    err = cli_error(capsys, *args)
    assert re.search(pattern, err), err
    assert "Traceback" not in err
    assert snapshot(folder) == before


def test_overwrite_replaces_what_mlft_wrote_before(folder, tiny_models, capsys):
    export = folder / "run" / "export" / "hf"
    manifest = json.loads((export / "mlft-export.json").read_text())
    assert manifest["format"] == "hf" and "model.safetensors" in manifest["files"]
    (export / "model.safetensors").write_bytes(b"stale")
    main(["export", f"run={folder / 'run'}", "max_drop=100", "overwrite=true"])
    assert (export / "model.safetensors").read_bytes() != b"stale"
    assert not [p for p in export.parent.iterdir() if p.name.startswith(".")]  # no temporary folder left
    output = folder / "out.jsonl"
    put(output, '{"text": "old", "entities": []}\n')
    main(["predict", f"run={folder / 'run'}", f"input={folder / 'in.txt'}", f"output={output}", "overwrite=true"])
    assert json.loads(output.read_text())["text"] == TEXTS.strip()
    train = FIXTURES / "zh_ner" / "train.conll"
    run = folder / "run"
    main(["train", "task=ner", "lang=zh", f"model={tiny_models['unigram']}", f"data.train={train}"]
         + [f"hydra.run.dir={run}", "trainer.epochs=1", "trainer.progress=false", "overwrite=true"])  # fmt: skip
    assert json.loads((run / "metrics.json").read_text())["selection"]["strategy"] == "source_dev"
    assert not (run / "export").exists() or (run / "export" / "hf").is_dir()  # only the run's own files replaced
