"""Multi-process evaluation and crash/resume: real subprocesses, so marked slow (they run in CI)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import FIXTURES, ROOT
from helpers import FAST, ZH_NER, metrics, run_cli

pytestmark = pytest.mark.slow


def test_two_process_evaluation_equals_one_process(tmp_path, tiny_models):
    run = tmp_path / "run"
    result = run_cli(
        "train",
        f"model={tiny_models['unigram']}",
        "trainer.num_processes=2",
        "trainer.cpu=true",
        "trainer.epochs=4",
        "data.max_dev_samples=15",
        "data.max_test_samples=15",
        *FAST,
        *ZH_NER,
        f"hydra.run.dir={run}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(list((run / "checkpoints").glob("step-*/random_states_*.pkl"))) == 2  # both ranks, one directory
    assert not any(p.name.startswith("20") for p in tmp_path.iterdir())  # no rank invented its own directory
    two = metrics(run)
    assert two["dev"]["zh"]["n"] == 15  # the duplicate samples of the uneven last batch were dropped
    result = run_cli("eval", f"run={run}")
    assert result.returncode == 0, result.stderr[-3000:]
    one = json.loads(next((run / "evals").iterdir()).joinpath("metrics.json").read_text())
    assert one["dev"] == two["dev"] and one["test"] == two["test"]
    assert two["dev"]["zh"]["f1"] > 0  # a trained model, so the comparison is not between two empty outputs


def test_accelerate_launch_cpu_with_several_processes_warns_that_it_ran_one(tmp_path, tiny_models):
    run = tmp_path / "run"
    accelerate = Path(sys.executable).parent / "accelerate"
    command = [str(accelerate), "launch", "--num_processes", "2", "--cpu", "-m", "mlft"]
    result = subprocess.run(
        [
            *command,
            "train",
            f"model={tiny_models['unigram']}",
            "trainer.epochs=1",
            *FAST,
            *ZH_NER,
            "data.max_train_samples=8",
            f"hydra.run.dir={run}",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "--num_processes 2 started one process" in result.stderr
    assert "trainer.num_processes=2 trainer.cpu=true" in result.stderr
    assert json.loads((run / "env.json").read_text())["devices"]["processes"] == 1


# Joint zh + en training with temperature sampling, one language per batch: the language mix of each epoch
# must be replayed on resume too.
SAMPLED = [
    f"task.datasets={{zh: '{FIXTURES}/zh_ner/{{split}}.conll', en: '{FIXTURES}/en_ner/{{split}}.conll'}}",
    "lang=zh_en",
    "data.max_train_samples=30",
    "trainer.lang_sampling.temperature=3",
    "trainer.lang_sampling.mixing=step",
]


def _start(run_dir, model, data):
    args = [
        "train",
        f"model={model}",
        "trainer.eval_strategy=steps",
        "trainer.eval_steps=5",
        "trainer.keep_last=100",
        "trainer.epochs=25",
        *FAST,
        *data,
        f"hydra.run.dir={run_dir}",
    ]
    return subprocess.Popen(
        [sys.executable, "-m", "mlft", *args], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )


@pytest.mark.parametrize(
    "data",
    [ZH_NER, SAMPLED, [*ZH_NER, "peft=lora", "peft.lr=5e-2"]],
    ids=["one-language", "language-sampling", "lora-adapter"],
)
def test_resume_after_sigkill_matches_an_uninterrupted_run(tmp_path, tiny_models, data):
    model = tiny_models["unigram"]
    reference = _start(tmp_path / "reference", model, data)
    assert reference.wait(timeout=600) == 0, reference.stderr.read()[-3000:]

    crashed = tmp_path / "crashed"
    process = _start(crashed, model, data)
    deadline = time.time() + 300
    while not (crashed / "checkpoints" / "step-40" / "trainer_state.json").exists():
        assert process.poll() is None and time.time() < deadline, "training ended before it could be killed"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (crashed / "model").exists()

    result = run_cli("train", f"resume={crashed}")
    assert result.returncode == 0, result.stderr[-3000:]
    first, second = metrics(tmp_path / "reference"), metrics(crashed)
    assert second["selection"] == first["selection"]
    assert second.get("lang_sampling") == first.get("lang_sampling")
    assert second["dev"] == first["dev"] and second["test"] == first["test"]
    final_a = load_file(tmp_path / "reference" / "model" / "model.safetensors")
    final_b = load_file(crashed / "model" / "model.safetensors")
    assert final_a.keys() == final_b.keys()
    for name in final_a:
        torch.testing.assert_close(final_a[name], final_b[name], rtol=0, atol=1e-6)


# Loaded by every Python process of the run through PYTHONPATH: in the rank named by the variable,
# the second checkpoint write fails as on a full disk.
ENOSPC_SHIM = """
import os
if os.environ.get("MLFT_TEST_ENOSPC_RANK") == os.environ.get("RANK"):
    import errno
    import accelerate

    original, calls = accelerate.Accelerator.save_state, []

    def save_state(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(self, *args, **kwargs)

    accelerate.Accelerator.save_state = save_state
"""


def test_disk_full_on_one_of_two_processes_stops_both_and_keeps_the_previous_checkpoint(tmp_path, tiny_models):
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(ENOSPC_SHIM)
    run = tmp_path / "run"
    env = {"PYTHONPATH": f"{shim}:{ROOT}", "MLFT_TEST_ENOSPC_RANK": "1"}
    result = run_cli(
        "train",
        f"model={tiny_models['unigram']}",
        "trainer.num_processes=2",
        "trainer.cpu=true",
        "trainer.epochs=3",
        *FAST,
        *ZH_NER,
        f"hydra.run.dir={run}",
        env=env,
    )  # a rank waiting forever at a barrier would end in run_cli's timeout instead
    assert result.returncode != 0
    assert "cannot write the checkpoint (No space left on device)" in result.stderr  # the rank whose write failed
    assert "cannot write the checkpoint (another process could not write)" in result.stderr  # and the other one
    assert [p.name for p in (run / "checkpoints").iterdir() if p.name.startswith("step-")] == ["step-3"]
    assert not list((run / "checkpoints").glob(".tmp-*"))
