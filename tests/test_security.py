"""No code path unpickles files or runs a model's own code unless the user asks for it."""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path

import pytest

import mlft
from mlft.config import ModelConfig, config_dir

SOURCE = Path(mlft.__file__).parent


def calls(tree: ast.AST) -> list[ast.Call]:
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call)]


def dotted(func: ast.expr) -> str:
    parts = []
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    if isinstance(func, ast.Name):
        parts.append(func.id)
    return ".".join(reversed(parts))


def keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def test_no_unsafe_deserialisation_anywhere_in_the_package():
    problems = []
    for path in sorted(SOURCE.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for call in calls(tree):
            name, where = dotted(call.func), f"{path.relative_to(SOURCE)}:{call.lineno}"
            if name.split(".")[-1] in ("loads", "load") and name.split(".")[0] in ("pickle", "marshal", "dill"):
                problems.append(f"{where}: {name}")
            if name.endswith("torch.load") or name == "load" and keyword(call, "map_location") is not None:
                value = keyword(call, "weights_only")
                if not (isinstance(value, ast.Constant) and value.value is True):
                    problems.append(f"{where}: {name} without weights_only=True")
            if name in ("yaml.load", "yaml.unsafe_load", "eval", "exec"):
                problems.append(f"{where}: {name}")
            if name.endswith("register_for_checkpointing"):  # Accelerate reloads these with weights_only=False
                problems.append(f"{where}: {name}")
            value = keyword(call, "trust_remote_code")
            if isinstance(value, ast.Constant) and value.value is True:
                problems.append(f"{where}: trust_remote_code=True")
    assert not problems, problems


def test_remote_code_is_off_unless_the_user_sets_it():
    assert ModelConfig(name="x", name_or_path="y").trust_remote_code is False
    presets = sorted(config_dir().glob("*/*.yaml"))
    assert presets and not any("trust_remote_code" in p.read_text() for p in presets)


# A run directory received from someone else: nothing in it may run code.


def hostile_copy(run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "received"
    shutil.copytree(run, copy)
    return copy


def edit_yaml(path: Path, edit) -> None:
    import yaml

    data = yaml.safe_load(path.read_text())
    edit(data)
    path.write_text(yaml.safe_dump(data))


def remote_code_model(folder: Path, base: Path, marker: Path) -> None:
    """A model folder whose config.json asks transformers to import its own evil.py (which leaves `marker`)."""
    import json

    if folder != base:
        shutil.copytree(base, folder)
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "evil.EvilConfig", "AutoModel": "evil.EvilModel"}
    config["auto_map"]["AutoModelForTokenClassification"] = "evil.EvilModel"
    config["model_type"] = "evil-bert"  # no class of transformers' own: only the folder's code could load it
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "evil.py").write_text(
        f"open({str(marker)!r}, 'w').write('ran')\n"
        "from transformers import BertConfig as EvilConfig\n"
        "from transformers import BertForTokenClassification as EvilModel\n"
    )


def exit_2(capsys, *argv: str) -> str:
    import pytest

    from mlft.cli import main

    with pytest.raises(SystemExit) as info:
        main(list(argv))
    err = capsys.readouterr().err
    assert info.value.code == 2, err
    assert "Traceback" not in err
    return err


def with_callback(marker: Path):
    def edit(config: dict) -> None:
        target = {"_target_": "shutil.copyfile", "src": __file__, "dst": str(marker)}
        config["hydra"]["callbacks"] = {"evil": target}

    return edit


def test_resume_and_config_path_refuse_a_saved_hydra_callback(ner_run, tmp_path, capsys):
    run = hostile_copy(ner_run, tmp_path)
    marker = tmp_path / "written-by-the-callback"
    edit_yaml(run / ".hydra" / "config.yaml", with_callback(marker))
    err = exit_2(capsys, "train", f"resume={run}")
    assert "hydra.callbacks" in err and not marker.exists()
    argv = ["train", "--config-path", str(run / ".hydra"), "--config-name", "config", f"hydra.run.dir={tmp_path}/new"]
    err = exit_2(capsys, *argv)
    assert "hydra.callbacks" in err and not marker.exists() and not (tmp_path / "new").exists()


