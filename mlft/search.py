"""Hyperparameter search with Optuna (`mlft train -m hydra/sweeper=optuna ...`): the sweeper proposes trials
(TPE by default) from the search space given as Hydra sweep overrides, launches each as an ordinary job through
Hydra's launcher (so the joblib and Slurm launchers run trials in parallel), and tells Optuna each job's dev
objective. Each job reports its dev score at every evaluation to the study, and a trial the pruner gives up on
(median or Hyperband) stops like an early-stopped run: a complete run directory, recorded as pruned.

The study lives in SQLite in the sweep folder unless `storage=` names another, so a search that stopped continues
by running the same command with `hydra.sweeper.storage=` (and `study_name=`) of the first one: it runs the trials
still missing to `n_trials`. The Hydra plugin is hydra_plugins/mlft_search (Hydra loads sweepers only from there).
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlft.errors import ConfigError
from mlft.sweeps import PRUNERS, SAMPLERS, Outcome

log = logging.getLogger("mlft")

TRIAL_ENV = "MLFT_SEARCH_TRIAL"
"""How a job learns which trial of which study it is (set through Hydra's hydra.job.env_set)."""
STUDY_FILE = "optuna.db"


@dataclass(frozen=True)
class Settings:
    """The sweeper's keys (configs/hydra/sweeper/optuna.yaml documents each)."""

    direction: str = "maximize"
    n_trials: int = 20
    n_jobs: int = 1
    sampler: str = "tpe"
    seed: int | None = None
    pruner: str = "median"
    pruner_startup_trials: int = 4
    pruner_warmup_evaluations: int = 1
    storage: str | None = None
    study_name: str = "mlft"
    max_failure_rate: float = 1.0


def settings_problems(s: Settings) -> list[str]:
    problems = []
    if s.sampler not in SAMPLERS:
        problems.append(f"hydra.sweeper.sampler.name: {s.sampler!r} (allowed: {', '.join(SAMPLERS)})")
    if s.pruner not in PRUNERS:
        problems.append(f"hydra.sweeper.pruner: {s.pruner!r} (allowed: {', '.join(PRUNERS)})")
    if s.pruner_startup_trials < 0 or s.pruner_warmup_evaluations < 0:
        problems.append("hydra.sweeper.pruner_startup_trials, pruner_warmup_evaluations: must be >= 0")
    return problems


# The search space


def distribution(override: Any) -> Any:
    """An Optuna distribution for a sweep override (interval, tag(log, ...), int(interval), choice, a,b,c, range);
    None for a fixed value."""
    import optuna.distributions as d
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep, Transformer

    if not override.is_sweep_override():
        return None
    value = override.value()
    if isinstance(value, IntervalSweep):
        assert value.start is not None and value.end is not None  # the grammar requires both
        log_scale = "log" in value.tags
        if isinstance(value.start, int) and isinstance(value.end, int):
            return d.IntDistribution(value.start, value.end, log=log_scale)
        return d.FloatDistribution(float(value.start), float(value.end), log=log_scale)
    if isinstance(value, RangeSweep) and not value.shuffle:
        assert value.start is not None and value.stop is not None
        numbers = (value.start, value.stop, value.step)
        if any(isinstance(n, float) for n in numbers):
            return d.FloatDistribution(float(value.start), float(value.stop), step=float(value.step))
        # Hydra's range(a,b) stops before b, as Python's does; the old plugin read it inclusive.
        return d.IntDistribution(int(value.start), int(value.stop) - int(value.step), step=int(value.step))
    if isinstance(value, ChoiceSweep | RangeSweep):
        return d.CategoricalDistribution(list(override.sweep_iterator(transformer=Transformer.encode)))
    raise ConfigError(f"{override.get_key_element()}: {override.input_line} cannot be searched")


def space(arguments: Sequence[str]) -> tuple[dict[str, Any], list[str]]:
    """(distributions of the swept keys, the fixed overrides) of the command line's overrides."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    swept, fixed = {}, []
    for override in OverridesParser.create().parse_overrides(list(arguments)):
        found = distribution(override)
        if found is None:
            fixed.append(str(override.input_line))
        else:
            swept[override.get_key_element()] = found
    return swept, fixed


def grid(distributions: dict[str, Any]) -> dict[str, list[Any]]:
    """The values GridSampler walks: choices, and integer or stepped ranges."""
    import optuna.distributions as d

    values = {}
    for key, dist in distributions.items():
        if isinstance(dist, d.CategoricalDistribution):
            values[key] = list(dist.choices)
        elif dist.step is not None and not dist.log:
            count = int(round((dist.high - dist.low) / dist.step)) + 1
            values[key] = [dist.low + i * dist.step for i in range(count)]
        else:
            raise ConfigError(f"{key}: sampler grid walks listed values and ranges, not an interval")
    return values


def make_study(s: Settings, distributions: dict[str, Any], sweep_dir: Path) -> Any:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    samplers = {
        "tpe": lambda: optuna.samplers.TPESampler(seed=s.seed),
        "random": lambda: optuna.samplers.RandomSampler(seed=s.seed),
        "grid": lambda: optuna.samplers.GridSampler(grid(distributions), seed=s.seed),
    }
    pruners = {
        "median": lambda: optuna.pruners.MedianPruner(s.pruner_startup_trials, s.pruner_warmup_evaluations),
        "hyperband": lambda: optuna.pruners.HyperbandPruner(min_resource=max(s.pruner_warmup_evaluations, 1)),
        "none": optuna.pruners.NopPruner,
    }
    storage = s.storage or f"sqlite:///{(sweep_dir / STUDY_FILE).resolve()}"
    return optuna.create_study(
        storage=storage,
        sampler=samplers[s.sampler](),
        pruner=pruners[s.pruner](),
        study_name=s.study_name,
        direction=s.direction,  # type: ignore[arg-type]
        load_if_exists=True,
    )


# The search


def run_search(s: Settings, arguments: Sequence[str], launch: Any, sweep_dir: Path) -> None:
    """Runs the trials still missing to `n_trials`, `n_jobs` at a time; `launch(overrides_per_job, first_index)`
    is the Hydra launcher's, returning one JobReturn per job."""
    from hydra.core.utils import JobStatus
    from optuna.trial import TrialState

    problems = settings_problems(s)
    if problems:
        raise ConfigError(problems)
    distributions, fixed = space(arguments)
    if not distributions:
        raise ConfigError("hydra/sweeper=optuna: nothing to search (give a key as interval(a,b), a,b,c or range(a,b))")
    study = make_study(s, distributions, sweep_dir)
    finished = (TrialState.COMPLETE, TrialState.PRUNED)
    done = sum(t.state in finished for t in study.trials)
    to_go = max(s.n_trials - done, 0)
    if s.sampler == "grid":
        to_go = min(to_go, math.prod(len(v) for v in grid(distributions).values()))
    if done:
        log.info("search: study %s has %d finished trials; %d more to run", s.study_name, done, to_go)
    storage = s.storage or f"sqlite:///{(sweep_dir / STUDY_FILE).resolve()}"
    index = 0
    while to_go > 0:
        trials = [study.ask(distributions) for _ in range(min(s.n_jobs, to_go))]
        jobs = []
        for trial in trials:
            params = [f"{key}={value}" for key, value in trial.params.items()]
            spec = json.dumps({"storage": storage, "study": study.study_name, "trial_id": trial._trial_id})
            jobs.append([*fixed, *params, f"+hydra.job.env_set.{TRIAL_ENV}='{spec}'"])
        returns = launch(jobs, index)
        index += len(returns)
        failures = 0
        for trial, ret in zip(trials, returns):
            outcome = ret.return_value if ret.status == JobStatus.COMPLETED else None
            outcome = outcome if isinstance(outcome, Outcome) else None
            if outcome is None or math.isnan(outcome.objective):
                study.tell(trial, state=TrialState.FAIL)
                failures += 1
            elif outcome.pruned:
                study.tell(trial, state=TrialState.PRUNED)
            else:
                study.tell(trial, outcome.objective)
        if failures / len(returns) > s.max_failure_rate:
            raise ConfigError(
                f"search: {failures} of {len(returns)} trials failed, more than max_failure_rate={s.max_failure_rate}"
            )
        to_go -= len(trials)
    write_results(study, sweep_dir)


def write_results(study: Any, sweep_dir: Path) -> None:
    """<sweep>/optimization_results.yaml: the best trial's parameters and value, and how many trials were pruned."""
    from omegaconf import OmegaConf
    from optuna.trial import TrialState

    states = [t.state for t in study.trials]
    result: dict[str, Any] = {
        "name": "optuna",
        "study": study.study_name,
        "trials": len(states),
        "complete": states.count(TrialState.COMPLETE),
        "pruned": states.count(TrialState.PRUNED),
        "failed": states.count(TrialState.FAIL),
    }
    if result["complete"] or result["pruned"]:
        try:
            best = study.best_trial
            result.update(best_params=best.params, best_value=best.value)
        except ValueError:  # only pruned trials without a value
            pass
    OmegaConf.save(OmegaConf.create(result), sweep_dir / "optimization_results.yaml")


# In a trial's job


def trial_from_env() -> dict[str, Any] | None:
    """The trial this job runs, when a search launched it."""
    raw = os.environ.get(TRIAL_ENV)
    if not raw:
        return None
    try:
        spec = json.loads(raw)
        return {"storage": str(spec["storage"]), "study": str(spec["study"]), "trial_id": int(spec["trial_id"])}
    except (ValueError, KeyError, TypeError):
        raise ConfigError(f"{TRIAL_ENV}: not a trial of an mlft search ({raw[:100]})") from None


def attach_trial(hooks: Any, spec: dict[str, Any], is_main: bool) -> None:
    """Reports the dev score of every evaluation to the study; when the pruner gives up on the trial, the run stops
    as an early-stopped one does (pruned: recorded in metrics.json)."""
    import optuna
    from accelerate.utils import broadcast_object_list

    trial = None
    if is_main:
        study = optuna.load_study(study_name=spec["study"], storage=spec["storage"])
        trial = optuna.trial.Trial(study, spec["trial_id"])
    evaluations = [0]

    def report(loop: Any, score: float | None) -> None:
        evaluations[0] += 1
        prune = False
        if trial is not None and score is not None and math.isfinite(score):
            trial.report(score, evaluations[0] - 1)  # steps from 0: the pruner's warm-up counts evaluations
            prune = trial.should_prune()
        if not broadcast_object_list([prune])[0]:
            return
        loop.stop_early(f"pruned by the search at evaluation {evaluations[0]} (dev {score:.4f})", pruned=True)

    hooks.add("scored", report)
