"""Every shipped config composes and validates; invalid configs report every problem at once."""

from __future__ import annotations

import dataclasses
import typing

import pytest
from hydra import compose, initialize_config_dir

from mlft.cli import GROUPS, config_dir, precheck, presets
from mlft.config import RunConfig, validate
from mlft.errors import ConfigError

from conftest import FIXTURES

DATA = {
    "token_classification": f"data.train={FIXTURES / 'zh_ner' / 'train.conll'}",
    "sequence_classification": f"data.train={FIXTURES / 'sentiment' / 'zh_train.jsonl'}",
}


def compose_cfg(overrides: list[str]):
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def test_every_group_has_presets():
    for group in GROUPS:
        assert presets(group), group


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in presets(g)])
def test_every_shipped_config_composes_and_validates(group, option, tiny_models):
    overrides = [f"{group}={option}"]
    if group != "model" or option == "hf":
        overrides.append(f"model.name_or_path={tiny_models['unigram']}")
    cfg = compose_cfg(overrides)
    if not all(lang in cfg.task.datasets for lang in cfg.lang.train):
        if len(cfg.lang.train) > 1:
            pytest.skip(f"{option}: trains on several languages without per-language datasets")
        cfg = compose_cfg(overrides + [DATA[cfg.task.type]])
    run = validate(cfg)
    if hasattr(getattr(run, group), "name"):
        assert getattr(run, group).name in (option, "adamw")  # optimizer presets vary the schedule of adamw
    # Every schema key is spelled out in the preset, so `key=value` overrides work without a `+`.
    schema = typing.get_type_hints(RunConfig)[group]
    assert {f.name for f in dataclasses.fields(schema)} <= set(cfg[group]), f"{group}/{option} lacks keys"


def test_every_problem_is_reported_at_once(tiny_models):
    cfg = compose_cfg(
        [
            f"model.name_or_path={tiny_models['unigram']}",
            "data.train=missing.conll",
            "++trainer.bogus=1",
            "optimizer.lr=fast",
            "optimizer.warmup_steps=10",
            "trainer.precision=fp8",
            "task.metric=bleu",
        ]
    )
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    text = "\n".join(err.value.problems)
    for fragment in (
        "trainer.bogus: unknown key",
        "optimizer.lr: expected float",
        "trainer.precision: 'fp8'",
        "allowed: no, bf16, fp16",
        "data.train: file not found",
        "task.metric: 'bleu'",
        "optimizer.warmup_steps: conflicts with optimizer.warmup_fraction",
    ):
        assert fragment in text


def test_precheck_reports_unknown_presets_and_keys_together(tiny_models):
    with pytest.raises(ConfigError) as err:
        precheck(
            config_dir(), "config", ["task=nerx", "lang=xx", "foo.bar=1", f"model={tiny_models['unigram']}"], False
        )
    text = "\n".join(err.value.problems)
    assert "task: 'nerx' is not a task preset (allowed: amazon_reviews, msra_ner_hub, multilabel, ner," in text
    assert "lang: 'xx' is not a lang preset" in text
    assert "foo: unknown key" in text


def test_model_path_that_is_not_a_model(tmp_path):
    cfg = compose_cfg([f"model.name_or_path={tmp_path}", DATA["token_classification"]])
    with pytest.raises(ConfigError, match="not a model directory"):
        validate(cfg)
