"""Every shipped config composes and validates; defaults live only in the schema; invalid configs report every
problem at once, with a suggestion for a near miss; a validated config is never changed."""

from __future__ import annotations

import dataclasses
import sys
import typing

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from mlft.cli_train import GROUPS, precheck
from mlft.commands.run_config import run_config as validate
from mlft.config import RunConfig, config_dir, presets, register_schema_defaults, schema_defaults
from mlft.errors import ConfigError

from conftest import FIXTURES, ROOT

DATA = {
    "token_classification": f"data.train={FIXTURES / 'zh_ner' / 'train.conll'}",
    "sequence_classification": f"data.train={FIXTURES / 'sentiment' / 'zh_train.jsonl'}",
    "question_answering": f"data.train={FIXTURES / 'qa' / 'zh_train.json'}",
}


def compose_cfg(overrides: list[str]):
    register_schema_defaults()
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
    trained = [cfg.task.datasets.get(lang) for lang in cfg.lang.train]  # per split ({test: ...}) or for all splits
    if not all(d is not None and (isinstance(d, str) or "train" in d) for d in trained):
        if len(cfg.lang.train) > 1:
            pytest.skip(f"{option}: trains on several languages without per-language datasets")
        cfg = compose_cfg(overrides + [DATA[cfg.task.type]])
    run = validate(cfg)
    if group != "experiment" and hasattr(getattr(run, group), "name"):
        assert getattr(run, group).name in (option, "adamw")  # optimizer presets vary the schedule of adamw
    # Every schema key is in the composed config (from the schema's defaults), so `key=value` works without a `+`.
    for section, schema in typing.get_type_hints(RunConfig).items():
        if dataclasses.is_dataclass(schema):
            assert {f.name for f in dataclasses.fields(schema)} <= set(cfg[section]), f"{group}/{option}: {section}"


PRESET_GROUPS = ("model", "task", "lang", "optimizer", "trainer", "peft")


@pytest.mark.parametrize("group,option", [(g, o) for g in PRESET_GROUPS for o in presets(g)])
def test_a_preset_states_only_what_differs_from_the_schema_defaults(group, option):
    # The schema's dataclasses hold the only defaults: a preset restating one could silently disagree later.
    preset = OmegaConf.to_container(OmegaConf.load(config_dir() / group / f"{option}.yaml")) or {}
    defaults = schema_defaults()[group]
    restated = [key for key, value in preset.items() if key in defaults and defaults[key] == value]
    assert not restated, f"configs/{group}/{option}.yaml restates schema defaults: {restated}"


def test_the_default_presets_compose_to_the_schema_defaults(tiny_models):
    cfg = OmegaConf.to_container(compose_cfg([f"model.name_or_path={tiny_models['unigram']}"]))
    defaults = schema_defaults()
    for section in ("trainer", "data", "distill", "optimizer", "peft"):
        for key, value in defaults[section].items():
            assert cfg[section][key] == value or key == "name", f"{section}.{key}"
    for key in ("seed", "run_root", "overwrite", "resume"):
        assert cfg[key] == defaults[key], key