def test_a_saved_logging_factory_or_config_group_is_refused(ner_run, tmp_path, capsys):
    run = hostile_copy(ner_run, tmp_path)

    def edit(config: dict) -> None:
        handler = {"()": "os.system", "command": f"touch {tmp_path}/ran"}
        config["hydra"]["job_logging"] = {"version": 1, "handlers": {"evil": handler}}
        config["defaults"].insert(0, {"override hydra/launcher": "basic"})

    edit_yaml(run / ".hydra" / "config.yaml", edit)
    err = exit_2(capsys, "train", f"resume={run}")
    assert "hydra.job_logging.handlers.evil.()" in err and "override hydra/launcher" in err
    assert not (tmp_path / "ran").exists()


def test_saved_trust_remote_code_is_refused_unless_given_on_the_command_line(ner_run, tmp_path, capsys):
    run = hostile_copy(ner_run, tmp_path)
    marker = tmp_path / "model-code-ran"
    remote_code_model(tmp_path / "evil-model", run / "model", marker)

    def edit(config: dict) -> None:
        config["model"]["trust_remote_code"] = True
        config["model"]["name_or_path"] = str(tmp_path / "evil-model")

    edit_yaml(run / ".hydra" / "config.yaml", edit)
    err = exit_2(capsys, "train", f"resume={run}")
    assert "model.trust_remote_code: true in" in err and "model.trust_remote_code=true" in err
    argv = ["train", "--config-path", str(run / ".hydra"), "--config-name", "config", f"hydra.run.dir={tmp_path}/new"]
    assert "model.trust_remote_code" in exit_2(capsys, *argv)
    assert not marker.exists()


def test_eval_predict_export_of_a_run_never_run_its_model_code(ner_run, tmp_path, capsys):
    run = hostile_copy(ner_run, tmp_path)
    marker = tmp_path / "model-code-ran"
    remote_code_model(run / "model", run / "model", marker)
    edit_yaml(run / "config.yaml", lambda c: c["model"].update(trust_remote_code=True))
    (tmp_path / "in.txt").write_text("张伟在北京工作。\n")
    commands = [
        ["eval", f"run={run}"],
        ["predict", f"run={run}", f"input={tmp_path / 'in.txt'}", f"output={tmp_path / 'out.jsonl'}"],
        ["export", f"run={run}", f"out={tmp_path / 'export'}"],
        ["train", "task=ner", "lang=zh", "model=hf", f"model.name_or_path={run}/model", f"hydra.run.dir={tmp_path}/t"],
    ]
    for argv in commands:
        err = exit_2(capsys, *argv)
        assert "custom code" in err, err
    assert not marker.exists() and not (tmp_path / "out.jsonl").exists() and not (tmp_path / "export").exists()


def pickle_payload(path: Path, marker: Path) -> None:
    import os

    import torch

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"weight": Payload()}, path)


def test_a_model_folder_with_a_pickle_payload_exits_2(ner_run, tiny_models, tmp_path, capsys):
    marker = tmp_path / "unpickled"
    model = tmp_path / "pickled-model"
    shutil.copytree(tiny_models["unigram"], model)
    (model / "model.safetensors").unlink()
    pickle_payload(model / "pytorch_model.bin", marker)
    data = f"data.train={Path(__file__).parent / 'fixtures' / 'zh_ner' / 'train.conll'}"
    err = exit_2(capsys, "train", "task=ner", "lang=zh", f"model={model}", data, f"hydra.run.dir={tmp_path}/run")
    assert "does not unpickle" in err and not marker.exists() and not (tmp_path / "run").exists()
    run = hostile_copy(ner_run, tmp_path)  # a run whose model/ was swapped for a pickle
    (run / "model" / "model.safetensors").unlink()
    pickle_payload(run / "model" / "pytorch_model.bin", marker)
    assert "safetensors" in exit_2(capsys, "eval", f"run={run}")
    assert not marker.exists()


