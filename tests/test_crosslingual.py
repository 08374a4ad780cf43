"""Cross-lingual training: language sets, temperature sampling, label maps, selection, transfer reports."""

from __future__ import annotations

import csv
import json
import math
from collections import Counter

import pytest
import torch
from safetensors.torch import load_file

from mlft.cli import main
from mlft.config import TaskConfig, resolve_langs
from mlft.data.labelmap import apply_label_map
from mlft.engine import checkpoint
from mlft.engine.sampling import LanguageSampler, language_probabilities, quotas
from mlft.errors import ConfigError, DataError
from mlft.report.tables import markdown, transfer

from conftest import FIXTURES
from helpers import NER_DATASETS, assert_final_weights_are, metrics, task_rules, train

# Per-language datasets from the fixtures: `{split}` becomes train, dev and test.
SENT_DATASETS = (
    f"task.datasets={{zh: '{FIXTURES}/sentiment/zh_{{split}}.jsonl', en: '{FIXTURES}/sentiment/en_{{split}}.jsonl'}}"
)


def test_temperature_formula_limits():
    sizes = {"en": 1000, "sw": 10}
    assert language_probabilities(sizes, 1.0) == pytest.approx({"en": 1000 / 1010, "sw": 10 / 1010})
    assert language_probabilities(sizes, 1e9) == pytest.approx({"en": 0.5, "sw": 0.5})
    t5 = language_probabilities(sizes, 5.0)
    assert t5["sw"] == pytest.approx(10**0.2 / (10**0.2 + 1000**0.2))


@pytest.mark.parametrize("temperature", [1.0, 2.0, 5.0, 100.0])
def test_epoch_mixing_realises_the_formula(temperature):
    langs = ["en"] * 900 + ["de"] * 90 + ["sw"] * 10
    sampler = LanguageSampler(langs, seed=3, temperature=temperature, mixing="epoch", batch_size=8)
    p = language_probabilities({"en": 900, "de": 90, "sw": 10}, temperature)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        order = list(sampler)
        assert len(order) == len(sampler) == 1000
        mix = Counter(langs[i] for i in order)
        assert mix == sampler.mix()
        for lang, share in p.items():
            assert abs(mix[lang] - 1000 * share) < 1  # largest remainder: within one example of N·p
    assert sum(quotas(p, 1000).values()) == 1000


def test_step_mixing_draws_one_language_per_batch_and_matches_the_formula_on_average():
    langs = ["en"] * 600 + ["de"] * 300 + ["sw"] * 100
    batch = 10
    sampler = LanguageSampler(langs, seed=1, temperature=3.0, mixing="step", batch_size=batch)
    p = language_probabilities({"en": 600, "de": 300, "sw": 100}, 3.0)
    batches: Counter = Counter()
    for epoch in range(40):
        sampler.set_epoch(epoch)
        order = list(sampler)
        for start in range(0, len(order), batch):
            batch_langs = {langs[i] for i in order[start : start + batch]}
            assert len(batch_langs) == 1  # monolingual batches
            batches[batch_langs.pop()] += 1
    n = sum(batches.values())
    assert n == 40 * 100
    for lang, share in p.items():
        assert abs(batches[lang] / n - share) < 4 * math.sqrt(share * (1 - share) / n), (lang, batches)


def test_the_order_depends_only_on_seed_and_epoch():
    langs = ["a"] * 50 + ["b"] * 7
    first = LanguageSampler(langs, seed=5, temperature=2.0, mixing="epoch", batch_size=4)
    again = LanguageSampler(langs, seed=5, temperature=2.0, mixing="epoch", batch_size=4)
    first.set_epoch(2), again.set_epoch(2)
    assert list(first) == list(again)
    again.set_epoch(3)
    assert list(first) != list(again)


def test_languages_a_dataset_lacks_are_a_config_error_naming_the_ones_it_has():
    task = TaskConfig(name="topic", type="sequence_classification", metric="accuracy", datasets={"en": "x", "de": "y"})
    assert resolve_langs(["all"], task, "lang.eval") == ["en", "de"]
    with pytest.raises(
        ConfigError, match=r"lang.eval: task 'topic' has no dataset for xx \(languages it has: en, de\)"
    ):
        resolve_langs(["en", "xx"], task, "lang.eval")


