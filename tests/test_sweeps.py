"""Sweeps: a failed job is recorded and the sweep goes on, an Optuna search on the dev metric, parallel jobs and
sweeps that start together, and the ranked report."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from matplotlib.image import imread

from mlft.cli import main
from mlft.errors import RunDirError
from mlft.sweeps import JOBS_FILE, claim, read_jobs

from conftest import ROOT
from helpers import FAST, ZH_NER, metrics, run_cli

pytest.importorskip("optuna")


def sweep(*args: str) -> int:
    """Runs `mlft train -m` in this process; returns its exit code."""
    try:
        main(["train", "-m", *args])
    except SystemExit as exit_info:
        return int(exit_info.code or 0)
    return 0


def test_a_failed_job_is_recorded_and_the_sweep_goes_on(tmp_path, tiny_models, capsys):
    bad = tmp_path / "bad.conll"
    bad.write_text("张\tB-PER\n伟\tI-LOC\n")  # found only when the job reads it: the precheck cannot see it
    sweep_dir = tmp_path / "sweep"
    code = sweep(
        f"model={tiny_models['unigram']}",
        *FAST[:2],
        "trainer.epochs=1",
        ZH_NER[0],
        f"data.dev={ZH_NER[1].split('=')[1]},{bad}",
        "optimizer.lr=5e-3,1e-3",
        "task.metric=accuracy",
        f"hydra.sweep.dir={sweep_dir}",
    )
    assert code == 2  # some jobs failed on bad input
    jobs = read_jobs(sweep_dir)
    assert sorted(j.status for j in jobs) == ["done", "done", "failed", "failed"]
    assert all(f"{bad}:2:" in (j.error or "") and j.exit_code == 2 for j in jobs if j.status == "failed")
    for job in (j for j in jobs if j.status == "done"):
        run = metrics(Path(job.run_dir))
        assert job.objective == pytest.approx(run["dev"]["zh"]["accuracy"]) == run["selection"]["final_score"]
    assert f"{bad}:2:" in capsys.readouterr().out  # the closing summary names the failures

    out = tmp_path / "report"
    main(["report", f"sweep={sweep_dir}", f"out={out}"])
    report = json.loads((out / "report.json").read_text())
    assert report["rank_split"] == "dev" and report["direction"] == "maximize"
    dev = [row["dev"][0] for row in report["ranked"]]
    assert dev == sorted(dev, reverse=True) and len(dev) == 2
    assert {row["values"]["optimizer.lr"] for row in report["ranked"]} == {0.005, 0.001}
    assert [f["num"] for f in report["failed"]] == [j.num for j in jobs if j.status == "failed"]
    text = (out / "report.md").read_text()
    best = report["ranked"][0]["best_run"]
    assert "★ 1" in text and f"mlft train --config-path {best}/.hydra --config-name config" in text
    assert "## Failed jobs (2)" in text and f"data.dev={bad}" in text
    rows = (out / "report.csv").read_text().splitlines()
    assert rows[0].startswith("rank,optimizer.lr,runs,dev_mean") and len(rows) == 3
    for chart in ("dev-accuracy-vs-optimizer.lr.png", "learning-curves.png"):
        image = imread(out / chart)
        assert image.shape[0] > 100 and image.std() > 0  # a drawn chart, not an empty canvas
        assert f"![{chart}]({chart})" in text


def test_an_optuna_search_maximises_the_dev_metric_and_its_best_run_reproduces(tmp_path, tiny_models):
    sweep_dir = tmp_path / "search"
    code = sweep(
        "hydra/sweeper=optuna",
        "hydra.sweeper.n_trials=3",
        f"model={tiny_models['unigram']}",
        *FAST[:2],
        *ZH_NER[:2],
        "optimizer.lr=tag(log,interval(1e-4,2e-2))",
        "trainer.epochs=range(1,3)",
        "task.metric=accuracy",  # token accuracy: unlike the tiny model's F1 (often 0), it differs between trials
        f"hydra.sweep.dir={sweep_dir}",
    )
    assert code == 0
    jobs = read_jobs(sweep_dir)
    assert len(jobs) == 3 and all(j.status == "done" for j in jobs)
    configs = [yaml.safe_load((Path(j.run_dir) / "config.yaml").read_text()) for j in jobs]
    # range(1,3) is 1 and 2, as in Hydra's grid (the old Optuna plugin read it as 1 to 3).
    assert all(1e-4 <= c["optimizer"]["lr"] <= 2e-2 and c["trainer"]["epochs"] in (1, 2) for c in configs)
    result = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    best = max(jobs, key=lambda j: j.objective)
    assert len({j.objective for j in jobs}) > 1
    assert result["best_value"] == pytest.approx(best.objective)  # the sweeper maximised what mlft returned
    # The report's reproduce command trains the same model again.
    again = tmp_path / "again"
    main(["train", "--config-path", f"{best.run_dir}/.hydra", "--config-name", "config", f"hydra.run.dir={again}"])
    assert metrics(again)["dev"]["zh"]["accuracy"] == pytest.approx(best.objective)


SEARCH = [
    "hydra/sweeper=optuna",
    *FAST[:2],
    *ZH_NER[:2],
    "trainer.epochs=4",
    "task.metric=accuracy",
    "optimizer.lr=tag(log,interval(1e-5,2e-2))",
]


def test_a_search_prunes_trials_below_the_median_and_continues_from_its_study(tmp_path, tiny_models, capsys):
    """Every evaluation's dev score goes to the study; a trial the median pruner gives up on stops like an
    early-stopped run (a complete run directory, recorded as pruned), and the same search started again on the
    study's storage runs only the trials still missing."""
    import optuna

    first = tmp_path / "first"
    args = [f"model={tiny_models['unigram']}", *SEARCH, "hydra.sweeper.pruner_startup_trials=2"]
    assert sweep(*args, "hydra.sweeper.n_trials=8", f"hydra.sweep.dir={first}") == 0
    study = optuna.load_study(study_name="mlft", storage=f"sqlite:///{first / 'optuna.db'}")
    states = [t.state.name for t in study.trials]
    jobs = read_jobs(first)
    assert len(states) == 8 and states.count("PRUNED") == sum(j.status == "pruned" for j in jobs) > 0
    for trial, job in zip(study.trials, jobs):
        run = metrics(Path(job.run_dir))  # a pruned trial's run is complete: model, metrics, report
        assert (Path(job.run_dir) / "model" / "config.json").is_file()
        assert len(trial.intermediate_values) == len(run["history"])  # one report per evaluation
        if trial.state.name == "PRUNED":
            assert run["search"]["pruned"]["why"].startswith("pruned by the search at evaluation")
            assert len(run["history"]) < 4  # stopped before its last epoch
    assert f"8 jobs, 0 failed, {states.count('PRUNED')} pruned" in capsys.readouterr().out
    results = yaml.safe_load((first / "optimization_results.yaml").read_text())
    assert results["pruned"] == states.count("PRUNED") and results["trials"] == 8

    again = tmp_path / "again"  # the same study, asked for 10 finished trials: 2 more run
    storage = f"hydra.sweeper.storage=sqlite:///{first / 'optuna.db'}"
    assert sweep(*args, "hydra.sweeper.n_trials=10", storage, f"hydra.sweep.dir={again}") == 0
    assert len(read_jobs(again)) == 2
    assert len(optuna.load_study(study_name="mlft", storage=f"sqlite:///{first / 'optuna.db'}").trials) == 10


