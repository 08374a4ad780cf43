"""The README's commands run: its Quickstart on copies of the fixtures and every command of its Examples block,
in order, in a scratch directory (CI), with a tiny model for `$MODEL` and for the quickstart's default one."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

from conftest import FIXTURES, ROOT


def commands(section: str) -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", text.split(f"## {section}", 1)[1], re.S).group(1)
    return [line for line in block.splitlines() if line.startswith("mlft ")]


def run(command: str, cwd, env) -> None:
    mlft = shutil.which("mlft") or f"{sys.executable} -m mlft"
    result = subprocess.run(
        command.replace("mlft ", f"{mlft} ", 1),
        shell=True,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, f"{command}\n{result.stderr[-3000:]}"


def test_readme_has_the_two_setup_commands_first():
    text = (ROOT / "README.md").read_text()
    first_block = re.search(r"```bash\n(.*?)```", text, re.S).group(1)
    assert first_block.splitlines()[0].startswith("make demo") and "make test" in first_block


def test_readme_is_a_guide_of_at_most_about_200_lines():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 210


@pytest.mark.slow
def test_readme_quickstart_runs_on_a_users_files(tmp_path, tiny_models):
    for split in ("train", "dev", "test"):
        shutil.copyfile(FIXTURES / "zh_ner" / f"{split}.conll", tmp_path / f"{split}.conll")
    shutil.copyfile(FIXTURES / "zh_texts.txt", tmp_path / "texts.txt")
    steps = commands("Quickstart")
    assert [c.split()[1] for c in steps] == ["train", "eval", "predict"]
    for command in steps:
        tiny = f" model={tiny_models['unigram']}" if command.startswith("mlft train") else ""
        run(command + tiny, tmp_path, os.environ)
    assert (tmp_path / "runs" / "my-ner" / "report.md").is_file() and (tmp_path / "predictions.jsonl").is_file()


@pytest.mark.slow
def test_readme_examples_run(tmp_path, tiny_models):
    shutil.copytree(ROOT / "tests" / "fixtures", tmp_path / "tests" / "fixtures")
    env = {**os.environ, "MODEL": str(tiny_models["unigram"])}
    steps = commands("Examples")
    assert len(steps) >= 8
    for command in steps:
        run(command, tmp_path, env)
    assert (tmp_path / "preds.jsonl").exists()
    assert (tmp_path / "runs" / "ner-zh-again" / "metrics.json").exists()