def test_unknown_and_misused_languages_exit_2_before_training(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "task=topic", "lang.eval=[en,xx]", "lang.train=[all,en]", f"hydra.run.dir={tmp_path / 'r'}"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "lang.eval: task 'topic' has no dataset for xx (languages it has: bn, zh, nl, en" in err
    assert "lang.train: 'all' stands alone" in err
    assert not (tmp_path / "r").exists()


def _ner_splits():
    return {
        "train": {
            "en": [
                {"tokens": ["Ann", "at", "Acme"], "tags": ["B-person", "O", "B-company"], "loc": "a.conll:1"},
                {"tokens": ["Star", "Wars"], "tags": ["B-movie", "I-movie"], "loc": "a.conll:5"},
            ],
            "zh": [{"tokens": ["王", "五"], "tags": ["B-PER", "I-PER"], "loc": "b.conll:1"}],
        }
    }


def test_label_map_renames_drops_and_keeps_targets():
    splits = _ner_splits()
    dropped = apply_label_map(
        splits, {"person": "PER", "company": "ORG", "movie": None}, task_rules("token_classification")
    )
    assert splits["train"]["en"][0]["tags"] == ["B-PER", "O", "B-ORG"]
    assert splits["train"]["en"][1]["tags"] == ["O", "O"]
    assert splits["train"]["zh"][0]["tags"] == ["B-PER", "I-PER"]  # already a target label
    assert dropped == {"movie": 1}


def test_a_label_the_map_does_not_cover_is_reported_with_its_place():
    with pytest.raises(DataError) as err:
        apply_label_map(_ner_splits(), {"person": "PER", "company": "ORG"}, task_rules("token_classification"))
    assert "a.conll:5: label 'movie' is not in task.label_map" in str(err.value)


def test_label_map_for_classes_drops_examples_mapped_to_null():
    splits = {
        "dev": {"en": [{"text": "a", "label": "spam", "loc": "x:1"}, {"text": "b", "label": "ok", "loc": "x:2"}]}
    }
    assert apply_label_map(splits, {"spam": None, "ok": "ham"}, task_rules("sequence_classification")) == {"spam": 1}
    assert splits["dev"]["en"] == [{"text": "b", "label": "ham", "loc": "x:2"}]


def test_transfer_gap_is_source_minus_target():
    m = {"test": {"en": {"n": 5, "accuracy": 0.9, "macro_f1": 0.8, "micro_f1": 0.9},
                  "de": {"n": 5, "accuracy": 0.7, "macro_f1": 0.6, "micro_f1": 0.7},
                  "sw": {"n": 5, "accuracy": 0.5, "macro_f1": 0.4, "micro_f1": 0.5}}}  # fmt: skip
    gaps = transfer(m, ["en"], "accuracy")["test"]
    assert gaps["gap"] == pytest.approx({"de": 0.2, "sw": 0.4})
    assert gaps["mean_gap"] == pytest.approx(0.3)
    table = markdown(m, ("accuracy", "macro_f1", "micro_f1"), "t", ["en"], "accuracy")
    assert "| test | en (train) |" in table and "| 0.2000 |" in table
    assert "source (en) 0.9000 − target mean 0.6000 = **0.3000**" in table


def test_joint_training_with_temperature_sampling_and_a_label_map(tmp_path, tiny_models):
    run = train(
        tmp_path / "run",
        tiny_models["unigram"],
        "task=ner",
        "lang=zh_en",
        NER_DATASETS,
        "task.label_map={ORG: null, PER: PER, LOC: LOC}",
        "trainer.lang_sampling.temperature=2",
        "trainer.epochs=2",
    )
    m = metrics(run)
    assert set(m["dev"]) == {"zh", "en"} and set(m["test"]) == {"zh", "en"}
    assert m["languages"]["train"] == ["zh", "en"]
    sampling = m["lang_sampling"]
    assert sampling["temperature"] == 2 and len(sampling["realised_mix"]) == 2
    assert sampling["realised_mix"][0] == {"zh": 48, "en": 48}  # equal sizes: equal shares at any temperature
    assert m["label_map_dropped"]["ORG"] > 0
    labels = json.loads((run / "model" / "config.json").read_text())["label2id"]
    assert not any("ORG" in label for label in labels)


@pytest.fixture(scope="module")
def en_to_all(tmp_path_factory, tiny_models):
    root = tmp_path_factory.mktemp("xl")
    return train(
        root / "run",
        tiny_models["wordpiece"],
        "task=sentiment",
        "lang=en_to_all",
        SENT_DATASETS,
        "trainer.epochs=8",
    )


def test_zero_shot_run_reports_the_transfer_gap_in_md_csv_json_and_plots(en_to_all):
    m = metrics(en_to_all)
    assert list(m["test"]) == ["zh", "en"]  # [all]: every language of the task's datasets
    gap = m["transfer"]["test"]
    assert gap["source_langs"] == ["en"]
    assert m["test"]["en"]["accuracy"] > 0.7  # it learnt the source language (chance: 0.5)
    assert gap["gap"]["zh"] == pytest.approx(m["test"]["en"]["accuracy"] - m["test"]["zh"]["accuracy"])
    assert m["selection"]["strategy"] == "source_dev" and m["selection"]["dev_langs"] == ["en"]
    rows = {(r["split"], r["lang"]): r for r in csv.DictReader((en_to_all / "metrics.csv").open())}
    assert float(rows[("test", "zh")]["transfer_gap"]) == pytest.approx(gap["gap"]["zh"], abs=1e-6)
    assert rows[("test", "en")]["transfer_gap"] == ""
    assert "transfer gap in accuracy" in (en_to_all / "report.md").read_text()
    for split in ("dev", "test"):
        assert (en_to_all / "plots" / f"{split}-accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_eval_on_languages_the_run_never_saw_and_unknown_ones(en_to_all, capsys):
    main(["eval", f"run={en_to_all}", "lang=[zh]", "split=[test]"])
    out_dir = next((en_to_all / "evals").iterdir())
    evaluated = json.loads((out_dir / "metrics.json").read_text())
    assert list(evaluated["test"]) == ["zh"]
    assert evaluated["test"]["zh"] == metrics(en_to_all)["test"]["zh"]
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", f"run={en_to_all}", "lang=[zh,ja]"])
    assert exit_info.value.code == 2
    assert "has no dataset for ja (languages it has: zh, en)" in capsys.readouterr().err


@pytest.mark.parametrize("select", ["last", "average", "target_dev"])
def test_selection_strategies(select, tmp_path, tiny_models):
    run = train(
        tmp_path / "run",
        tiny_models["wordpiece"],
        "task=sentiment",
        "lang=en_to_all",
        SENT_DATASETS,
        "trainer.epochs=3",
        "trainer.keep_last=3",
        "trainer.average_last=2",
        f"trainer.select={select}",
    )
    m = metrics(run)
    steps = checkpoint.step_dirs(run / "checkpoints")
    if select == "last":
        expected = load_file(steps[-1] / checkpoint.MODEL_FILE)
    elif select == "average":
        assert m["selection"]["steps"] == [int(d.name.split("-")[1]) for d in steps[-2:]]
        a, b = (load_file(d / checkpoint.MODEL_FILE) for d in steps[-2:])
        expected = {k: (a[k] + b[k]) / 2 for k in a}
        assert any(not torch.equal(a[k], b[k]) for k in a)  # two different checkpoints were averaged
    else:
        assert m["selection"]["oracle"] is True and m["selection"]["dev_langs"] == ["zh"]
        assert "ORACLE" in (run / "report.md").read_text()
        expected = load_file(run / "checkpoints" / "best" / checkpoint.MODEL_FILE)
    assert_final_weights_are(run, expected)


def test_the_final_model_links_the_best_checkpoint_when_it_is_the_same(tmp_path, tiny_models):
    run = train(
        tmp_path / "run",
        tiny_models["wordpiece"],
        "task=sentiment",
        "lang=en_to_all",
        SENT_DATASETS,
        "trainer.epochs=2",
        "model.compact_embeddings=false",
    )
    best = run / "checkpoints" / "best" / checkpoint.MODEL_FILE
    assert (run / "model" / checkpoint.MODEL_FILE).stat().st_ino == best.stat().st_ino  # not stored twice


def test_average_needs_enough_kept_checkpoints(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["train", "trainer.select=average", "trainer.keep_last=1", f"hydra.run.dir={tmp_path / 'r'}"])
    assert "trainer.keep_last: select=average needs the last 3 checkpoints" in capsys.readouterr().err


def test_report_over_seeds_and_training_languages(tmp_path, tiny_models, capsys):
    sweep = tmp_path / "sweep"
    common = ["task=sentiment", SENT_DATASETS, "trainer.epochs=2", "trainer.tensorboard=false"]
    for name, lang, seed in [("a", "en_to_all", 1), ("b", "en_to_all", 2), ("c", "zh_to_en", 1)]:
        lang_args = [f"lang={lang}"] if lang == "en_to_all" else ["lang.train=[zh]", "lang.eval=[all]"]
        train(sweep / name, tiny_models["wordpiece"], *common, *lang_args, f"seed={seed}")
    main(["report", f"sweep={sweep}", "split=test", f"out={tmp_path / 'rep'}"])
    summary = json.loads((tmp_path / "rep" / "report.json").read_text())
    groups = summary["groups"]
    assert len(groups) == 2
    en_group = next(g for g in groups.values() if g["train_langs"] == ["en"])
    scores = [metrics(sweep / r)["test"]["zh"]["accuracy"] for r in ("a", "b")]
    mean, std, n = en_group["test"]["langs"]["zh"]
    assert n == 2 and mean == pytest.approx(sum(scores) / 2)
    assert std == pytest.approx(abs(scores[0] - scores[1]) / math.sqrt(2))
    assert (tmp_path / "rep" / "heatmap-test-accuracy.png").is_file()
    assert "±" in (tmp_path / "rep" / "report.md").read_text()
    with pytest.raises(SystemExit) as exit_info:  # never writes into a folder that holds files
        main(["report", f"sweep={sweep}", f"out={tmp_path / 'rep'}"])
    assert exit_info.value.code == 2


@pytest.mark.parametrize("task,count", [("panx", 40), ("wikiann", 40), ("xnli", 15), ("pawsx", 7)])
def test_xtreme_presets_compose_for_zero_shot_from_english(task, count, tiny_models):
    from test_config import compose_cfg

    from mlft.commands.run_config import run_config as validate

    run = validate(compose_cfg([f"task={task}", "lang=en_to_all", f"model.name_or_path={tiny_models['unigram']}"]))
    assert len(run.task.datasets) >= count and "en" in run.task.datasets
    assert resolve_langs(run.lang.eval, run.task, "lang.eval") == list(run.task.datasets)


def test_chatterbot_languages_share_the_english_category_names():
    from mlft.data.builtin import read_builtin

    pytest.importorskip("chatterbot_corpus")
    es = {ex["label"] for ex in read_builtin("builtin:chatterbot/es", "train")}
    assert {"ai", "money", "emotion", "psychology", "botprofile"} <= es
    assert not es & {"IA", "dinero", "emociones", "psicologia", "perfilbot"}


def test_entityless_filtering_sees_the_mapped_labels(tmp_path):
    from mlft.config import DataConfig
    from mlft.data.load import load_data

    (tmp_path / "train.conll").write_text("Ann B-person\nsmiled O\n\nStar B-movie\nWars I-movie\n\nhi O\n")
    task = TaskConfig(
        name="ner",
        type="token_classification",
        metric="f1",
        datasets={"en": str(tmp_path / "{split}.conll")},
        label_map={"person": "PER", "movie": None},
    )
    loaded = load_data(DataConfig(keep_entityless=0.0), task, task_rules(task.type), ["en"], [], need_train=True)
    assert [ex["tokens"] for ex in loaded.splits["train"]["en"]] == [["Ann", "smiled"]]
    assert loaded.labels == ["O", "B-PER", "I-PER"] and loaded.dropped == {"movie": 1}
