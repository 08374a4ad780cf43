"""Continual training (trainer.stages): stages in sequence on one model, the forgetting matrix, replay, and the
EWC / L2 penalty checked against its formula."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf
from safetensors.torch import load_file

from mlft.cli import main
from mlft.commands.continual import transfer
from mlft.engine.continual import Anchor, attach_anchor, estimate_fisher, penalty, with_rows
from mlft.engine.hooks import Hooks

from conftest import FIXTURES
from helpers import cli_error, metrics, train


def stage(name: str, lang: str, **extra: str) -> str:
    """A stage on a fixture NER corpus, as the trainer.stages override spells it."""
    files = ", ".join(f"{split}: {FIXTURES / f'{lang}_ner' / f'{split}.conll'}" for split in ("train", "dev", "test"))
    more = "".join(f", {key}: {value}" for key, value in extra.items())
    return f"{{name: {name}, lang: {lang}, data: {{{files}}}{more}}}"


STAGES = f"trainer.stages=[{stage('zh', 'zh')}, {stage('en', 'en')}]"
BASE = ["task=ner", "lang=zh", "trainer.epochs=2"]


@pytest.fixture(scope="module")
def staged(tmp_path_factory, tiny_models) -> Path:
    return train(tmp_path_factory.mktemp("continual") / "run", tiny_models["unigram"], *BASE, STAGES)


def weights(model_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(model_dir / "model.safetensors"))


# The sequence


def test_each_stage_is_a_run_that_starts_from_the_stage_before(staged):
    first, second = staged / "stages" / "1-zh", staged / "stages" / "2-en"
    assert (first / "model" / "config.json").is_file() and (second / "model" / "config.json").is_file()
    config = OmegaConf.to_container(OmegaConf.load(second / "config.yaml"))
    assert Path(config["model"]["name_or_path"]) == (first / "model").resolve()
    assert config["trainer"]["stages"] == [] and config["lang"]["train"] == ["en"]
    # Training moved the second stage's weights away from the first's.
    a, b = weights(first / "model"), weights(second / "model")
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_the_matrix_holds_every_stage_scored_after_every_stage(staged):
    record = metrics(staged)["continual"]
    assert [s["name"] for s in record["stages"]] == ["zh", "en"]
    after = record["after"]
    # The diagonal: each stage's own final test score, as its run reported it.
    for name in ("zh", "en"):
        own = metrics(staged / "stages" / ("1-zh" if name == "zh" else "2-en"))["test"][name]["f1"]
        assert after[name][name]["score"] == pytest.approx(own, abs=1e-9)
    # Off the diagonal: what `mlft eval` of that stage's model says on the other stage's test file.
    out = staged / "eval-zh-after-en"
    main(["eval", f"run={staged / 'stages' / '2-en'}", "lang=[zh]", "split=[test]",
          f"test={FIXTURES / 'zh_ner' / 'test.conll'}", f"out={out}"])  # fmt: skip
    evaluated = json.loads((out / "metrics.json").read_text())["test"]["zh"]["f1"]
    assert after["en"]["zh"]["score"] == pytest.approx(evaluated, abs=1e-9)
    assert record["matrix"] == [[after[k][j]["score"] for j in ("zh", "en")] for k in ("zh", "en")]
    # The summary numbers follow from the matrix.
    r, b = record["matrix"], [record["before"][j]["score"] for j in ("zh", "en")]
    assert record["backward_transfer"] == pytest.approx(r[1][0] - r[0][0])
    assert record["forward_transfer"] == pytest.approx(r[0][1] - b[1])
    assert record["average"] == pytest.approx((r[1][0] + r[1][1]) / 2)
    # What a sweep ranks the sequence by: the final model's dev score, averaged over the stages.
    selection = metrics(staged)["selection"]
    last_dev = metrics(staged / "stages" / "2-en")["dev"]["en"]["f1"]
    assert selection["final_dev"]["en"]["score"] == pytest.approx(last_dev, abs=1e-9)
    assert selection["final_score"] == pytest.approx((selection["final_dev"]["zh"]["score"] + last_dev) / 2)
    report = (staged / "report.md").read_text()
    assert "| after \\ scored on | zh | en |" in report and "backward transfer" in report
    assert (staged / "plots" / "forgetting.png").stat().st_size > 1000


def test_eval_of_the_sequence_names_a_stage_to_evaluate(capsys, staged):
    err = cli_error(capsys, "eval", f"run={staged}")
    assert "a continual run (trainer.stages) has no model of its own" in err and "stages/2-en" in err


def test_transfer_measures_of_a_known_matrix():
    rows = {"a": {"a": {"score": 0.8}, "b": {"score": 0.3}}, "b": {"a": {"score": 0.5}, "b": {"score": 0.9}}}
    before = {"a": {"score": 0.1}, "b": {"score": 0.2}}
    result = transfer(["a", "b"], before, rows, higher=True)
    assert result["average"] == pytest.approx(0.7)
    assert result["backward_transfer"] == pytest.approx(-0.3)
    assert result["forward_transfer"] == pytest.approx(0.1)
    assert result["forgetting"] == {"a": pytest.approx(0.3)}
    lower = transfer(["a", "b"], before, rows, higher=False)  # a loss: going up is forgetting
    assert lower["backward_transfer"] == pytest.approx(0.3)


def test_a_resumed_sequence_trains_only_the_stages_not_finished(tmp_path, tiny_models, staged):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(staged, run)
    for path in run.rglob("config.yaml"):  # the copy's stages start from the copy's models
        path.write_text(path.read_text().replace(str(staged.resolve()), str(run.resolve())))
    shutil.rmtree(run / "stages" / "2-en")
    progress = json.loads((run / "stages.json").read_text())
    del progress["rows"]["en"]
    (run / "stages.json").write_text(json.dumps(progress))
    first = (run / "stages" / "1-zh" / "model" / "model.safetensors").stat().st_mtime_ns
    main(["train", f"resume={run}", "trainer.progress=false"])
    assert (run / "stages" / "1-zh" / "model" / "model.safetensors").stat().st_mtime_ns == first
    assert (run / "stages" / "2-en" / "model" / "config.json").is_file()
    assert set(metrics(run)["continual"]["after"]) == {"zh", "en"}


# Replay


def test_replay_adds_a_fixed_share_of_the_earlier_stage(tmp_path, tiny_models, staged):
    run = train(tmp_path / "run", tiny_models["unigram"], *BASE, STAGES, "trainer.continual.replay=0.5")
    plain, replayed = (metrics(r / "stages" / "2-en")["throughput"]["train_samples"] for r in (staged, run))
    zh_train = metrics(staged / "stages" / "1-zh")["throughput"]["train_samples"] // 2  # 2 epochs
    assert replayed - plain == 2 * round(0.5 * zh_train)
    # The first stage has nothing to replay.
    first = (metrics(r / "stages" / "1-zh")["throughput"]["train_samples"] for r in (staged, run))
    assert len(set(first)) == 1


# The penalty


def test_penalty_is_half_lambda_times_the_weighted_squared_distance():
    model = torch.nn.Linear(3, 2)
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    with torch.no_grad():
        model.weight += 0.5
        model.bias -= 0.25
    importance = {"weight": torch.full((2, 3), 2.0), "bias": torch.tensor([1.0, 3.0])}
    params = dict(model.named_parameters())
    got = penalty(params, start, Anchor(0.1, importance))
    assert got.item() == pytest.approx(0.1 / 2 * (6 * 2 * 0.25 + (1 + 3) * 0.0625))
    assert penalty(params, start, Anchor(0.1)).item() == pytest.approx(0.1 / 2 * (6 * 0.25 + 2 * 0.0625))


def test_the_hook_adds_the_penalty_towards_the_weights_at_attach_time():
    model = torch.nn.Linear(2, 1)
    hooks = Hooks()
    attach_anchor(hooks, model, Anchor(4.0))
    with torch.no_grad():
        model.weight += 1.0
    loss = hooks.training_loss({}, SimpleNamespace(loss=torch.tensor(0.5)))
    assert loss.item() == pytest.approx(0.5 + 4.0 / 2 * 2)


def test_with_compact_embeddings_the_importance_follows_the_trained_rows():
    importance = {"emb": torch.arange(12.0).view(6, 2), "w": torch.ones(3)}
    compact = with_rows(Anchor(0.5, importance), "emb", torch.tensor([4, 0, 2]))
    assert torch.equal(compact.importance["emb"], torch.tensor([[8.0, 9.0], [0.0, 1.0], [4.0, 5.0]]))
    assert compact.importance["w"] is importance["w"] and compact.strength == 0.5
    assert with_rows(Anchor(0.5), "emb", torch.tensor([0])).importance is None


class Scored(torch.nn.Module):
    """A model whose forward returns .loss like a transformers model's."""

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(3, 1)

    def forward(self, x, y):
        return SimpleNamespace(loss=((self.linear(x).squeeze(-1) - y) ** 2).mean())