def test_a_search_runs_its_trials_in_parallel_with_the_joblib_launcher(tmp_path, tiny_models):
    sweep_dir = tmp_path / "parallel"
    result = run_cli(
        "train",
        "-m",
        f"model={tiny_models['unigram']}",
        *SEARCH,
        "hydra.sweeper.n_trials=4",
        "hydra.sweeper.n_jobs=2",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        f"hydra.sweep.dir={sweep_dir}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    import optuna

    study = optuna.load_study(study_name="mlft", storage=f"sqlite:///{sweep_dir / 'optuna.db'}")
    assert len(study.trials) == 4 and all(t.state.name == "COMPLETE" for t in study.trials)
    # The jobs ran in other processes and still reported each evaluation to the study.
    assert all(len(t.intermediate_values) == 4 for t in study.trials)


def test_an_interval_needs_a_search_and_a_missing_plugin_is_named(tmp_path, tiny_models, capsys, monkeypatch):
    code = sweep(f"model={tiny_models['unigram']}", "optimizer.lr=interval(1e-4,1e-3)", f"hydra.sweep.dir={tmp_path}")
    assert code == 2 and "optimizer.lr: an interval is searched, not listed" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)  # as if the plugin were not installed
    code = sweep("hydra/sweeper=optuna", "optimizer.lr=interval(1e-4,1e-3)", f"hydra.sweep.dir={tmp_path}")
    assert code == 2
    assert "hydra/sweeper: 'optuna' needs optuna (pip install 'mlft[sweep]')" in capsys.readouterr().err


