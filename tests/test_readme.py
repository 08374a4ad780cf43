"""Every `mlft` command of the README's Examples block runs, in order, in a copy of the repository layout."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    examples = text.split("## Examples", 1)[1]
    block = re.search(r"```bash\n(.*?)```", examples, re.S).group(1)
    return [line for line in block.splitlines() if line.startswith("mlft ")]


def test_readme_has_the_two_setup_commands_first():
    text = (ROOT / "README.md").read_text()
    first_block = re.search(r"```bash\n(.*?)```", text, re.S).group(1)
    assert "make test" in first_block


@pytest.mark.slow
def test_readme_examples_run(tmp_path, tiny_models):
    shutil.copytree(ROOT / "tests" / "fixtures", tmp_path / "tests" / "fixtures")
    mlft = shutil.which("mlft") or f"{sys.executable} -m mlft"
    env = {**os.environ, "MODEL": str(tiny_models["unigram"])}
    commands = readme_commands()
    assert len(commands) >= 8
    for command in commands:
        result = subprocess.run(
            command.replace("mlft ", f"{mlft} ", 1),
            shell=True,
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, f"{command}\n{result.stderr[-3000:]}"
    assert (tmp_path / "preds.jsonl").exists()
    assert (tmp_path / "runs" / "ner-zh-again" / "metrics.json").exists()
