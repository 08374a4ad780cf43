"""Where a run came from: one started from another run's saved config, or resumed, records it in env.json and
warns when a data file is not the file the earlier run trained on."""

from __future__ import annotations

import json
import shutil

from mlft.cli import main
from mlft.engine.checkpoint import step_dirs

from conftest import FIXTURES
from helpers import train

NER = FIXTURES / "zh_ner"


def env(run) -> dict:
    return json.loads((run / "env.json").read_text())


def edit_one_tag(path) -> None:
    """The same number of sentences and tokens, one tag different: a quiet change of a data file."""
    text = path.read_text()
    path.write_text(text.replace("\tO\n", "\tB-ORG\n", 1))


def copy_data(tmp_path) -> list[str]:
    for split in ("train", "dev"):
        shutil.copy(NER / f"{split}.conll", tmp_path / f"{split}.conll")
    return [f"data.train={tmp_path / 'train.conll'}", f"data.dev={tmp_path / 'dev.conll'}"]


def test_a_run_from_a_saved_config_records_its_origin_and_warns_of_changed_data(tmp_path, tiny_models, caplog):
    data = copy_data(tmp_path)
    first = train(tmp_path / "first", tiny_models["unigram"], "task=ner", "lang=zh", "trainer.epochs=1", *data)
    again = ["train", "--config-path", str(first / ".hydra"), "--config-name", "config"]

    main([*again, f"hydra.run.dir={tmp_path / 'same'}"])
    origin = env(tmp_path / "same")["origin"]
    assert origin == {"config": str((first / ".hydra").resolve()), "run": str(first.resolve()), "changed_data": []}

    edit_one_tag(tmp_path / "train.conll")
    caplog.set_level("WARNING", logger="mlft")
    main([*again, f"hydra.run.dir={tmp_path / 'changed'}"])
    [change] = env(tmp_path / "changed")["origin"]["changed_data"]
    assert change["key"] == "train/zh" and change["source"] == str(tmp_path / "train.conll")
    assert change["was"] == env(first)["data"]["train/zh"]["fingerprint"] != change["now"]
    assert f"data train/zh: {tmp_path / 'train.conll'} is not the file it was when {first.resolve()} trained" in (
        caplog.text
    )
    assert "origin" not in env(first)  # a run started from the packaged configs has none


def test_a_resumed_run_records_each_resumption_and_warns_of_changed_data(tmp_path, tiny_models, caplog):
    data = copy_data(tmp_path)
    run = train(
        tmp_path / "run", tiny_models["unigram"], "task=ner", "lang=zh", "trainer.epochs=2", "trainer.save_steps=2",
        "trainer.keep_last=100", *data
    )  # fmt: skip
    stopped = tmp_path / "stopped"
    shutil.copytree(run, stopped)
    for later in ("model", "checkpoints/best", "metrics.json"):
        (shutil.rmtree if (stopped / later).is_dir() else lambda p: p.unlink())(stopped / later)
    for step in step_dirs(stopped / "checkpoints")[1:]:  # stopped after its first checkpoint (step 2)
        shutil.rmtree(step)
    edit_one_tag(tmp_path / "dev.conll")
    caplog.set_level("WARNING", logger="mlft")
    main(["train", f"resume={stopped}"])
    [resumed] = env(stopped)["resumed"]
    assert [c["key"] for c in resumed["changed_data"]] == ["dev/zh"] and resumed["at"][:4].isdigit()
    assert f"{tmp_path / 'dev.conll'} is not the file it was when {stopped} started" in caplog.text


def test_env_records_a_dirty_checkout_and_fingerprints_sets_that_are_no_file_by_content(tmp_path):
    from mlft.config import DataConfig, TaskConfig
    from mlft.data.load import load_data
    from mlft.rundir import data_changes, git_dirty

    from helpers import task_rules

    assert git_dirty() in (True, False)  # this checkout is a git one
    hub = tmp_path / "set"  # a local dataset folder read through datasets, as hub:<id> is
    hub.mkdir()
    (hub / "train.jsonl").write_text('{"text": "好", "label": "pos"}\n{"text": "坏", "label": "neg"}\n')
    task = TaskConfig(name="s", type="sequence_classification", metric="accuracy", datasets={"zh": f"hub:{hub}"})
    rules = task_rules("sequence_classification")
    first = load_data(DataConfig(), task, rules, ["zh"], [], need_train=True)
    assert first.contents["train/zh"].startswith("content:")
    recorded = {"train/zh": {"source": f"hub:{hub}", "fingerprint": first.contents["train/zh"]}}
    assert data_changes(recorded, first.sources, first.contents) == []
    (hub / "train.jsonl").write_text('{"text": "好", "label": "pos"}\n{"text": "差", "label": "neg"}\n')
    changed = load_data(DataConfig(), task, rules, ["zh"], [], need_train=True)
    assert [c["key"] for c in data_changes(recorded, changed.sources, changed.contents)] == ["train/zh"]
    legacy = {"train/zh": {"source": f"hub:{hub}", "fingerprint": f"hub:{hub}"}}  # named, not fingerprinted
    assert data_changes(legacy, changed.sources, changed.contents) == []
