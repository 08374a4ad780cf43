"""Weight EMA (trainer.ema): the average's arithmetic, that evaluation, the best weights and the final model are the
averaged ones, that resuming is exact, and that a run without it is unchanged (the golden records pin that too)."""

from __future__ import annotations

import shutil

import pytest
import torch
from safetensors.torch import load_file

from mlft.cli import main
from mlft.engine import ema
from mlft.engine.hooks import Hooks

from helpers import ZH_NER, assert_final_weights_are, cli_error, metrics, train


def test_the_average_warms_up_then_decays_and_swapping_restores_the_trained_weights_exactly(tmp_path):
    model = torch.nn.Linear(3, 2)
    model.bias.requires_grad_(False)  # frozen weights are not averaged
    average = ema.WeightAverage(model, decay=0.9)
    expected = model.weight.detach().clone()
    for step in range(30):
        with torch.no_grad():
            model.weight.add_(1.0)
        average.update(step)
        decay = min(0.9, (1 + step) / (10 + step))
        expected = decay * expected + (1 - decay) * model.weight.detach()
    assert set(average.average) == {"weight"}
    torch.testing.assert_close(average.average["weight"], expected)
    trained = model.weight.detach().clone()
    average.swap_in()
    torch.testing.assert_close(model.weight.detach(), expected)
    average.swap_out()
    assert torch.equal(model.weight.detach(), trained)

    average.save(tmp_path)
    again = ema.WeightAverage(model, decay=0.9)
    again.load(tmp_path)
    assert again.updates == 30 and torch.equal(again.average["weight"], average.average["weight"])
    other = ema.WeightAverage(torch.nn.Linear(4, 2), decay=0.9)
    with pytest.raises(Exception, match="does not fit"):
        other.load(tmp_path)


def test_hooks_run_by_their_declared_order_not_by_when_they_were_added():
    hooks, ran = Hooks(), []
    hooks.add("step_end", lambda loop: ran.append("late"), 90)
    hooks.add("step_end", lambda loop: ran.append("first"), 0)
    hooks.add("step_end", lambda loop: ran.append("middle"))
    hooks.add("step_end", lambda loop: ran.append("middle, added later"))
    hooks.run("step_end", None)
    assert ran == ["first", "middle", "middle, added later", "late"]


EMA_RUN = [*ZH_NER, "trainer.epochs=3", "trainer.ema=0.8", "trainer.select=last", "trainer.keep_last=100"]


@pytest.fixture(scope="module")
def ema_run(tmp_path_factory, tiny_models):
    return train(tmp_path_factory.mktemp("ema") / "run", tiny_models["wordpiece"], *EMA_RUN)


def test_a_run_evaluates_keeps_and_ends_with_the_averaged_weights(ema_run):
    recorded = metrics(ema_run)
    assert recorded["techniques"]["ema"] == {"decay": 0.8}
    # select=last: the final model is the average at the last step, which the last evaluation scored.
    last = recorded["history"][-1]
    assert last["step"] == 18
    for key in ("f1", "precision", "recall", "accuracy"):
        assert recorded["dev"]["zh"][key] == pytest.approx(last[f"zh/{key}"])
    averaged = load_file(ema_run / "checkpoints" / "step-18" / ema.FILE)
    trained = load_file(ema_run / "checkpoints" / "step-18" / "model.safetensors")
    assert averaged.keys() == trained.keys()  # every weight trains here
    assert any(not torch.equal(averaged[name], trained[name]) for name in averaged)  # not the trained weights...
    assert_final_weights_are(ema_run, averaged)  # ...but what the run ended with


def test_a_resumed_ema_run_ends_exactly_like_an_uninterrupted_one(ema_run, tmp_path):
    stopped = tmp_path / "stopped"
    shutil.copytree(ema_run, stopped)
    for later in ("model", "checkpoints/best", "checkpoints/step-12", "checkpoints/step-18"):
        shutil.rmtree(stopped / later)
    (stopped / "metrics.json").unlink()
    main(["train", f"resume={stopped}"])
    assert metrics(stopped)["history"] == metrics(ema_run)["history"]
    final, expected = (
        load_file(stopped / "model" / "model.safetensors"),
        load_file(ema_run / "model" / "model.safetensors"),
    )
    for name in expected:
        torch.testing.assert_close(final[name], expected[name], rtol=0, atol=1e-6)


def test_a_checkpoint_without_the_average_is_not_resumed_as_if_it_had_one(ema_run, tmp_path, capsys):
    stopped = tmp_path / "stopped"
    shutil.copytree(ema_run, stopped)
    for later in ("model", "checkpoints/best", "checkpoints/step-12", "checkpoints/step-18"):
        shutil.rmtree(stopped / later)
    (stopped / "checkpoints" / "step-6" / ema.FILE).unlink()
    err = cli_error(capsys, "train", f"resume={stopped}")
    assert "ema.safetensors: cannot resume the weight average" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["trainer.ema=1.0"], "trainer.ema: the decay of the weight average, in (0, 1)"),
        (["trainer.ema=0"], "trainer.ema: the decay of the weight average, in (0, 1)"),
        (["trainer.ema=0.99", "trainer.select=average"], "trainer.select: average averages checkpoints"),
    ],
)
def test_impossible_ema_settings_are_refused(overrides, message, capsys, tiny_models, tmp_path):
    err = cli_error(
        capsys, "train", f"model={tiny_models['wordpiece']}", *ZH_NER, *overrides, f"hydra.run.dir={tmp_path}/r"
    )
    assert message in err and not (tmp_path / "r").exists()