def test_a_sweep_folder_is_claimed_once(tmp_path):
    first = claim(tmp_path / "2026-12-03_10-00-00", unique=True)
    second = claim(tmp_path / "2026-12-03_10-00-00", unique=True)  # another sweep of the same second
    assert (first.name, second.name) == ("2026-12-03_10-00-00", "2026-12-03_10-00-00-2")
    with pytest.raises(RunDirError, match="already holds a sweep"):
        claim(first, unique=False)  # a folder the user named
    (first / JOBS_FILE).write_text('{"num": 0}\n')
    with pytest.raises(RunDirError, match=f"{JOBS_FILE}:1: not a job record"):
        read_jobs(first)


def test_parallel_jobs_and_two_sweeps_of_the_same_second(tmp_path, tiny_models):
    # Both sweeps name their folder by the year: they start in the same "second" by construction.
    common = [f"model={tiny_models['unigram']}", *FAST, "trainer.epochs=1", *ZH_NER[:2]]
    folder = f"hydra.sweep.dir={tmp_path}/${{now:%Y}}"
    parallel = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "seed=1,2"]
    command = [sys.executable, "-m", "mlft", "train", "-m", *common, folder]
    first = subprocess.Popen([*command, *parallel], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    time.sleep(1)
    second = run_cli("train", "-m", *common, folder, "seed=3")
    output = first.communicate(timeout=600)[0].decode()
    assert first.returncode == 0 and second.returncode == 0, output[-2000:] + second.stderr[-2000:]
    sweeps = sorted(p for p in tmp_path.iterdir())
    assert [p.name.split("-")[0] for p in sweeps] == [sweeps[0].name] * 2 and len(sweeps) == 2
    jobs = {p.name: read_jobs(p) for p in sweeps}
    assert sorted(len(j) for j in jobs.values()) == [1, 2]
    run_dirs = [j.run_dir for js in jobs.values() for j in js]
    assert len(set(run_dirs)) == 3 and all(j.status == "done" for js in jobs.values() for j in js)
    seeds = sorted(yaml.safe_load(Path(f"{d}/config.yaml").read_text())["seed"] for d in run_dirs)
    assert seeds == [1, 2, 3]


def test_the_slurm_launcher_preset_composes():
    from hydra import compose, initialize_config_dir

    from mlft.config import config_dir, register_schema_defaults

    register_schema_defaults()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("config", ["hydra/launcher=slurm", "hydra.launcher.partition=gpu"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.partition, launcher.gpus_per_node, launcher.tasks_per_node) == ("gpu", 1, 1)


@pytest.mark.slow
def test_submitit_local_executor_runs_the_jobs(tmp_path, tiny_models):
    # What hydra/launcher=slurm does on a cluster, with submitit's local executor (no Slurm here).
    result = run_cli(
        "train",
        "-m",
        "hydra/launcher=submitit_local",
        f"model={tiny_models['unigram']}",
        *FAST,
        "trainer.epochs=1",
        *ZH_NER[:2],
        "seed=1,2",
        f"hydra.sweep.dir={tmp_path}",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    jobs = read_jobs(tmp_path)
    assert [j.status for j in jobs] == ["done", "done"]
    assert all((Path(j.run_dir) / "model" / "model.safetensors").is_file() for j in jobs)


@pytest.mark.parametrize(
    "swept",
    [
        "optimizer.lr=1e-5,3e-5",
        "optimizer.lr=tag(log,interval(1e-5,1e-3))",
        "hydra.sweeper.params.optimizer.lr=1e-5,3e-5",
    ],
)
def test_a_key_both_fixed_and_swept_is_refused(swept, tiny_models, tmp_path, capsys):
    from helpers import cli_error

    search = ["hydra/sweeper=optuna"] if "interval" in swept or "sweeper" in swept else []
    err = cli_error(
        capsys, "train", "-m", *search, "task=ner", "lang=zh", f"model={tiny_models['unigram']}", *ZH_NER[:1],
        "optimizer.lr=1e-4", swept, f"hydra.sweep.dir={tmp_path / 'sweep'}",
    )  # fmt: skip
    assert "optimizer.lr: given both a fixed value and values to sweep; give one of them" in err
    assert not (tmp_path / "sweep").exists()