def test_the_fast_trainer_inherits_the_default_one():
    fast = compose_cfg(["trainer=fast", "model.name_or_path=x"])["trainer"]
    defaults = schema_defaults()["trainer"]
    stated = OmegaConf.load(config_dir() / "trainer" / "fast.yaml")
    assert set(stated) - {"defaults"} == {k for k in defaults if fast[k] != defaults[k]}
    assert fast["precision"] == "bf16" and fast["select"] == defaults["select"]


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
            "peft.target_modules=all-linear",
        ]
    )
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    text = "\n".join(err.value.problems)
    for fragment in (
        "trainer.bogus: unknown key",
        # peft's own spelling is a string; mlft's list says how to write it
        "peft.target_modules: expected list[str], got 'all-linear' (a list of one: peft.target_modules=[all-linear])",
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
    assert "task: 'nerx' is not a task preset; did you mean 'ner'? (allowed: amazon_reviews, cmrc2018, drcd," in text
    assert "lang: 'xx' is not a lang preset" in text
    assert "foo: unknown key" in text


def test_method_names_that_are_no_preset_say_why_and_what_to_use():
    with pytest.raises(ConfigError) as err:
        precheck(config_dir(), "config", ["peft=prefix", "task=ner"], False)
    (problem,) = [p for p in err.value.problems if p.startswith("peft:")]
    assert problem.startswith("peft: 'prefix' is not a peft preset: peft implements it through the encoder's")
    assert "peft=lora or peft=bottleneck" in problem and "(allowed: adalora, bottleneck," in problem
    with pytest.raises(ConfigError) as err:
        precheck(config_dir(), "config", ["peft=dora"], False)
    assert any("peft=lora peft.use_dora=true" in p for p in err.value.problems)


def test_the_lora_all_preset_is_the_recipe_measured_in_the_peft_table():
    # docs/results/peft.md measured the table's lora-all-1e-3 overrides; the preset must not drift from them.
    sys.path.insert(0, str(ROOT / "scripts"))
    from peft_table import METHODS

    # The preset names the layers [all-linear], which wraps what the table's list does on the BERT-type offline
    # model (test_all_linear_is_on_bert_the_layer_list_the_peft_table_measured).
    measured = METHODS["lora-all-1e-3"]
    preset, table = (compose_cfg(["model.name_or_path=x", *o])["peft"] for o in (["peft=lora_all"], measured))
    assert preset["target_modules"] == ["all-linear"] and table["target_modules"] == ["query", "key", "value", "dense"]
    assert {**preset, "name": "lora", "target_modules": table["target_modules"]} == table


def test_wrong_types_on_required_fields_do_not_hide_the_other_problems(tiny_models):
    # lang.train has no default: its wrong type used to stop the range and file checks.
    cfg = compose_cfg(
        [
            f"model.name_or_path={tiny_models['unigram']}",
            "++lang.train=zh",
            "trainer.precision=fp32",
            "optimizer.lr=-1",
            "data.dev=missing.conll",
            "data.train=" + DATA["token_classification"].split("=", 1)[1],
        ]
    )
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    keys = [p.split(":")[0] for p in err.value.problems]
    assert keys == ["lang.train", "trainer.precision", "optimizer.lr", "data.dev"], err.value.problems


def test_unknown_keys_get_a_suggestion(tiny_models):
    cfg = compose_cfg([f"model.name_or_path={tiny_models['unigram']}", "++trainer.epoch=2", "++optimiser.lr=1"])
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    text = "\n".join(err.value.problems)
    assert "trainer.epoch: unknown key; did you mean 'epochs'?" in text
    assert "optimiser: unknown key; did you mean 'optimizer'?" in text


def test_a_validated_config_cannot_be_changed(tiny_models):
    run = validate(compose_cfg([f"model.name_or_path={tiny_models['unigram']}", DATA["token_classification"]]))
    with pytest.raises(dataclasses.FrozenInstanceError):
        run.trainer.cpu = True  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        run.task.labels = ["x"]  # type: ignore[misc]


def test_model_path_that_is_not_a_model(tmp_path):
    cfg = compose_cfg([f"model.name_or_path={tmp_path}", DATA["token_classification"]])
    with pytest.raises(ConfigError, match="not a model directory"):
        validate(cfg)


def test_what_the_machine_cannot_do_is_reported_beside_schema_problems(tiny_models, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("fp16 runs where a GPU is")
    with pytest.raises(ConfigError) as err:
        precheck(
            config_dir(),
            "config",
            ["trainer.precision=fp16", "optimizer.lr=abc", f"model={tiny_models['unigram']}"],
            False,
        )
    text = "\n".join(err.value.problems)
    assert "optimizer.lr: expected float, got 'abc'" in text and "trainer.precision: fp16 needs a CUDA GPU" in text
