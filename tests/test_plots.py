"""The charts of a run and of an evaluation: learning curves, confusion matrix, per-type scores, embedded in
report.md. Each PNG is opened and its pixels checked, so an empty canvas or a chart of the wrong data fails."""

from __future__ import annotations

import numpy as np
from matplotlib.image import imread

from mlft.cli import main
from mlft.report.plots import class_scores, confusion, curves

from helpers import metrics


def drawn(path) -> np.ndarray:
    """The image's RGB pixels, after checking it is a chart and not a blank canvas."""
    image = imread(path)[..., :3]
    assert image.shape[0] > 100 and image.shape[1] > 100
    assert image.std() > 0.05, f"{path} is (nearly) blank"
    return image


def test_a_ner_run_draws_learning_curves_and_per_type_scores_and_embeds_them(ner_run):
    m = metrics(ner_run)
    losses = m["losses"]
    assert [x["step"] for x in losses] == list(range(10, 48, 10))  # trainer.log_every=10 of 48 steps
    assert losses[-1]["loss"] < losses[0]["loss"]  # the curve is the run's: it learns
    plots = {p.name for p in (ner_run / "plots").iterdir()}
    assert plots == {"dev-f1.png", "test-f1.png", "learning-curves.png", "per-type-test-zh.png"}
    for name in plots:
        drawn(ner_run / "plots" / name)
    report = (ner_run / "report.md").read_text()
    plots_section = report.split("## Plots")[1]
    assert plots_section.index("plots/learning-curves.png") < plots_section.index("plots/per-type-test-zh.png")
    assert "![test-f1](plots/test-f1.png)" in plots_section


def test_a_classification_run_draws_its_confusion_matrix_and_eval_draws_one_too(sentiment_run, tmp_path):
    drawn(sentiment_run / "plots" / "confusion-test-zh.png")
    assert "plots/confusion-test-zh.png" in (sentiment_run / "report.md").read_text()
    out = tmp_path / "eval"
    main(["eval", f"run={sentiment_run}", f"out={out}"])
    assert {p.name for p in (out / "plots").iterdir()} >= {"confusion-test-zh.png", "test-accuracy.png"}
    assert "![confusion-test-zh](plots/confusion-test-zh.png)" in (out / "report.md").read_text()


def test_confusion_colours_follow_the_matrix(tmp_path):
    """A diagonal matrix and its transpose-swap differ where the cells are: the drawing reads the data."""
    confusion(tmp_path / "right.png", ["neg", "pos"], [[9, 1], [0, 10]], "right")
    confusion(tmp_path / "wrong.png", ["neg", "pos"], [[1, 9], [10, 0]], "wrong")
    right, wrong = drawn(tmp_path / "right.png"), drawn(tmp_path / "wrong.png")
    assert right.shape == wrong.shape and np.abs(right - wrong).mean() > 0.01


def test_class_scores_and_curves_draw_each_series(tmp_path):
    scores = {"PER": {"precision": 0.9, "recall": 0.8, "f1": 0.85, "support": 12}}
    class_scores(tmp_path / "one.png", scores, "one type")
    class_scores(tmp_path / "two.png", {**scores, "LOC": {"precision": 0.2, "recall": 0.1, "f1": 0.13}}, "two")
    one, two = drawn(tmp_path / "one.png"), drawn(tmp_path / "two.png")
    assert one.shape == two.shape and np.abs(one - two).mean() > 0.01  # the second type's bars are drawn
    curves(tmp_path / "c.png", [("loss", {"train": [(1, 2.0), (2, 1.0)]}), ("dev f1", {"zh": [(2, 0.5)]})], "t")
    assert drawn(tmp_path / "c.png").shape[1] > 2 * imread(tmp_path / "one.png").shape[1] * 0.9  # two panels
