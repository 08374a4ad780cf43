"""Sweeps (`mlft train -m`): the sweep directory and its job ledger, which jobs a search is checked with, the
Optuna sweeper's settings that follow from the task, and the end-of-sweep summary.

<sweep>/jobs.jsonl            one line per finished job: number, overrides, run directory, status, dev
                              objective, error, seconds (written by the job, so parallel launchers append)
<sweep>/<n>_<swept keys>/     each job's ordinary run directory
<sweep>/reports/<time>/       `mlft report sweep=<sweep>`

A job that fails is recorded as failed and the sweep goes on; the sweep's exit code says that some failed.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mlft.errors import ConfigError, RunDirError, UserError, format_error
from mlft.rundir import METRICS_FILE

JOBS_FILE = "jobs.jsonl"
STATUSES = ("done", "pruned", "failed")
OPTUNA = "hydra/sweeper=optuna"
SEARCH_CHECK_LIMIT = 64
"""Jobs of a grid checked before the first starts; a larger grid is checked one swept value at a time."""


@dataclass(frozen=True)
class Job:
    """One finished job of a sweep, as jobs.jsonl records it."""

    num: int
    overrides: list[str]
    run_dir: str | None
    """Absolute path of the job's run directory (None when it failed before claiming one)."""
    status: str
    """done, pruned (a search stopped it early; its run directory is complete) or failed"""
    metric: str
    objective: float | None
    """The task metric's mean over the training languages' dev sets (the run's selection score)."""
    seconds: float
    error: str | None = None
    exit_code: int = 0


# The sweep directory


def claim(path: Path, unique: bool) -> Path:
    """Takes `path` for a new sweep (creating jobs.jsonl is the atomic step) and returns it.

    A directory named by the clock (`unique`) that another sweep took in the same second becomes
    `<path>-2`, -3, ...; a directory the user named must not hold another sweep.
    """
    candidate = path
    for n in itertools.count(2):
        try:
            candidate.mkdir(parents=True, exist_ok=True)
            (candidate / JOBS_FILE).open("x").close()
            return candidate
        except FileExistsError:
            if not unique:
                raise RunDirError(
                    f"hydra.sweep.dir={path}: already holds a sweep ({JOBS_FILE}); choose another folder"
                ) from None
        except OSError as err:
            raise RunDirError(f"hydra.sweep.dir={path}: cannot create it ({err.strerror or err})") from None
        candidate = path.with_name(f"{path.name}-{n}")
    raise AssertionError("unreachable")


def record(sweep_dir: Path, job: Job) -> None:
    """Appends the job's line to the ledger (one write, so lines of parallel jobs do not interleave)."""
    line = json.dumps(asdict(job), ensure_ascii=False) + "\n"
    with (sweep_dir / JOBS_FILE).open("a", encoding="utf-8") as f:
        f.write(line)


def read_jobs(sweep_dir: Path) -> list[Job]:
    """The ledger's jobs, in job order; a line that is not a job record is a RunDirError naming file:line."""
    path = sweep_dir / JOBS_FILE
    if not path.is_file():
        return []
    jobs = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            fields = json.loads(line)
            job = Job(**fields)
            if not isinstance(job.num, int) or job.status not in STATUSES:
                raise ValueError
        except (ValueError, TypeError):
            raise RunDirError(f"{path}:{number}: not a job record of mlft") from None
        jobs.append(job)
    return sorted(jobs, key=lambda j: j.num)


@dataclass(frozen=True)
class Outcome:
    """What a job tells the sweeper: its dev objective (NaN: it failed or has no dev set) and whether a search
    pruned it."""

    objective: float
    pruned: bool = False


def run_job(
    train: Callable[[], Path | None],
    sweep_dir: Path,
    num: int,
    overrides: list[str],
    metric: str,
    planned_dir: Path,
) -> Outcome:
    """Runs one job, records it in the ledger whatever happens, and returns its outcome."""
    start = time.monotonic()
    try:
        run_dir = train() or planned_dir
    except (Exception, SystemExit) as err:  # the sweep goes on; Ctrl-C (KeyboardInterrupt) still stops it
        message, code = _failure(err)
        print(f"job {num} failed: {message}", flush=True)
        record(sweep_dir, Job(num, overrides, None, "failed", metric, None, _seconds(start), message, code))
        return Outcome(math.nan)
    objective, pruned = final_score(run_dir), was_pruned(run_dir)
    status = "pruned" if pruned else "done"
    record(sweep_dir, Job(num, overrides, str(run_dir.resolve()), status, metric, objective, _seconds(start)))
    return Outcome(math.nan if objective is None else objective, pruned)