def test_hydra_rerun_of_a_pickled_config_is_refused(tmp_path, capsys):
    (tmp_path / "config.pickle").write_bytes(b"not read")
    assert "--experimental-rerun" in exit_2(capsys, "train", "--experimental-rerun", str(tmp_path / "config.pickle"))


def marker_metric(folder: Path, marker: Path) -> Path:
    """A local evaluate module (a folder holding <name>.py) that leaves `marker` when it is imported."""
    folder.mkdir(parents=True)
    source = (Path(__file__).parent / "fixtures" / "metrics" / "kappa" / "kappa.py").read_text()
    (folder / f"{folder.name}.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n" + source)
    return folder


def test_a_metric_script_in_a_saved_config_runs_for_no_command_that_reads_it(
    ner_run, sentiment_run, tmp_path, capsys, monkeypatch
):
    marker = tmp_path / "metric-script-ran"
    module = marker_metric(tmp_path / "evil_metric", marker)
    runs = [hostile_copy(ner_run, tmp_path / "a"), hostile_copy(ner_run, tmp_path / "b")]
    grant = {"metric": f"evaluate:{module}", "evaluate": None, "trust_metric_code": True}
    for run in runs:  # the shorthand, which the earlier check did not read, and a consent the file gives itself
        for saved in (run / "config.yaml", run / ".hydra" / "config.yaml"):
            edit_yaml(saved, lambda c: c["task"].update(grant))
    run = runs[0]
    for argv in (
        ["train", f"resume={run}"],
        ["train", "--config-path", str(run / ".hydra"), "--config-name", "config", f"hydra.run.dir={tmp_path}/new"],
    ):
        err = exit_2(capsys, *argv)
        assert "task.trust_metric_code=true" in err and str(module) in err, err
    assert not (tmp_path / "new").exists()
    (tmp_path / "in.txt").write_text("张伟在北京工作。\n")
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: None)  # serve loads the run, then would listen
    from mlft.cli import main

    for argv in (
        ["eval", f"run={run}", f"out={tmp_path / 'eval'}"],
        ["eval", f"runs=[{runs[0]},{runs[1]}]", f"out={tmp_path / 'ensemble'}"],
        ["predict", f"run={run}", f"input={tmp_path / 'in.txt'}", f"output={tmp_path / 'out.jsonl'}"],
        ["export", f"run={run}", f"out={tmp_path / 'export'}", "max_drop=100"],
        ["serve", f"run={run}", "port=0"],
        ["train", "task=ner", "lang=zh", f"model={ner_run / 'model'}", f"distill.teacher={run}", "trainer.epochs=1"]
        + [f"data.train={Path(__file__).parent / 'fixtures' / 'zh_ner' / 'train.conll'}", "trainer.progress=false"]
        + [f"hydra.run.dir={tmp_path / 'student'}"],
    ):
        main(argv)
        assert not marker.exists(), argv
    scored = json.loads((tmp_path / "eval" / "metrics.json").read_text())["test"]["zh"]
    assert "f1" in scored and not any(key.startswith("evil_metric") for key in scored)
    assert not marker.exists()


def test_a_hub_metric_module_needs_the_consent_too(tiny_models, tmp_path, capsys, monkeypatch):
    import evaluate

    monkeypatch.setattr(evaluate, "load", lambda *a, **k: pytest.fail("evaluate.load was called"))
    data = f"data.train={Path(__file__).parent / 'fixtures' / 'zh_ner' / 'train.conll'}"
    run = tmp_path / "run"
    args = ["train", "task=ner", "lang=zh", f"model={tiny_models['unigram']}", data, f"hydra.run.dir={run}"]
    err = exit_2(capsys, *args, "task.evaluate=seqeval")
    assert "task.evaluate: 'seqeval' is an evaluate module, which is Python code" in err
    assert "task.trust_metric_code=true" in err and not run.exists()
