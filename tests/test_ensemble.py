"""Ensembles of runs (runs=[a,b,...] in eval, predict, serve and export): probabilities averaged, NER decoded from the
averaged distributions, and runs that do not fit together refused with exit 2."""

from __future__ import annotations

import json

import pytest

from mlft.cli import main

from conftest import FIXTURES
from helpers import ZH_SENTIMENT, metrics, run_cli, train

SENT = FIXTURES / "sentiment"
SENTIMENT = ["task=sentiment", "lang=zh", "trainer.epochs=3", *ZH_SENTIMENT]


@pytest.fixture(scope="module")
def two_seeds(tmp_path_factory, tiny_models):
    root = tmp_path_factory.mktemp("ensemble")
    return [train(root / f"seed{s}", tiny_models["wordpiece"], *SENTIMENT, f"seed={s}") for s in (1, 2)]


def predict(tmp_path, name, *source):
    texts = tmp_path / "texts.txt"
    texts.write_text("".join(json.loads(x)["text"] + "\n" for x in (SENT / "zh_test.jsonl").read_text().splitlines()))
    out = tmp_path / f"{name}.jsonl"
    main(["predict", *source, f"input={texts}", f"output={out}"])
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_an_ensemble_predicts_the_mean_of_its_runs_probabilities(two_seeds, tmp_path):
    a, b = (predict(tmp_path, f"run{i}", f"run={run}") for i, run in enumerate(two_seeds))
    both = predict(tmp_path, "ensemble", f"runs=[{two_seeds[0]},{two_seeds[1]}]")
    assert any(x["scores"] != y["scores"] for x, y in zip(a, b))  # the seeds differ: the mean is not trivial
    for x, y, mean in zip(a, b, both):
        for label in ("neg", "pos"):
            assert mean["scores"][label] == pytest.approx((x["scores"][label] + y["scores"][label]) / 2, abs=1e-5)
        assert mean["label"] == max(mean["scores"], key=mean["scores"].get)


def test_eval_of_an_ensemble_reports_it_and_names_its_runs(two_seeds, tmp_path):
    out = tmp_path / "eval"
    main(["eval", f"runs=[{two_seeds[0]},{two_seeds[1]}]", f"out={out}"])
    m = json.loads((out / "metrics.json").read_text())
    assert m["ensemble"] == [str(r) for r in two_seeds] and m["test"]["zh"]["n"] == 12
    assert "eval of ensemble of" in (out / "report.md").read_text()
    twice = tmp_path / "twice"  # a run averaged with itself is the run
    main(["eval", f"runs=[{two_seeds[0]},{two_seeds[0]}]", f"out={twice}"])
    again = json.loads((twice / "metrics.json").read_text())
    assert again["test"]["zh"]["accuracy"] == metrics(two_seeds[0])["test"]["zh"]["accuracy"]


def test_a_ner_run_averaged_with_itself_predicts_what_it_predicts(ner_run, tmp_path):
    texts = FIXTURES / "zh_texts.txt"
    alone, twice = tmp_path / "alone.jsonl", tmp_path / "twice.jsonl"
    main(["predict", f"run={ner_run}", f"input={texts}", f"output={alone}"])
    main(["predict", f"runs=[{ner_run},{ner_run}]", f"input={texts}", f"output={twice}"])
    first = [json.loads(x) for x in alone.read_text().splitlines()]
    second = [json.loads(x) for x in twice.read_text().splitlines()]
    assert [r["entities"] for r in first] == [r["entities"] for r in second]


def test_runs_that_do_not_fit_together_are_refused(two_seeds, ner_run, tmp_path, tiny_models):
    other_tokenizer = train(tmp_path / "unigram", tiny_models["unigram"], *SENTIMENT)
    cases = [
        ([two_seeds[0], ner_run], "is a token_classification run"),
        ([two_seeds[0], other_tokenizer], "has another tokenizer than"),
        ([two_seeds[0]], "an ensemble needs at least 2 runs"),
    ]
    for runs, message in cases:
        result = run_cli("eval", f"runs=[{','.join(map(str, runs))}]", f"out={tmp_path / 'out'}")
        assert result.returncode == 2 and message in result.stderr, result.stderr[-1500:]
    result = run_cli("eval", f"run={two_seeds[0]}", f"runs=[{two_seeds[1]}]")
    assert result.returncode == 2 and "run, runs: give exactly one" in result.stderr


def test_labels_in_another_order_are_refused():
    from mlft.models.ensemble import Member, member_problems

    a = Member("a", "sequence_classification", False, ["neg", "pos"], {"x": 0}, False)
    b = Member("b", "sequence_classification", False, ["pos", "neg"], {"x": 0}, False)
    routed = Member("c", "sequence_classification", False, ["neg", "pos"], {"x": 0}, True)
    assert member_problems([a, b]) == ["runs: b has labels pos, neg; a has neg, pos"]
    assert member_problems([a, routed]) == ["runs: c has language adapters, which an ensemble cannot route yet"]
    assert member_problems([a, a]) == []


def test_an_ensemble_exports_as_one_onnx_graph_that_predicts_the_mean(two_seeds, tmp_path, capsys):
    both = predict(tmp_path, "ensemble", f"runs=[{two_seeds[0]},{two_seeds[1]}]")
    out = tmp_path / "export"
    main(["export", f"runs=[{two_seeds[0]},{two_seeds[1]}]", "format=onnx", f"out={out}"])
    assert "averaging the probabilities of 2 runs" in (out / "README.md").read_text()
    exported = predict(tmp_path, "exported", f"model={out}")
    for x, y in zip(both, exported):
        assert x["label"] == y["label"]
        for label in ("neg", "pos"):
            assert y["scores"][label] == pytest.approx(x["scores"][label], abs=1e-4)
    runs = f"runs=[{two_seeds[0]},{two_seeds[1]}]"
    result = run_cli("export", runs, "format=hf", "fuse=true")
    assert result.returncode == 2
    for message in ("format: hf holds one model, not an ensemble", "out: required with runs=", "fuse: graph fusion"):
        assert message in result.stderr, result.stderr[-1500:]