def _failure(err: BaseException) -> tuple[str, int]:
    if isinstance(err, UserError):
        return format_error(err), err.exit_code
    if isinstance(err, SystemExit):
        code = err.code if isinstance(err.code, int) else 1
        return f"exited with code {code}", code
    return f"{type(err).__name__}: {err}", 1


def _seconds(start: float) -> float:
    return round(time.monotonic() - start, 3)


def final_score(run_dir: Path) -> float | None:
    """The dev score of the run's final weights (metrics.json's selection.final_score)."""
    value = _metrics(run_dir).get("selection", {}).get("final_score")
    return float(value) if isinstance(value, (int, float)) else None


def was_pruned(run_dir: Path) -> bool:
    """Whether a search stopped the run early (metrics.json's search.pruned)."""
    return bool(_metrics(run_dir).get("search", {}).get("pruned"))


def _metrics(run_dir: Path) -> dict[str, Any]:
    path = run_dir / METRICS_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


# Before the sweep: the jobs to check and the search's settings


def jobs_to_check(parsed: list[Any], searched: bool) -> Iterator[list[str]]:
    """Override lists that cover every value a sweep can take.

    A grid (Hydra's basic sweeper) is checked job by job up to SEARCH_CHECK_LIMIT jobs. A search
    (Optuna: intervals too) and a larger grid are checked one swept key at a time: every listed value
    and both ends of an interval, the other keys at their first value.
    """
    from hydra.core.override_parser.types import IntervalSweep

    params = "hydra.sweeper.params."  # a search space given as the Optuna sweeper's own parameter
    swept = {o.get_key_element() for o in parsed if o.is_sweep_override()}
    swept |= {o.get_key_element().removeprefix(params) for o in parsed if o.get_key_element().startswith(params)}
    fixed = {o.get_key_element() for o in parsed if not o.is_sweep_override()}
    both = sorted(fixed & swept)
    if both:
        # Hydra would keep one of them silently: a search of nothing, or grid folders named 0_, 1_, ...
        raise ConfigError([f"{key}: given both a fixed value and values to sweep; give one of them" for key in both])
    empty = space_problems(parsed)
    if empty:
        raise ConfigError(empty)
    intervals = [o.get_key_element() for o in parsed if isinstance(o.value(), IntervalSweep)]
    if intervals and not searched:
        raise ConfigError(f"{intervals[0]}: an interval is searched, not listed: add {OPTUNA}")
    options = [_values(o, searched) for o in parsed]
    count = math.prod(len(v) for v in options)
    if not searched and count <= SEARCH_CHECK_LIMIT:
        yield from (list(job) for job in itertools.product(*options))
        return
    base = [v[0] for v in options]
    yield base
    for i, values in enumerate(options):
        for value in values[1:]:
            yield [*base[:i], value, *base[i + 1 :]]


SEARCH_SETTINGS = {
    "hydra.sweeper.n_trials": 1,
    "hydra.sweeper.n_jobs": 1,
    "hydra.sweeper.pruner_startup_trials": 0,
    "hydra.sweeper.pruner_warmup_evaluations": 0,
}
"""Optuna sweeper counts and their least value."""
DIRECTIONS = ("minimize", "maximize")
SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("median", "hyperband", "none")


