"""The command line as users meet it: help, exit codes, no tracebacks, sweeps."""

from __future__ import annotations

import yaml

from conftest import FIXTURES
from helpers import FAST, ZH_NER, run_cli


def test_help_lists_subcommands():
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ("train", "eval", "predict", "export"):
        assert command in result.stdout


def test_train_help_lists_groups_and_options():
    result = run_cli("train", "--help")
    assert result.returncode == 0
    assert "task: amazon_reviews, msra_ner_hub, multilabel, ner, ner_pd98, ner_shared, nli" in result.stdout
    assert "model: bert_base_chinese, hf, mbert, me5_small" in result.stdout


def test_config_errors_exit_2_without_traceback(tmp_path):
    result = run_cli("train", "task=nerx", "optimizer.lr=abc", "trainer.bogus=1", f"run_root={tmp_path}")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "task: 'nerx' is not a task preset" in result.stderr
    assert "optimizer.lr: expected float, got 'abc'" in result.stderr
    assert "trainer.bogus: unknown key" in result.stderr
    assert not any(tmp_path.iterdir())  # nothing was created


def test_data_errors_exit_2_with_file_and_line(tmp_path, tiny_models):
    bad = tmp_path / "bad.conll"
    bad.write_text("张\tB-PER\n伟\tI-LOC\n")
    result = run_cli(
        "train", f"model={tiny_models['unigram']}", f"data.train={bad}", f"hydra.run.dir={tmp_path / 'r'}"
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert f"{bad}:2:" in result.stderr


def test_eval_of_a_missing_run_exits_2(tmp_path):
    result = run_cli("eval", f"run={tmp_path}")
    assert result.returncode == 2 and "not a run directory" in result.stderr


def test_sweep_runs_each_job_as_an_ordinary_run_directory(tmp_path, tiny_models):
    result = run_cli(
        "train",
        "-m",
        f"model={tiny_models['unigram']}",
        "optimizer.lr=1e-3,5e-3",
        "seed=1,2",
        "trainer.epochs=1",
        *FAST[:2],
        *ZH_NER[:2],
        f"hydra.sweep.dir={tmp_path}",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    jobs = sorted(p for p in tmp_path.iterdir() if p.is_dir())
    assert len(jobs) == 4
    for job in jobs:
        assert (job / "metrics.json").exists()
        assert (job / ".hydra" / "overrides.yaml").exists()
    lrs = {yaml.safe_load((job / "config.yaml").read_text())["optimizer"]["lr"] for job in jobs}
    assert lrs == {0.001, 0.005}
    # Job folders are named after the swept keys only (every override made names pass 255 bytes).
    names = [job.name.split("_", 1)[1].split(",") for job in jobs]
    assert all([n.split("=")[0] for n in name] == ["optimizer.lr", "seed"] for name in names), names


def test_python_dash_m_mlft_trains(tmp_path, tiny_models):
    result = run_cli(
        "train",
        f"model={tiny_models['wordpiece']}",
        "task=sentiment",
        "lang=en",
        "trainer.epochs=1",
        *FAST,
        f"data.train={FIXTURES / 'sentiment' / 'en_train.jsonl'}",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "run" / "model" / "model.safetensors").exists()


def test_hydra_flags_with_values_work_after_the_overrides(tmp_path, tiny_models):
    # Hydra accepts `--cfg job` anywhere; its value must not be read as an override.
    result = run_cli("train", "task=topic", "lang=en_to_all", f"model={tiny_models['wordpiece']}", "--cfg", "job")
    assert result.returncode == 0, result.stderr
    printed = yaml.safe_load(result.stdout)
    assert printed["task"]["name"] == "topic" and printed["lang"]["name"] == "en_to_all"
    result = run_cli("train", "--info", "defaults", "task=topic")
    assert result.returncode == 0 and "task/topic" in result.stdout, result.stderr