def test_fisher_is_the_mean_squared_gradient_scaled_to_mean_one():
    torch.manual_seed(0)
    model = Scored()
    batches = [{"x": torch.randn(4, 3), "y": torch.randn(4)} for _ in range(3)]
    fisher = estimate_fisher(model, batches)
    expected = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    for batch in batches:
        grads = torch.autograd.grad(model(**batch).loss, list(model.parameters()))
        for (name, _), g in zip(model.named_parameters(), grads):
            expected[name] += g**2 / len(batches)
    mean = sum(e.sum() for e in expected.values()) / sum(e.numel() for e in expected.values())
    for name in expected:
        torch.testing.assert_close(fisher[name], expected[name] / mean)
    assert all(p.grad is None for p in model.parameters())


def test_ewc_writes_the_fisher_and_a_strong_l2_keeps_the_weights_near_the_stage_before(tmp_path, tiny_models, staged):
    ewc = train(tmp_path / "ewc", tiny_models["unigram"], *BASE, STAGES, "trainer.continual.regulariser=ewc")
    fisher = load_file(str(ewc / "stages" / "1-zh" / "fisher.safetensors"))
    assert fisher and all(v.min() >= 0 for v in fisher.values())
    assert metrics(ewc)["continual"]["regulariser"] == "ewc"
    held = train(
        tmp_path / "l2", tiny_models["unigram"], *BASE, STAGES,
        "trainer.continual.regulariser=l2", "trainer.continual.strength=1000",
    )  # fmt: skip

    def moved(run: Path) -> float:
        a, b = weights(run / "stages" / "1-zh" / "model"), weights(run / "stages" / "2-en" / "model")
        return sum(float(((a[k] - b[k]) ** 2).sum()) for k in a if "embeddings.word" not in k)

    assert moved(held) < 0.1 * moved(staged)


