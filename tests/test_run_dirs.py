"""Runs that start together never share a directory; an explicitly named directory is never renamed."""

from __future__ import annotations

import json
import multiprocessing
import shutil
from datetime import datetime
from pathlib import Path

import pytest

from mlft.cli import main
from mlft.errors import RunDirError
from mlft.rundir import RunDir

from helpers import FAST, ZH_NER, metrics


class FrozenClock(datetime):
    @classmethod
    def now(cls, tz=None):
        return cls(2026, 1, 2, 3, 4, 5)


def test_two_runs_in_the_same_second_get_their_own_directories(tmp_path, tiny_models, monkeypatch):
    monkeypatch.setattr("hydra.core.utils.datetime", FrozenClock)
    args = ["train", f"model={tiny_models['wordpiece']}", f"run_root={tmp_path}", *FAST, *ZH_NER, "trainer.epochs=1"]
    main(args)
    main(args)
    first = tmp_path / "ner-zh" / "2026-01-02_03-04-05"
    second = first.with_name(first.name + "-2")
    assert metrics(first)["test"]["zh"]["n"] == metrics(second)["test"]["zh"]["n"] > 0


def _claim(args: tuple[str, multiprocessing.synchronize.Barrier]) -> str:
    path, barrier = args
    barrier.wait()
    return str(RunDir(Path(path)).claim(overwrite=False, unique=True).path)


def test_concurrent_claims_of_one_directory_all_succeed_with_distinct_names(tmp_path):
    context = multiprocessing.get_context("fork")
    barrier = context.Manager().Barrier(6)
    with context.Pool(6) as pool:
        claimed = pool.map(_claim, [(str(tmp_path / "run"), barrier)] * 6)
    assert len(set(claimed)) == 6
    assert all((Path(c) / ".hydra").is_dir() for c in claimed)


def test_an_explicit_directory_is_never_renamed(tmp_path):
    RunDir(tmp_path / "run").claim(overwrite=False)
    with pytest.raises(RunDirError, match="already holds a run"):
        RunDir(tmp_path / "run").claim(overwrite=False)


def test_a_run_reproduces_evaluates_predicts_and_resumes_from_another_folder(tmp_path, tiny_models, monkeypatch):
    """Data paths given relative to the folder a run started in are saved absolute: the run's config works from
    anywhere (reproduce, eval, predict, resume)."""
    import yaml

    from mlft.cli import main

    from conftest import FIXTURES

    project = tmp_path / "project"
    shutil.copytree(FIXTURES / "zh_ner", project / "data")
    shutil.copytree(tiny_models["unigram"], project / "model")
    monkeypatch.chdir(project)
    fast = ["trainer.progress=false", "trainer.batch_size=8", "trainer.epochs=1"]
    data = ["data.train=data/train.conll", "data.dev=data/dev.conll", "data.test=data/test.conll"]
    main(["train", "task=ner", "lang=zh", "model=model", *data, *fast, "hydra.run.dir=runs/first"])
    run = project / "runs" / "first"
    saved = yaml.safe_load((run / ".hydra" / "config.yaml").read_text())
    assert saved["data"]["train"] == str(project / "data" / "train.conll")
    assert saved["model"]["name_or_path"] == str(project / "model")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    main(["eval", f"run={run}", "out=eval"])
    main(["predict", f"run={run}", f"input={FIXTURES / 'zh_texts.txt'}", "output=p.jsonl"])
    main(["train", "--config-path", str(run / ".hydra"), "--config-name", "config", "hydra.run.dir=again"])
    first = json.loads((run / "metrics.json").read_text())["test"]["zh"]
    assert json.loads((elsewhere / "again" / "metrics.json").read_text())["test"]["zh"] == first
    assert json.loads((elsewhere / "eval" / "metrics.json").read_text())["test"]["zh"]["f1"] == first["f1"]
    shutil.rmtree(run / "model")  # as if it had stopped before its end: resume continues it from here
    main(["train", f"resume={run}"])
    assert (run / "model" / "config.json").is_file()
