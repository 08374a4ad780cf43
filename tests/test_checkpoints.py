"""Checkpoints survive failures: a full disk, an interrupted write, retention, and resume without unsafe loading."""

from __future__ import annotations

import errno
import shutil

import pytest
import torch
from accelerate import Accelerator
from safetensors.torch import load_file

from mlft.cli import main
from mlft.engine import checkpoint

from helpers import ZH_NER, assert_final_weights_are, metrics, train

STEPS = ["trainer.epochs=2", "trainer.eval_strategy=steps", "trainer.eval_steps=2", "trainer.keep_last=1"]


def test_disk_full_during_a_checkpoint_keeps_the_previous_one(tmp_path, tiny_models, monkeypatch, capsys):
    real_save = Accelerator.save_state
    calls = []

    def save_state(self, output_dir=None, **kwargs):
        calls.append(output_dir)
        if len(calls) == 2:
            real_save(self, output_dir, **kwargs)  # half-written, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(self, output_dir, **kwargs)

    monkeypatch.setattr(Accelerator, "save_state", save_state)
    run_dir = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        train(run_dir, tiny_models["wordpiece"], *ZH_NER, *STEPS)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert "No space left on device" in err and "step-2" in err and "Traceback" not in err
    root = run_dir / "checkpoints"
    assert [p.name for p in checkpoint.step_dirs(root)] == ["step-2"]
    assert not list(root.glob(".tmp-*"))
    assert checkpoint.read_state(root / "step-2")["global_step"] == 2

    monkeypatch.setattr(Accelerator, "save_state", real_save)
    main(["train", f"resume={run_dir}"])  # the kept checkpoint resumes
    assert metrics(run_dir)["test"]["zh"]["n"] > 0


def test_retention_keeps_the_newest_steps_and_always_the_best(tmp_path, tiny_models):
    run_dir = train(tmp_path / "run", tiny_models["wordpiece"], *ZH_NER, *STEPS)
    root = run_dir / "checkpoints"
    m = metrics(run_dir)
    assert len(checkpoint.step_dirs(root)) == 1
    assert checkpoint.step_dirs(root)[0].name == f"step-{m['history'][-1]['step']}"
    assert_final_weights_are(run_dir, load_file(root / "best" / "model.safetensors"), atol=0)
    assert m["selection"]["best_step"] in [h["step"] for h in m["history"]]


def test_an_interrupted_write_is_ignored_and_an_interrupted_rename_is_undone(tmp_path):
    root = tmp_path / "checkpoints"
    complete = root / "step-4"
    complete.mkdir(parents=True)
    checkpoint.write_state(complete, {"global_step": 4})
    (root / ".tmp-step-6").mkdir()  # killed while writing
    (root / "step-8").mkdir()  # no trainer_state.json: never committed
    assert checkpoint.latest(root) == complete

    best = root / "best"
    (root / ".old-best").mkdir()  # killed between the two renames of a commit
    (root / ".old-best" / "model.safetensors").write_bytes(b"weights")
    checkpoint.recover(best)
    assert (best / "model.safetensors").read_bytes() == b"weights"

    with pytest.raises(RuntimeError):
        checkpoint.write_atomic(best, lambda tmp: (_ for _ in ()).throw(RuntimeError("disk")))
    assert (best / "model.safetensors").read_bytes() == b"weights" and not (root / ".tmp-best").exists()


def test_resume_loads_nothing_with_pickle(tmp_path, tiny_models, monkeypatch):
    run_dir = train(tmp_path / "run", tiny_models["wordpiece"], *ZH_NER, *STEPS)
    assert not list((run_dir / "checkpoints").rglob("custom_checkpoint_*"))  # nothing saved with pickle only
    real_load = torch.load
    loads = []

    def load(*args, **kwargs):
        loads.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", load)
    main(["train", f"resume={run_dir}"])
    assert loads and all(w is True for w in loads), loads


def test_a_nan_loss_stops_with_a_message_and_keeps_the_last_checkpoint(tmp_path, tiny_models, monkeypatch, capsys):
    from transformers import BertForTokenClassification

    real_forward = BertForTokenClassification.forward
    calls = []

    def forward(self, *args, **kwargs):
        out = real_forward(self, *args, **kwargs)
        if self.training:
            calls.append(1)
            if len(calls) == 3:  # after the checkpoint of step 2
                out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(BertForTokenClassification, "forward", forward)
    run_dir = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        train(run_dir, tiny_models["wordpiece"], *ZH_NER, *STEPS)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "training diverged" in err and "loss is nan at step 2" in err
    assert "step-2" in err and "Traceback" not in err
    assert [p.name for p in checkpoint.step_dirs(run_dir / "checkpoints")] == ["step-2"]


def test_save_steps_checkpoints_mid_epoch_without_evaluating_and_resumes_from_there(tmp_path, tiny_models, caplog):
    # 48 sentences / batch 8 = 6 steps per epoch: saves at 2, 4, the epoch's evaluation at 6, then 8, 10, 12.
    args = [*ZH_NER, "trainer.epochs=2", "trainer.save_steps=2", "trainer.keep_last=100"]
    reference = train(tmp_path / "reference", tiny_models["wordpiece"], *args)
    root = reference / "checkpoints"
    assert [p.name for p in checkpoint.step_dirs(root)] == [f"step-{n}" for n in (2, 4, 6, 8, 10, 12)]
    assert [h["step"] for h in metrics(reference)["history"]] == [6, 12]  # saving is not evaluating
    assert checkpoint.read_state(root / "step-4")["batches_done"] == 4

    # The run as it was when stopped after its step-4 checkpoint (nothing evaluated or saved after it yet).
    stopped = tmp_path / "stopped"
    shutil.copytree(reference, stopped)
    for later in ("model", "checkpoints/best", *(f"checkpoints/step-{n}" for n in (6, 8, 10, 12))):
        shutil.rmtree(stopped / later)
    (stopped / "metrics.json").unlink()
    caplog.set_level("INFO", logger="mlft")
    main(["train", f"resume={stopped}"])
    assert f"resumed from {stopped / 'checkpoints' / 'step-4'} (step 4, epoch 0)" in caplog.text
    assert metrics(stopped)["history"] == metrics(reference)["history"]
    final, expected = (
        load_file(stopped / "model" / "model.safetensors"),
        load_file(reference / "model" / "model.safetensors"),
    )
    for name in expected:
        torch.testing.assert_close(final[name], expected[name], rtol=0, atol=1e-6)