# Config errors


def test_stage_config_errors_name_the_stage_and_the_key(capsys, tiny_models):
    err = cli_error(
        capsys, "train", f"model={tiny_models['unigram']}", *BASE,
        "trainer.stages=[{task: nosuchtask}, {lang: en, trainer: {stages: []}, data: {max_train_samples: 0}}]",
    )  # fmt: skip
    assert "trainer.stages[0].task: no preset 'nosuchtask'" in err and "ner_pd98" in err
    assert "trainer.stages[1].trainer.stages: not a key a stage can set" in err
    err = cli_error(
        capsys,
        "train",
        f"model={tiny_models['unigram']}",
        *BASE,
        "trainer.stages=[{lang: en}, {data: {max_train_samples: 0}}]",
    )
    assert "trainer.stages[1]: data.max_train_samples: must be >= 1" in err
    err = cli_error(
        capsys, "train", f"model={tiny_models['unigram']}", *BASE, "trainer.stages=[{lang: zh}, {task: sentiment}]"
    )
    assert "every stage trains the same kind of task" in err and "sentiment: sequence_classification" in err
    err = cli_error(capsys, "train", f"model={tiny_models['unigram']}", *BASE, "trainer.continual.replay=0.2")
    assert "trainer.continual: replay and regularisers act between stages" in err
    err = cli_error(
        capsys, "train", f"model={tiny_models['unigram']}", *BASE, STAGES, "peft=lora",
        "trainer.continual.regulariser=ewc", "trainer.continual.replay=2",
    )  # fmt: skip
    assert "trainer.continual.regulariser: anchors the model's own weights; with peft.method=lora" in err
    assert "trainer.continual.replay: must be in [0, 1], got 2" in err
    err = cli_error(
        capsys, "train", f"model={tiny_models['unigram']}", *BASE, "trainer.stages=[{name: a/b}, {name: c}]"
    )
    assert "trainer.stages[0].name: 'a/b' names a folder" in err
