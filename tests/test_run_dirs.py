"""Runs that start together never share a directory; an explicitly named directory is never renamed."""

from __future__ import annotations

import multiprocessing
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
