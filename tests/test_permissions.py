"""Files and folders mlft cannot read or write: a clear exit 2 before any work, and outputs others can read.

Tests run as root on CI machines, and root ignores file permissions. The commands under test run with root's
two permission-override capabilities dropped (`setpriv`), so that modes apply to them as to any user.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import FIXTURES, ROOT
from helpers import FAST, ZH_NER

CAPS = "-dac_override,-dac_read_search"


def run_as_user(*args: str) -> subprocess.CompletedProcess:
    """`python -m mlft ...` for which file permissions apply (root's overrides dropped when running as root)."""
    prefix: list[str] = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: file permissions cannot be made to apply")
        prefix = [setpriv, f"--inh-caps={CAPS}", f"--bounding-set={CAPS}", "--"]
    command = [*prefix, sys.executable, "-m", "mlft", *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=600)


def read_only(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o555)
    return path


def assert_exit_2(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


def test_an_unreadable_data_file_is_named(tmp_path, tiny_models):
    data = tmp_path / "train.conll"
    shutil.copyfile(FIXTURES / "zh_ner" / "train.conll", data)
    data.chmod(0o000)
    result = run_as_user(
        "train", f"model={tiny_models['unigram']}", f"data.train={data}", f"hydra.run.dir={tmp_path}/r"
    )
    assert_exit_2(result, f"{data}: cannot read (Permission denied)")
    assert not (tmp_path / "r").exists()


def test_a_read_only_run_root_is_refused_before_anything_is_made(tmp_path, tiny_models):
    root = read_only(tmp_path / "runs")
    args = [f"model={tiny_models['unigram']}", *ZH_NER, *FAST, f"run_root={root}"]
    assert_exit_2(run_as_user("train", *args), "hydra.run.dir: cannot write in", str(root))
    assert_exit_2(run_as_user("train", "-m", *args, "seed=1,2"), "hydra.sweep.dir: cannot write in")
    assert not any(root.iterdir())


def test_read_only_destinations_of_export_predict_and_eval(tmp_path, ner_run):
    run = tmp_path / "run"
    shutil.copytree(ner_run, run)
    texts = tmp_path / "in.txt"
    texts.write_text("张伟在北京工作。\n")
    locked = read_only(tmp_path / "locked")
    assert_exit_2(run_as_user("export", f"run={run}", f"out={locked}/hf"), "out: cannot write in")
    result = run_as_user("predict", f"run={run}", f"input={texts}", f"output={locked}/p.jsonl")
    assert_exit_2(result, "output: cannot write in")
    run.chmod(0o555)  # a run someone else trained, in a folder this user cannot write to
    try:
        assert_exit_2(run_as_user("eval", f"run={run}"), "out: cannot write in", str(run))
        result = run_as_user("eval", f"run={run}", f"out={tmp_path}/eval")  # the way out the message names
        assert result.returncode == 0, result.stderr
    finally:
        run.chmod(0o755)
    assert (tmp_path / "eval" / "metrics.json").is_file() and not any(locked.iterdir())


def test_a_predict_output_in_a_folder_not_made_yet_is_written(tmp_path, ner_run):
    texts = tmp_path / "in.txt"
    texts.write_text("张伟在北京工作。\n")
    result = run_as_user("predict", f"run={ner_run}", f"input={texts}", f"output={tmp_path}/new/deeper/p.jsonl")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "new" / "deeper" / "p.jsonl").read_text().count("\n") == 1


def test_an_unreadable_model_file_is_reported_not_a_traceback(tmp_path, ner_run):
    run = tmp_path / "run"
    shutil.copytree(ner_run, run)
    (run / "model" / "model.safetensors").chmod(0o000)
    assert_exit_2(run_as_user("eval", f"run={run}"), f"{run / 'model'}: cannot load the model")


def modes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): stat.S_IMODE(p.stat().st_mode) for p in folder.rglob("*") if p.is_file()}


def test_weights_are_readable_by_others_as_the_umask_allows(ner_run, tmp_path):
    from mlft.cli import main
    from mlft.destinations import umask

    # Every file of the session's run, weights included, has the mode the umask gives any new file (0644 for 022).
    expected = 0o666 & ~umask()
    for folder in ("model", "checkpoints"):
        assert set(modes(ner_run / folder).values()) == {expected}, modes(ner_run / folder)
    main(["export", f"run={ner_run}", f"out={tmp_path / 'hf'}"])
    assert set(modes(tmp_path / "hf").values()) == {expected}
    old = os.umask(0o027)  # a stricter umask is honoured, not widened
    try:
        main(["export", f"run={ner_run}", f"out={tmp_path / 'group'}"])
    finally:
        os.umask(old)
    assert set(modes(tmp_path / "group").values()) == {0o640}
