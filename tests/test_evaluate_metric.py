"""Metrics from `evaluate` modules (task.metric=evaluate:<module>[:<key>], task.evaluate): local modules score
beside the built-in metrics, can select checkpoints, reach eval and the reports; bad ones are config errors."""

from __future__ import annotations

import json

import pytest
import yaml
from sklearn.metrics import cohen_kappa_score

from mlft.cli import main

from conftest import FIXTURES
from helpers import ZH_NER, ZH_SENTIMENT, cli_error, metrics, run_cli, train

METRICS = FIXTURES / "metrics"
SENTIMENT = ["task=sentiment", "lang=zh", "trainer.epochs=3", *ZH_SENTIMENT]
GRANT = "task.trust_metric_code=true"
"""A metric module is Python code: it runs only when the command line grants it."""


def predictions(run, name):
    return [json.loads(line) for line in (run / "predictions" / name).read_text().splitlines()]


def test_a_local_module_selects_checkpoints_and_reaches_reports_and_eval(tmp_path, tiny_models):
    run = train(
        tmp_path / "run", tiny_models["wordpiece"], *SENTIMENT, f"task.metric=evaluate:{METRICS / 'kappa'}", GRANT
    )
    m = metrics(run)
    rows = predictions(run, "test-zh.jsonl")
    expected = cohen_kappa_score([r["label"] for r in rows], [r["prediction"]["label"] for r in rows])
    assert m["test"]["zh"]["kappa"] == pytest.approx(expected)  # the module scored the run's own predictions
    assert m["test"]["zh"]["accuracy"] > 0.0  # the built-in metrics stay beside it
    assert m["selection"]["metric"] == "kappa" and m["selection"]["best_score"] == max(
        h["score"] for h in m["history"]
    )
    saved = yaml.safe_load((run / "config.yaml").read_text())["task"]
    assert saved["metric"] == "kappa" and saved["evaluate"] == str((METRICS / "kappa").resolve())
    assert "kappa |" in (run / "report.md").read_text().splitlines()[2]  # a column of the table
    out = tmp_path / "eval"
    main(["eval", f"run={run}", f"out={out}", f"evaluate={METRICS / 'kappa'}"])  # named again: it is code
    assert json.loads((out / "metrics.json").read_text())["test"]["zh"]["kappa"] == pytest.approx(expected)
    main(["report", f"runs=[{run}]", f"out={tmp_path / 'report'}"])  # ranks by the numbers the run recorded
    assert json.loads((tmp_path / "report" / "report.json").read_text())["metric"] == "kappa"


def test_a_saved_config_never_runs_its_evaluate_module_unless_named_again(tmp_path, tiny_models, capsys):
    run = train(tmp_path / "run", tiny_models["wordpiece"], *SENTIMENT[:3], *SENTIMENT[3:5], "trainer.epochs=1",
                f"task.evaluate={METRICS / 'kappa'}", GRANT)  # fmt: skip
    out = tmp_path / "eval"
    main(["eval", f"run={run}", f"out={out}"])
    scored = json.loads((out / "metrics.json").read_text())["dev"]["zh"]
    assert "kappa" not in scored and "accuracy" in scored
    err = cli_error(capsys, "train", "--config-path", str(run / ".hydra"), "--config-name", "config",
                    f"hydra.run.dir={tmp_path / 'again'}")  # fmt: skip
    assert "task.evaluate:" in err and "an evaluate module is Python code and runs only when the command line" in err
    assert "add task.trust_metric_code=true" in err


def test_a_module_with_several_numbers_reports_each_and_selects_the_named_key(tmp_path, tiny_models):
    script = METRICS / "sentence_match.py"
    run = train(
        tmp_path / "run",
        tiny_models["unigram"],
        "task=ner",
        "lang=zh",
        "trainer.epochs=2",
        *ZH_NER,
        f"task.metric=evaluate:{script}:tags",
        GRANT,
    )
    test = metrics(run)["test"]["zh"]
    rows = predictions(run, "test-zh.jsonl")
    pairs = [(p, g) for r in rows for p, g in zip(r["prediction"]["tags"], r["tags"])]
    assert test["sentence_match.tags"] == pytest.approx(sum(p == g for p, g in pairs) / len(pairs))
    assert test["sentence_match.tags"] == pytest.approx(test["accuracy"])  # token accuracy, computed twice
    assert test["sentence_match.sentences"] == len(rows) == test["n"]
    assert 0.0 <= test["sentence_match.exact"] <= 1.0
    assert metrics(run)["selection"]["metric"] == "sentence_match.tags"


@pytest.mark.parametrize(
    "overrides,message",
    [
        ([f"task.metric=evaluate:{METRICS / 'kappa'}:agreement", GRANT], "'kappa.agreement' is not reported"),
        (["task.metric=evaluate:f1", GRANT], "'f1' is the built-in metric of that name"),
        (["task.higher_is_better=false"], "task.higher_is_better: only for a metric of task.evaluate"),
        (["task.metric=perplexity"], "allowed: accuracy, macro_f1, micro_f1, or evaluate:<module>"),
    ],
)
def test_bad_metric_settings_are_config_errors(tmp_path, tiny_models, overrides, message, capsys):
    task = ["task=ner", *ZH_NER] if "f1" in overrides[0] else SENTIMENT
    run = tmp_path / "run"
    err = cli_error(capsys, "train", f"model={tiny_models['wordpiece']}", f"hydra.run.dir={run}", *task, *overrides)
    assert message in err
    assert not (run / "model").exists()


def test_an_unknown_hub_module_offline_is_a_config_error(tmp_path, tiny_models):
    result = run_cli(
        "train",
        f"model={tiny_models['wordpiece']}",
        f"hydra.run.dir={tmp_path / 'run'}",
        *SENTIMENT,
        "task.metric=evaluate:mlft-no-such-metric",
        GRANT,
        env={"HF_HUB_OFFLINE": "1", "HF_HUB_DOWNLOAD_TIMEOUT": "5"},
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "cannot load the evaluate module 'mlft-no-such-metric'" in result.stderr
    assert "offline, give the path of a local module script" in result.stderr


def test_masked_lm_cannot_take_an_evaluate_module(tmp_path, tiny_models, capsys):
    text = tmp_path / "text.txt"
    text.write_text("some text\n" * 8)
    err = cli_error(
        capsys, "train", f"model={tiny_models['wordpiece']}", "task=mlm", "lang=en", f"data.train={text}",
        f"task.evaluate={METRICS / 'kappa'}", GRANT, f"hydra.run.dir={tmp_path / 'run'}",
    )  # fmt: skip
    assert "task.evaluate: masked_lm predictions cannot go to an evaluate module" in err


def test_a_module_that_raises_when_eval_scores_is_exit_2_naming_it(sentiment_run, tmp_path, capsys):
    broken = tmp_path / "broken"
    broken.mkdir()
    source = (METRICS / "kappa" / "kappa.py").read_text()
    (broken / "broken.py").write_text(source.replace("return {", "raise RuntimeError('boom')\n        return {"))
    err = cli_error(capsys, "eval", f"run={sentiment_run}", f"evaluate={broken}", f"out={tmp_path / 'eval'}")
    assert "evaluate: the module 'broken' failed (RuntimeError: boom)" in err and "Traceback" not in err
    assert not (tmp_path / "eval").exists()