def _stopped_after_step_4(reference, tmp_path):
    """The reference run as it was when stopped after its step-4 checkpoint."""
    stopped = tmp_path / "stopped"
    shutil.copytree(reference, stopped)
    for later in ("model", "checkpoints/best", *(f"checkpoints/step-{n}" for n in (6, 8, 10, 12))):
        shutil.rmtree(stopped / later)
    (stopped / "metrics.json").unlink()
    return stopped


@pytest.fixture(scope="module")
def saved_every_2_steps(tmp_path_factory, tiny_models):
    args = [*ZH_NER, "trainer.epochs=2", "trainer.save_steps=2", "trainer.keep_last=100"]
    return train(tmp_path_factory.mktemp("ref") / "run", tiny_models["wordpiece"], *args)


@pytest.mark.parametrize("damage", ["missing", "unreadable"])
def test_a_checkpoint_without_its_rng_state_is_not_resumed_as_if_nothing_happened(
    saved_every_2_steps, tmp_path, capsys, damage
):
    stopped = _stopped_after_step_4(saved_every_2_steps, tmp_path)
    rng = checkpoint.rng_file(stopped / "checkpoints" / "step-4", 0)
    rng.unlink() if damage == "missing" else rng.write_bytes(b"not a torch file")
    with pytest.raises(SystemExit) as exit_info:
        main(["train", f"resume={stopped}"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in err
    assert f"random_states_0.pkl: {damage}" in err and "trainer.resume_inexact=true" in err
    assert not (stopped / "model").exists()  # nothing was trained

    main(["train", f"resume={stopped}", "trainer.resume_inexact=true"])  # asked for: continues, and says so
    assert metrics(stopped)["inexact_resumes"] == [4]


def test_a_checkpoint_without_its_optimizer_state_cannot_be_resumed(saved_every_2_steps, tmp_path, capsys):
    stopped = _stopped_after_step_4(saved_every_2_steps, tmp_path)
    (stopped / "checkpoints" / "step-4" / "optimizer.bin").unlink()
    with pytest.raises(SystemExit) as exit_info:
        main(["train", f"resume={stopped}", "trainer.resume_inexact=true"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "optimizer.bin: missing" in err and "delete" in err


def test_a_run_stopped_before_its_first_checkpoint_resumes_from_the_start(saved_every_2_steps, tmp_path, capsys):
    # Killed while loading data and model: the directory holds only what claiming it wrote.
    stopped = tmp_path / "stopped"
    (stopped / ".hydra").mkdir(parents=True)
    for name in (".hydra/config.yaml", ".hydra/overrides.yaml", "config.yaml"):
        shutil.copyfile(saved_every_2_steps / name, stopped / name)
    with pytest.raises(SystemExit):  # rerunning the same command into it: refused, pointing at resume=
        main(["train", f"hydra.run.dir={stopped}", *ZH_NER])
    assert f"resume={stopped}" in capsys.readouterr().err
    main(["train", f"resume={stopped}"])
    assert metrics(stopped)["history"] == metrics(saved_every_2_steps)["history"]
    assert (stopped / "env.json").is_file()
    final = load_file(stopped / "model" / "model.safetensors")
    expected = load_file(saved_every_2_steps / "model" / "model.safetensors")
    for name in expected:
        torch.testing.assert_close(final[name], expected[name], rtol=0, atol=1e-6)


@pytest.mark.parametrize("damage", ["state-garbage", "weights-truncated", "optimizer-zeros", "optimizer-pickled"])
def test_a_damaged_checkpoint_is_exit_2_naming_it_and_runs_nothing(ner_run, tmp_path, capsys, damage):
    import os
    import shutil

    from helpers import cli_error, snapshot

    run = tmp_path / "run"
    shutil.copytree(ner_run, run)
    step = next((run / "checkpoints").glob("step-*"))
    marker = tmp_path / "unpickled"
    if damage == "state-garbage":
        (step / "trainer_state.json").write_text("garbage")
    elif damage == "weights-truncated":
        with (step / "model.safetensors").open("r+b") as f:
            f.truncate(500)
    elif damage == "optimizer-zeros":
        (step / "optimizer.bin").write_bytes(bytes(1000))
    else:

        class Payload:
            def __reduce__(self):
                return (os.system, (f"touch {marker}",))

        torch.save({"state": Payload()}, step / "optimizer.bin")
    before = {k: v for k, v in snapshot(tmp_path).items() if not k.endswith("train.log")}
    err = cli_error(capsys, "train", f"resume={run}")
    assert f"{step}: cannot resume from this checkpoint" in err and f"delete {step}" in err
    assert "Traceback" not in err and "weights_only=False" not in err and not marker.exists()
    after = {k: v for k, v in snapshot(tmp_path).items() if not k.endswith("train.log")}  # the log records it
    assert after == before
