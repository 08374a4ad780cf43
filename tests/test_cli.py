"""The command line as users meet it: help, exit codes, no tracebacks, sweeps."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from mlft.cli import main

from conftest import FIXTURES
from helpers import FAST, ZH_NER, run_cli


def test_help_lists_subcommands():
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ("train", "eval", "predict", "export"):
        assert command in result.stdout


def test_train_help_lists_groups_and_options():
    result = run_cli("train", "--help")
    assert result.returncode == 0
    assert "task: amazon_reviews, cmrc2018, drcd, mlm, mlqa, msra_ner_hub, multilabel, ner, ner_pd98" in result.stdout
    assert "model: bert_base_chinese, hf, mbert, me5_small" in result.stdout


def test_config_errors_exit_2_without_traceback(tmp_path):
    result = run_cli("train", "task=nerx", "optimizer.lr=abc", "trainer.bogus=1", f"run_root={tmp_path}")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "task: 'nerx' is not a task preset" in result.stderr
    assert "optimizer.lr: expected float, got 'abc'" in result.stderr
    assert "trainer.bogus: unknown key" in result.stderr
    assert not any(tmp_path.iterdir())  # nothing was created


def test_data_errors_exit_2_with_file_and_line(tmp_path, tiny_models):
    bad = tmp_path / "bad.conll"
    bad.write_text("张\tB-PER\n伟\tI-LOC\n")
    result = run_cli(
        "train", f"model={tiny_models['unigram']}", f"data.train={bad}", f"hydra.run.dir={tmp_path / 'r'}"
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert f"{bad}:2:" in result.stderr


def test_eval_of_a_missing_run_exits_2(tmp_path):
    result = run_cli("eval", f"run={tmp_path}")
    assert result.returncode == 2 and "not a run directory" in result.stderr


def test_sweep_runs_each_job_as_an_ordinary_run_directory(tmp_path, tiny_models):
    result = run_cli(
        "train",
        "-m",
        f"model={tiny_models['unigram']}",
        "optimizer.lr=1e-3,5e-3",
        "seed=1,2",
        "trainer.epochs=1",
        *FAST[:2],
        *ZH_NER[:2],
        f"hydra.sweep.dir={tmp_path}",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    jobs = sorted(p for p in tmp_path.iterdir() if p.is_dir())
    assert len(jobs) == 4
    for job in jobs:
        assert (job / "metrics.json").exists()
        assert (job / ".hydra" / "overrides.yaml").exists()
    lrs = {yaml.safe_load((job / "config.yaml").read_text())["optimizer"]["lr"] for job in jobs}
    assert lrs == {0.001, 0.005}
    # Job folders are named after the swept keys only (every override made names pass 255 bytes).
    names = [job.name.split("_", 1)[1].split(",") for job in jobs]
    assert all([n.split("=")[0] for n in name] == ["optimizer.lr", "seed"] for name in names), names


def test_python_dash_m_mlft_trains(tmp_path, tiny_models):
    result = run_cli(
        "train",
        f"model={tiny_models['wordpiece']}",
        "task=sentiment",
        "lang=en",
        "trainer.epochs=1",
        *FAST,
        f"data.train={FIXTURES / 'sentiment' / 'en_train.jsonl'}",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "run" / "model" / "model.safetensors").exists()


def test_hydra_flags_with_values_work_after_the_overrides(tmp_path, tiny_models):
    # Hydra accepts `--cfg job` anywhere; its value must not be read as an override.
    result = run_cli("train", "task=topic", "lang=en_to_all", f"model={tiny_models['wordpiece']}", "--cfg", "job")
    assert result.returncode == 0, result.stderr
    printed = yaml.safe_load(result.stdout)
    assert printed["task"]["name"] == "topic" and printed["lang"]["name"] == "en_to_all"
    result = run_cli("train", "--info", "defaults", "task=topic")
    assert result.returncode == 0 and "task/topic" in result.stdout, result.stderr


@pytest.mark.parametrize(
    "command,key,doc",
    [
        ("eval", "split: list['dev' | 'test'] | null (default null)", "Splits to evaluate"),
        ("predict", "precision: 'run' | 'no' | 'bf16' (default \"run\")", "Autocast of the model call"),
        ("export", "max_drop: float (default 0.5)", "Largest allowed drop of the task metric"),
        ("serve", "port: int (default 8080)", "TCP port"),
        ("report", "sweep: str | null (default null)", "searched recursively"),
    ],
)
def test_every_command_prints_its_keys_with_types_defaults_and_help(command, key, doc, capsys):
    main([command, "--help"])  # returns: exit 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: mlft {command}") and key in out and doc in out


def test_train_help_lists_groups_and_every_key_or_one_section(capsys):
    main(["train", "--help"])
    out = capsys.readouterr().out
    assert "experiment: demo, ner_en_to_zh" in out and "trainer.save_steps: int | null (default null)" in out
    assert "optimizer.warmup_fraction: float | null (default 0.1)" in out and "Warmup length as a fraction" in out
    main(["train", "--help", "trainer"])
    section = capsys.readouterr().out
    assert "trainer.epochs: int (default 3)" in section and "optimizer.lr:" not in section


@pytest.mark.parametrize("command", ["data", "models"])
def test_list_commands_have_help(command, capsys):
    main([command, "--help"])
    assert capsys.readouterr().out.startswith(f"usage: mlft {command} list")


def test_an_unknown_command_gets_a_suggestion(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["evl", "run=x"])
    assert exit_info.value.code == 2 and "did you mean 'eval'?" in capsys.readouterr().err


def test_help_and_config_errors_of_every_command_import_no_torch(tmp_path):
    """`mlft <command> --help`, a bad key=value, a run, export or file that is not there, and a train config error
    need only the arguments' dataclasses, mlft.commands.preflight and the task types' declarations: no torch, no
    transformers (they took 30-50 s on a loaded machine when the command modules were imported for them)."""
    text = tmp_path / "texts.txt"
    text.write_text("一\n")
    mistakes = [
        ["eval", "no_such_key=1"],
        ["eval", f"run={tmp_path}/no-run"],
        ["eval", f"run={tmp_path}", f"dev={tmp_path}/no.conll"],
        ["predict", f"run={tmp_path}/no-run", f"input={text}"],
        ["predict", f"model={tmp_path}", f"input={text}"],
        ["predict", f"run={tmp_path}", f"input={tmp_path}/no.txt"],
        ["predict", f"input={text}"],
        ["export", f"run={tmp_path}/no-run"],
        ["export", f"run={tmp_path}", "format=hf", "quantize=int8"],
        ["export", f"runs=[{tmp_path}]"],
        ["serve", f"model={tmp_path}/no-export"],
        ["serve", f"run={tmp_path}", "port=70000"],
        ["report", "no_such_key=1"],
        ["report", f"runs=[{tmp_path}/no-run]"],
        ["report", f"sweep={tmp_path}/no-sweep"],
        ["report", f"runs=[{tmp_path}]", "split=train"],
        ["train", "task=no_such_task", "optimizer.lr=abc"],
        ["train", "task=ner", f"data.train={tmp_path}/no.conll"],
        ["train", "-m", "task=ner", "seed=1,2", "trainer.precision=fp17"],
    ]
    code = (
        "import sys\n"
        "from mlft.cli import main\n"
        "for command in ('eval', 'predict', 'export', 'serve', 'report', 'train', 'data', 'models'):\n"
        "    main([command, '--help'])\n"
        f"for argv in {mistakes!r}:\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit as exit:\n"
        "        assert exit.code == 2, argv\n"
        "    else:\n"
        "        raise AssertionError(argv)\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'sklearn', 'accelerate') if m in sys.modules)\n"
        "print('heavy:', heavy, file=sys.stderr)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "heavy: []" in result.stderr, result.stderr[-500:]
    assert "optimizer.lr: expected float" in result.stderr and "trainer.precision" in result.stderr
    assert result.stderr.count("not a run directory") == 3 and "not a folder written by mlft export" in result.stderr


def test_showing_the_config_of_a_sweep_is_a_clear_error(capsys, tiny_models):
    from helpers import cli_error

    err = cli_error(capsys, "train", "-m", "task=ner", f"model={tiny_models['unigram']}", "seed=1,2", "--cfg", "hydra")
    assert "--cfg: shows one job's config; leave out -m" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("argv", "asked"),
    [
        (["python", "/venv/bin/accelerate", "launch", "--num_processes", "2", "--cpu", "-m", "mlft", "train"], 2),
        (["python", "-m", "accelerate.commands.launch", "--cpu", "--num-processes=4", "train.py"], 4),
        (["python", "/venv/bin/accelerate", "launch", "--num_processes", "2", "-m", "mlft", "train"], 0),  # a GPU run
        (["python", "/venv/bin/accelerate", "launch", "--cpu", "-m", "mlft", "train", "--num_processes", "2"], 0),
        (["bash", "-c", "mlft train"], 0),
        ([], 0),
    ],
)
def test_a_cpu_accelerate_launch_that_asked_for_several_processes_is_recognised(argv, asked):
    from mlft.engine.devices import ignored_processes

    assert ignored_processes(argv) == asked


def test_the_hydra_flags_mlft_splits_off_are_those_of_hydras_own_parser():
    """mlft keeps its own table of Hydra's flags that take a value (no hydra._internal at run time); this compares
    it with the parser of the installed Hydra, so a Hydra release that changes them fails here, not for users."""
    from hydra._internal.utils import get_args_parser

    from mlft.cli_train import HYDRA_VALUE_FLAGS

    theirs = {
        name: tuple(action.choices) if action.nargs == "?" and action.choices else None
        for action in get_args_parser()._actions
        if action.option_strings and action.nargs != 0
        for name in action.option_strings
    }
    assert theirs == HYDRA_VALUE_FLAGS