def space_problems(parsed: list[Any]) -> list[str]:
    """Sweeps that cannot be sampled (an interval or range with nothing in it) and search settings that mean
    nothing (no trials, a direction that is none, an SQLite file in a folder that does not exist): each would end
    in the sweeper's traceback after the sweep folder was made."""
    from hydra.core.override_parser.types import IntervalSweep, RangeSweep

    problems = []
    for override in parsed:
        key, value = override.get_key_element(), override.value()
        if isinstance(value, IntervalSweep):
            start, end = float(value.start or 0), float(value.end or 0)
            if not start < end:
                problems.append(f"{key}: interval({start:g}, {end:g}) is empty (its start must be below its end)")
            elif "log" in value.tags and start <= 0:
                problems.append(f"{key}: a log interval needs a start above 0, got {start:g}")
        elif isinstance(value, RangeSweep) and not list(itertools.islice(value.range(), 1)):
            problems.append(f"{key}: range({value.start}, {value.stop}, {value.step}) holds no value")
        elif key in SEARCH_SETTINGS and (not isinstance(value, int) or value < SEARCH_SETTINGS[key]):
            problems.append(f"{key}: must be an integer >= {SEARCH_SETTINGS[key]}, got {value!r}")
        elif key == "hydra.sweeper.direction" and value not in DIRECTIONS:
            problems.append(f"{key}: {value!r} is not a direction (allowed: {', '.join(DIRECTIONS)})")
        elif key == "hydra.sweeper.pruner" and value not in PRUNERS:
            problems.append(f"{key}: {value!r} is not a pruner (allowed: {', '.join(PRUNERS)})")
        elif key == "hydra.sweeper.sampler.name" and value not in SAMPLERS:
            problems.append(f"{key}: {value!r} is not a sampler (allowed: {', '.join(SAMPLERS)})")
        elif key == "hydra.sweeper.storage" and isinstance(value, str) and value.startswith("sqlite:///"):
            folder = Path(value.removeprefix("sqlite:///")).parent
            if not folder.is_dir():
                problems.append(f"{key}: {value}: the folder {folder} does not exist (create it, or name another)")
    return problems


def _values(override: Any, searched: bool) -> list[str]:
    """`key=value` strings for each value of an override (both ends of an interval)."""
    from hydra.core.override_parser.types import IntervalSweep

    key = override.get_key_element()
    if not override.is_sweep_override():
        return [override.input_line]
    value = override.value()
    if isinstance(value, IntervalSweep):
        return [f"{key}={value.start}", f"{key}={value.end}"]
    return [f"{key}={v}" for v in override.sweep_string_iterator()]


def search_defaults(overrides: list[str], maximize: bool, seed: int) -> list[str]:
    """Optuna sweeper settings mlft derives unless the command line gives them: the direction from the task's
    metric, a sampler seeded by the run's seed (a search that reproduces), and failed trials that do not stop it."""
    given = " ".join(overrides)
    defaults = {
        "hydra.sweeper.direction": "maximize" if maximize else "minimize",
        "hydra.sweeper.max_failure_rate": "1.0",
        "hydra.sweeper.sampler.seed": str(seed),
    }
    if "hydra/sweeper/sampler=" in given:  # another sampler: its own keys (grid has no seed)
        del defaults["hydra.sweeper.sampler.seed"]
    return [f"{key}={value}" for key, value in defaults.items() if f"{key}=" not in given]


# After the sweep


def summary(sweep_dir: Path, maximize: bool) -> tuple[str, int]:
    """Lines that close a sweep (jobs, failures, the best job and how to report it) and its exit code:
    0 when every job finished, else the largest exit code of a failed job (2: bad input, 1: an error)."""
    jobs = read_jobs(sweep_dir)
    failed = [j for j in jobs if j.status == "failed"]
    pruned = sum(j.status == "pruned" for j in jobs)
    lines = [f"sweep {sweep_dir}: {len(jobs)} jobs, {len(failed)} failed" + (f", {pruned} pruned" if pruned else "")]
    shared = set.intersection(*(set(j.overrides) for j in jobs)) if jobs else set()
    for job in failed:
        swept = " ".join(o for o in job.overrides if o not in shared)
        lines.append(f"  job {job.num} failed ({swept}): {job.error}")
    scored = [j for j in jobs if j.objective is not None]
    if scored:
        pick = max if maximize else min
        best = pick(scored, key=lambda j: j.objective if j.objective is not None else math.nan)
        lines.append(f"best dev {best.metric}: {best.objective:.4f}, job {best.num}: {best.run_dir}")
    lines.append(f"ranked table: mlft report sweep={sweep_dir}")
    return "\n".join(lines), max((j.exit_code for j in failed), default=0)
