"""Trackers: TensorBoard by default, W&B (offline mode) and MLflow (a local store) when installed, none on request:
per-step and per-evaluation scalars, the config as parameters, the report as an artifact."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

from mlft.cli import main

from helpers import ZH_NER, run_cli, train

EPOCHS = ["trainer.epochs=2", "trainer.log_every=2", *ZH_NER[:2]]


def scalars(run: Path) -> dict[str, list[int]]:
    """TensorBoard scalar tag -> the steps it was written at."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    steps: dict[str, list[int]] = {}
    for events in (run / "tensorboard").rglob("events.out.tfevents.*"):
        accumulator = EventAccumulator(str(events))
        accumulator.Reload()
        for tag in accumulator.Tags()["scalars"]:
            steps.setdefault(tag, []).extend(e.step for e in accumulator.Scalars(tag))
    return steps


def test_tensorboard_gets_steps_evaluations_final_metrics_and_the_config(tmp_path, tiny_models):
    run = train(tmp_path / "run", tiny_models["unigram"], *EPOCHS)
    tags = scalars(run)
    for tag in ("train/loss", "train/lr", "train/samples_per_second", "eval/zh/f1", "final/dev/zh/f1"):
        assert tag in tags, sorted(tags)
    assert len(tags["train/loss"]) >= 3 and len(tags["eval/zh/f1"]) == 2  # every 2 steps; once per epoch
    params = yaml.safe_load(next((run / "tensorboard").rglob("hparams.yml")).read_text())
    assert params["optimizer.lr"] == 5e-3 and params["task.name"] == "ner"


def test_tracker_none_writes_nothing_and_a_bad_tracker_is_a_config_error(tmp_path, tiny_models, capsys, monkeypatch):
    run = train(tmp_path / "run", tiny_models["unigram"], *EPOCHS, "tracker=none")
    assert not (run / "tensorboard").exists() and not (run / "wandb").exists()
    with pytest.raises(SystemExit) as exit_info:
        train(tmp_path / "bad", tiny_models["unigram"], *EPOCHS, "tracker=comet")
    assert exit_info.value.code == 2
    assert "tracker: 'comet' is not a tracker (allowed: tensorboard, wandb, mlflow, none)" in capsys.readouterr().err
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(SystemExit):
        train(tmp_path / "bad", tiny_models["unigram"], *EPOCHS, "tracker=wandb")
    assert "tracker: 'wandb' needs the wandb package" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_wandb_offline_run_holds_config_scalars_and_report(tmp_path, tiny_models):
    pytest.importorskip("wandb")
    run = tmp_path / "run"
    result = run_cli(
        "train",
        f"model={tiny_models['unigram']}",
        "trainer.progress=false",
        "trainer.batch_size=8",
        "optimizer.lr=5e-3",
        *EPOCHS,
        "tracker=wandb",
        f"hydra.run.dir={run}",
        env={"WANDB_MODE": "offline", "WANDB_SILENT": "true"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (offline,) = (run / "wandb").glob("offline-run-*")
    config = yaml.safe_load((offline / "files" / "config.yaml").read_text())
    assert config["optimizer"]["lr"] == 5e-3 and config["task"]["name"] == "ner"  # W&B nests dotted keys
    assert (offline / "files" / "report.md").read_text() == (run / "report.md").read_text()
    records = next(offline.glob("run-*.wandb")).read_bytes()  # the run's logged records, as W&B syncs them
    assert b"train/loss" in records and b"eval/zh/f1" in records and b"final/dev/zh/f1" in records


def test_mlflow_run_holds_params_metric_history_and_report(tmp_path, tiny_models, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.chdir(tmp_path)  # MLflow's default artifact store is ./mlruns
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "tests")
    main(["train", f"model={tiny_models['unigram']}", "trainer.progress=false", *EPOCHS, "tracker=mlflow"])
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("tests").experiment_id])
    assert run.info.status == "FINISHED" and run.data.params["task.name"] == "ner"
    assert len(client.get_metric_history(run.info.run_id, "train/loss")) >= 3
    assert "final/dev/zh/f1" in run.data.metrics
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"report.md", "metrics.json", "config.yaml"}


@pytest.mark.parametrize(
    "tracker,env,message",
    [
        ("wandb", {"WANDB_MODE": "bogus"}, "WANDB_MODE='bogus' is not a W&B mode (allowed: online, offline"),
        ("wandb", {"WANDB_MODE": "online"}, "wandb has no credentials (WANDB_API_KEY, or `wandb login`)"),
        ("wandb", {"WANDB_API_KEY": "x" * 40, "WANDB_BASE_URL": "http://127.0.0.1:9"}, "cannot reach 127.0.0.1:9"),
        ("mlflow", {"MLFLOW_TRACKING_URI": "file:///tmp/mlruns"}, "is a file store, which MLflow 3 no longer"),
        ("mlflow", {"MLFLOW_TRACKING_URI": "foo://x"}, "unknown scheme 'foo'"),
        ("mlflow", {"MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}, "cannot reach 127.0.0.1:9 (Connection refused)"),
    ],
)
def test_a_tracker_that_cannot_start_is_exit_2_with_the_fix_before_anything_runs(
    tracker, env, message, tmp_path, tiny_models, capsys, monkeypatch
):
    pytest.importorskip(tracker)
    from helpers import cli_error

    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc with W&B credentials
    for key in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_BASE_URL", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    run = tmp_path / "run"
    err = cli_error(
        capsys, "train", "task=ner", "lang=zh", f"model={tiny_models['unigram']}", *ZH_NER[:1], f"tracker={tracker}",
        f"hydra.run.dir={run}",
    )  # fmt: skip
    assert message in err and "Traceback" not in err and not run.exists()


def test_a_tracker_failing_during_and_after_training_costs_only_its_own_copy(
    tmp_path, tiny_models, monkeypatch, caplog
):
    from accelerate import Accelerator

    def broken(self, *args, **kwargs):
        raise ConnectionError("tracking server gone")

    monkeypatch.setattr(Accelerator, "log", broken)
    monkeypatch.setattr(Accelerator, "end_training", broken)
    run = train(tmp_path / "run", tiny_models["unigram"], *EPOCHS)
    assert (run / "model" / "config.json").is_file() and (run / "metrics.json").is_file()
    warned = [r.message for r in caplog.records if r.message.startswith("tracker:")]
    assert any("logging failed (tracking server gone)" in w for w in warned)
    assert any("closing the tracker's run failed" in w for w in warned)
