"""`mlft train` as a Hydra application: config groups and overrides composed, every job of a sweep checked
before the first starts, saved configs staged as data, multi-process runs relaunched, then commands.train.
"""

from __future__ import annotations

import difflib
import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from mlft.config import PRIMARY_CONFIG, SCHEMA_DEFAULTS, config_dir, presets, register_schema_defaults
from mlft.errors import UserError, format_error
from mlft.rundir import RunDir

GROUPS = ("model", "task", "lang", "optimizer", "trainer", "peft", "experiment")


def quiet_libraries() -> None:
    """mlft's own progress at INFO; libraries only warn (their per-save INFO lines drown the run's)."""
    logging.basicConfig(
        level=logging.WARNING, format="[%(asctime)s] %(message)s", datefmt="%H:%M:%S", handlers=[BarSafeHandler()]
    )
    logging.getLogger("mlft").setLevel(logging.INFO)
    # Read when transformers and huggingface_hub are first imported: set here, they keep the second importing
    # transformers takes out of a config check that may end before anything needs it.
    os.environ["TRANSFORMERS_VERBOSITY"] = "error"
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    if "huggingface_hub" in sys.modules:  # imported already (another job of this process): their setters
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    if "transformers" in sys.modules:
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()
    # Every checkpoint of a model with tied weights (a masked-LM decoder) says it saved them once; loading
    # re-ties them (mlft.engine.selection.load_weights), so the warning is only noise.
    logging.getLogger("accelerate.utils.other").setLevel(logging.ERROR)


class BarSafeHandler(logging.Handler):
    """Log lines written above a running progress bar (tqdm.write), not into the middle of it."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm.auto import tqdm

        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


HYDRA_INFO_FLAGS = {
    "--help",
    "-h",
    "--hydra-help",
    "--info",
    "-i",
    "--cfg",
    "-c",
    "--resolve",
    "--package",
    "-p",
    "--shell-completion",
    "-sc",
}
FREE_MAPS = ("task.datasets", "task.label_map", "task.columns", "data.columns")
"""Config maps whose keys are the user's (languages, labels, column names), not fixed by the schema."""
RUN_DIR_ENV = "MLFT_RUN_DIR"  # set by a launcher for its child processes: the directory is already claimed
ORIGIN_ENV = "MLFT_CONFIG_ORIGIN"  # the --config-path a run was started from, for its env.json (and its children)


def _take_option(args: list[str], names: tuple[str, ...]) -> tuple[str | None, list[str]]:
    """Removes `--name value` or `--name=value` from args; returns the value."""
    value, rest, i = None, [], 0
    while i < len(args):
        arg = args[i]
        if arg in names and i + 1 < len(args):
            value, i = args[i + 1], i + 2
            continue
        if any(arg.startswith(n + "=") for n in names):
            value = arg.split("=", 1)[1]
        else:
            rest.append(arg)
        i += 1
    return value, rest


def _rewrite_model(overrides: list[str], directory: Path) -> list[str]:
    """`model=<hub id or dir>` that names no preset means the generic `hf` preset with that model."""
    out = []
    known = presets("model", directory)
    for item in overrides:
        key, sep, value = item.partition("=")
        if sep and key == "model" and known and value not in known and ("/" in value or Path(value).exists()):
            out += ["model=hf", f"model.name_or_path={value}"]
        else:
            out.append(item)
    return out


def hydra_settings() -> dict[str, Any]:
    """The defaults list (the schema's defaults, logging settings) and `hydra` block of the shipped config:
    what a saved config is composed under (mlft.saved_config), never the saved file's own."""
    shipped = OmegaConf.to_container(OmegaConf.load(config_dir() / f"{PRIMARY_CONFIG}.yaml"), resolve=False)
    assert isinstance(shipped, dict)
    defaults = [d for d in shipped["defaults"] if d == SCHEMA_DEFAULTS or isinstance(d, dict) and _overrides(d)]
    return {"defaults": [*defaults, "_self_"], "hydra": shipped["hydra"]}


def _overrides(entry: dict) -> bool:
    return any(k.startswith("override") for k in entry)


@dataclass(frozen=True)
class Checked:
    """What the sweep needs to know from the checked jobs."""

    sweep_dir: Path | None
    """hydra.sweep.dir as Hydra will resolve it (None for a single run)."""
    maximize: bool
    """Whether the task metric is better higher (an Optuna search's direction)."""
    seed: int


def precheck(directory: Path, config_name: str, overrides: list[str], multirun: bool) -> Checked:
    """Composes and validates every job before Hydra creates any directory; raises ConfigError."""
    from hydra import compose, initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from mlft.commands.run_config import run_config
    from mlft.destinations import check_writable
    from mlft.engine.machine import device_problems
    from mlft.engine.tracking import tracker_problems
    from mlft.errors import ConfigError
    from mlft.sweeps import OPTUNA, jobs_to_check
    from mlft.tasks import higher_is_better

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
        jobs = list(jobs_to_check(parsed, OPTUNA in overrides)) if multirun else [overrides]
    except HydraException as err:
        raise ConfigError(f"overrides: {err}") from None
    problems: list[str] = []
    runs = []
    register_schema_defaults()  # the defaults list of every config starts with it
    with initialize_config_dir(config_dir=str(directory), version_base="1.3"):
        for job in jobs:
            job, bad_groups = _check_group_options(list(job), directory)
            problems += [p for p in bad_groups if p not in problems]
            try:
                composed = compose(config_name=config_name, overrides=job, return_hydra_config=True)
                key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
                destination = Path(OmegaConf.select(composed, key))
                with open_dict(composed):
                    del composed["hydra"]  # its per-job keys are unset until Hydra launches the job
                # What this machine and the trackers cannot do is checked on the values as given, so that it is
                # reported beside the schema's problems, not only once they are fixed.
                given = OmegaConf.to_container(composed, resolve=True)
                assert isinstance(given, dict)
                trainer = given.get("trainer")
                trainer = trainer if isinstance(trainer, dict) else {}
                machine = device_problems(trainer.get("precision"), bool(trainer.get("cpu")))
                machine += tracker_problems(str(given.get("tracker")))
                problems += [p for p in machine if p not in problems]
                check_writable(destination, key)
                runs.append(run_config(composed))
            except ConfigError as err:
                problems += [p for p in err.problems if p not in problems]
            except (HydraException, OmegaConfBaseException) as err:
                message = " ".join(str(err).split("Config search path")[0].split())
                problems.append(f"overrides: {message}")
        if problems:
            raise ConfigError(problems)
        # Hydra names the sweep's folder from the overrides that are not swept ($now is cached per process).
        fixed, _ = _check_group_options([str(o.input_line) for o in parsed if not o.is_sweep_override()], directory)
        sweep_dir = OmegaConf.select(compose(config_name, fixed, return_hydra_config=True), "hydra.sweep.dir")
    directions = {higher_is_better(r.task) for r in runs}
    if len(directions) > 1:
        raise ConfigError("task.metric: a sweep ranks its jobs one way; these metrics are not all better higher")
    return Checked(Path(sweep_dir) if multirun else None, directions.pop(), runs[0].seed)


def _check_group_options(overrides: list[str], directory: Path) -> tuple[list[str], list[str]]:
    """Reports every `group=option` naming no preset and drops it, so the rest can still be checked.

    Other keys are force-added so that the schema, not Hydra, judges them: every problem at once.
    """
    kept, problems = [], []
    for item in overrides:
        key, sep, value = item.partition("=")
        group = key.lstrip("+~")
        options = presets(group, directory) if group in GROUPS else []
        if sep and key.startswith("hydra/") and (missing := missing_plugin(key, value)):
            problems.append(missing)
        elif sep and options and value not in options:
            why = NOT_PRESETS.get((group, value))
            problems.append(
                f"{group}: {value!r} is not a {group} preset" + (f": {why}" if why else did_you_mean(value, options))
                + f" (allowed: {', '.join(options)}; see configs/{group}/)"
            )  # fmt: skip
        elif sep and group not in GROUPS and not key.startswith(("+", "~", "hydra.", "hydra/")):
            # Force-add, so that Hydra does not stop at the first unknown key: the schema reports them all.
            kept.append("++" + item)
        else:
            kept.append(item)
    return kept, problems


PLUGINS = {
    "hydra/sweeper": {"optuna": "optuna"},  # mlft's own sweeper (hydra_plugins/mlft_search) on the optuna library
    "hydra/launcher": {
        "joblib": "hydra_plugins.hydra_joblib_launcher",
        "submitit_local": "hydra_plugins.hydra_submitit_launcher",
        "submitit_slurm": "hydra_plugins.hydra_submitit_launcher",
        "slurm": "hydra_plugins.hydra_submitit_launcher",
    },
}
"""Sweepers and launchers mlft documents -> the module they need (a Hydra plugin's, or a library)."""


def missing_plugin(group: str, option: str) -> str | None:
    """A Hydra plugin or library that the chosen sweeper or launcher needs and this environment lacks."""
    import importlib.util

    module = PLUGINS.get(group, {}).get(option)
    if module is None or importlib.util.find_spec(module) is not None:
        return None
    package = module.removeprefix("hydra_plugins.").replace("_", "-")
    return f"{group}: {option!r} needs {package} (pip install 'mlft[sweep]')"


_PAST_KEY_VALUES = (
    "peft implements it through the encoder's past_key_values, which transformers 5 encoders (BERT, XLM-R, "
    "DistilBERT) no longer take; peft=lora or peft=bottleneck train as few parameters"
)
_VIRTUAL_TOKENS = (
    "mlft does not build peft's soft prompts (trained virtual tokens in front of the input: token "
    "classification has no labels for them, and no model/ that eval, predict and export load can hold them); "
    "peft=lora or peft=bottleneck train as few parameters"
)
NOT_PRESETS = {
    ("peft", "prefix"): _PAST_KEY_VALUES,
    ("peft", "prefix_tuning"): _PAST_KEY_VALUES,
    ("peft", "p_tuning"): _VIRTUAL_TOKENS,
    ("peft", "prompt"): _VIRTUAL_TOKENS,
    ("peft", "prompt_tuning"): _VIRTUAL_TOKENS,
    ("peft", "adapter"): "bottleneck adapters are peft=bottleneck (peft.placement=pfeiffer or houlsby)",
    ("peft", "houlsby"): "use peft=bottleneck peft.placement=houlsby",
    ("peft", "pfeiffer"): "use peft=bottleneck (Pfeiffer placement is its default)",
    ("peft", "dora"): "DoRA is a LoRA option: peft=lora peft.use_dora=true",
    ("peft", "rslora"): "rank-stabilised LoRA is a LoRA option: peft=lora peft.use_rslora=true",
}
"""Names users try that are no preset, with why and what to use instead."""


def did_you_mean(value: str, options: list[str]) -> str:
    close = difflib.get_close_matches(value, options, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _relaunch(run_dir: Path, processes: int, cpu: bool, granted: list[str]) -> None:
    """Runs the saved job with `processes` processes (torchrun, as `accelerate launch` does), in `run_dir`."""
    import torch

    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        str(processes),
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(_free_port()),
        "-m",
        "mlft",
        "train",
        "--config-path",
        str(RunDir(run_dir).composable_config.parent.resolve()),
        "--config-name",
        RunDir(run_dir).composable_config.stem,
        f"hydra.run.dir={run_dir}",
    ]
    command += granted  # consents given on this command line: the saved config alone may not grant them
    env = {**os.environ, RUN_DIR_ENV: str(run_dir.resolve())}
    if cpu or not torch.cuda.is_available():
        env["ACCELERATE_USE_CPU"] = "true"
    result = subprocess.run(command, env=env)
    if result.returncode:
        raise SystemExit(result.returncode)


GRANTS = {
    "model.trust_remote_code": lambda run: run.model.trust_remote_code,
    "task.trust_metric_code": lambda run: run.task.trust_metric_code,
}
"""Consents a saved config cannot give (mlft.saved_config): passed on to the processes of a relaunched run."""


def _train_job(cfg: DictConfig) -> Any:
    """One run; in a sweep, a job whose failure is recorded and does not stop the sweep, returning the dev
    objective an Optuna search minimises or maximises (NaN: the trial failed)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from mlft import sweeps

    quiet_libraries()  # again: a parallel launcher runs jobs in fresh processes
    hc = HydraConfig.get()
    if hc.mode == RunMode.MULTIRUN:
        return sweeps.run_job(
            lambda: _train_job_unchecked(cfg),
            Path(hc.sweep.dir),
            hc.job.num,
            list(hc.overrides.task),
            cfg.task.metric,
            Path(hc.runtime.output_dir),
        )
    try:
        _train_job_unchecked(cfg)
    except UserError as err:  # Hydra would print these with a traceback and exit 1
        print(format_error(err), file=sys.stderr)
        raise SystemExit(err.exit_code) from None
    return None


def _train_job_unchecked(cfg: DictConfig) -> Path:
    """Trains the job; returns its run directory."""
    from hydra.core.hydra_config import HydraConfig

    from mlft.commands.run_config import run_config
    from mlft.commands.train import train
    from mlft.engine.devices import ignored_processes, launcher_argv, shared_run_dir, world_size
    from mlft.rundir import RunDir, read_paths

    hc = HydraConfig.get()
    run = run_config(cfg)  # the one typed config this job runs with
    asked = ignored_processes(launcher_argv()) if world_size() <= 1 else 0
    if asked > 1:
        logging.getLogger("mlft").warning(
            "accelerate launch --cpu --num_processes %d started one process (its CPU launcher does not run "
            "torchrun); for %d CPU processes run `mlft train trainer.num_processes=%d trainer.cpu=true ...`",
            asked,
            asked,
            asked,
        )
    run_dir = shared_run_dir(Path(hc.runtime.output_dir), run.trainer.cpu)
    overrides = list(hc.overrides.task)
    settings = hydra_settings()
    claimed = os.environ.get(RUN_DIR_ENV) == str(run_dir.resolve())
    # A directory named by the clock may be taken by a run that started in the same second.
    unique = not any(o.startswith("hydra.run.dir=") for o in hc.overrides.hydra)
    if run.trainer.num_processes > 1 and world_size() <= 1 and not claimed:
        if run.resume is None:
            claimed_dir = RunDir(run_dir).claim(run.overwrite, unique, read_paths(run))
            claimed_dir.save_config(run, overrides, settings)
            run_dir = claimed_dir.path
        granted = [key + "=true" for key, on in GRANTS.items() if on(run)]
        _relaunch(run_dir, run.trainer.num_processes, run.trainer.cpu, granted)
        return run_dir
    origin = os.environ.get(ORIGIN_ENV)
    if run.trainer.stages:
        from mlft.commands.continual import train_stages

        return train_stages(run, run_dir, overrides, settings, unique, Path(origin) if origin else None)
    return train(run, run_dir, overrides, settings, claimed, unique, Path(origin) if origin else None)


def sweep_dirname_override(overrides: list[str], directory: Path, config_name: str) -> list[str]:
    """Names a sweep's job folders after the keys that vary between its jobs only.

    Hydra names them after every override, which passes the file system's 255-byte name limit
    once a sweep fixes a dozen keys on the command line.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    key = "hydra.job.config.override_dirname.exclude_keys"
    if any(o.lstrip("+~").startswith(key) for o in overrides):
        return []
    config = OmegaConf.load(directory / f"{config_name}.yaml")
    excluded = list(OmegaConf.select(config, key, default=[]) or [])
    parsed = OverridesParser.create().parse_overrides(overrides)
    excluded += [o.key_or_group for o in parsed if not o.is_sweep_override() and o.key_or_group not in excluded]
    return [f"{key}=[{','.join(excluded)}]"]


HYDRA_VALUE_FLAGS: dict[str, tuple[str, ...] | None] = {
    "--cfg": None,
    "-c": None,
    "--package": None,
    "-p": None,
    "--config-path": None,
    "-cp": None,
    "--config-name": None,
    "-cn": None,
    "--config-dir": None,
    "-cd": None,
    "--experimental-rerun": None,
    "--info": ("all", "config", "defaults", "defaults-tree", "plugins", "searchpath"),
    "-i": ("all", "config", "defaults", "defaults-tree", "plugins", "searchpath"),
}
"""Hydra 1.3's documented flags that take a value (`mlft train --help` lists them) -> the values an optional one
takes (None: the value is required). A test compares it with Hydra's own parser."""


def split_hydra_flags(args: list[str]) -> tuple[list[str], list[str]]:
    """Hydra's own flags (with their values, wherever they stand) apart from the key=value overrides.

    Hydra accepts `--cfg job` after the overrides; its value must not be taken for an override.
    """
    flags, overrides, i = [], [], 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("-"):
            overrides.append(arg)
        elif arg in HYDRA_VALUE_FLAGS and i + 1 < len(args):
            choices = HYDRA_VALUE_FLAGS[arg]
            if choices is None or args[i + 1] in choices:
                flags += [arg, args[i + 1]]
                i += 1
            else:
                flags.append(arg)
        else:
            flags.append(arg)
        i += 1
    return flags, overrides


def train_cli(args: list[str]) -> None:
    import tempfile

    import hydra

    from mlft import saved_config

    if any(a in ("--help", "-h") for a in args):
        print(train_help(args))
        return
    register_schema_defaults()
    config_path, args = _take_option(args, ("--config-path", "-cp"))
    config_name, args = _take_option(args, ("--config-name", "-cn"))
    multirun = any(a in ("-m", "--multirun") for a in args)
    args = [a for a in args if a not in ("-m", "--multirun")]
    flags, overrides = split_hydra_flags(args)
    shown = [f for f in flags if f.split("=")[0] in ("--cfg", "-c", "--info", "-i", "--shell-completion", "-sc")]
    if multirun and shown:
        from mlft.errors import ConfigError

        # Hydra takes one of --multirun, --cfg, --info and --shell-completion, and says so with a traceback.
        raise ConfigError(f"{shown[0]}: shows one job's config; leave out -m (Hydra runs one of them at a time)")
    if "--experimental-rerun" in flags:
        from mlft.errors import ConfigError

        # Hydra's rerun unpickles a file: code from whoever wrote it.
        raise ConfigError("--experimental-rerun: not supported (it unpickles a file); use --config-path <run>/.hydra")
    directory = Path(config_path).resolve() if config_path else config_dir()
    config_name = config_name or PRIMARY_CONFIG
    resume = next((o.split("=", 1)[1] for o in overrides if o.startswith("resume=")), None)
    if resume and not config_path:
        # A resumed run continues from its own saved config, in its own directory.
        saved = RunDir(Path(resume).resolve()).composable_config
        if not saved.is_file():
            from mlft.errors import RunDirError

            raise RunDirError(f"resume={resume}: not a run directory (no {saved.relative_to(saved.parent.parent)})")
        directory, config_name = saved.parent, saved.stem
        overrides.append(f"hydra.run.dir={resume}")
    if config_path:
        os.environ[ORIGIN_ENV] = str(Path(config_path).resolve())
    else:
        os.environ.pop(ORIGIN_ENV, None)
    with tempfile.TemporaryDirectory(prefix="mlft-saved-config-") as staged:
        if config_path or resume:
            # A saved config may come from someone else: only its values are used, under mlft's Hydra settings.
            saved_config.stage(directory, config_name, Path(staged), hydra_settings(), overrides)
            directory, config_name = Path(staged), PRIMARY_CONFIG
        overrides = _rewrite_model(overrides, directory)
        checked = None
        if not any(f.split("=")[0] in HYDRA_INFO_FLAGS for f in flags):
            checked = precheck(directory, config_name, overrides, multirun)
            # The schema has checked every key, so Hydra may add keys inside free-form maps (task.datasets.de=...),
            # which its struct mode would refuse with a traceback.
            overrides = ["++" + o if o.startswith(FREE_MAPS) else o for o in overrides]
        if multirun:
            overrides += sweep_dirname_override(overrides, directory, config_name)
        sweep_dir, code = None, 0
        if multirun and checked is not None and checked.sweep_dir is not None:
            overrides, sweep_dir = claim_sweep(overrides, checked)
        quiet_libraries()
        sys.argv = ["mlft train", *flags, *(["-m"] if multirun else []), *overrides]
        try:
            hydra.main(config_path=str(directory), config_name=config_name, version_base="1.3")(_train_job)()
        finally:
            if sweep_dir is not None and checked is not None:
                from mlft.sweeps import summary

                text, code = summary(sweep_dir, checked.maximize)
                print(text, flush=True)
        if code:
            raise SystemExit(code)


def claim_sweep(overrides: list[str], checked: Checked) -> tuple[list[str], Path]:
    """Takes the sweep's folder (another sweep of the same second gets `-2`) and adds the search's settings."""
    from mlft import sweeps

    assert checked.sweep_dir is not None
    # A folder named by the clock (the default, or the user's ${now:...}) may be taken by a sweep of the same second.
    named = any(o.startswith("hydra.sweep.dir=") and "${now:" not in o for o in overrides)
    sweep_dir = sweeps.claim(checked.sweep_dir, unique=not named)
    overrides = [o for o in overrides if not o.startswith("hydra.sweep.dir=")] + [f"hydra.sweep.dir={sweep_dir}"]
    if sweeps.OPTUNA in overrides:
        overrides += sweeps.search_defaults(overrides, checked.maximize, checked.seed)
    return overrides, sweep_dir


def train_help(args: list[str]) -> str:
    """Groups and their options, then every key (or one section's: `mlft train --help trainer`)."""
    from mlft.config import RunConfig
    from mlft.helptext import describe

    sections = [a for a in args if not a.startswith("-") and "=" not in a]
    lines = [
        "usage: mlft train [group=option ...] [key=value ...]     (mlft train -m ... for a sweep)",
        "       mlft train resume=<run-dir>                       continue a run from its newest checkpoint",
        "       mlft train --config-path <run-dir>/.hydra --config-name config   reproduce a run",
        "",
        "config groups (one option each; configs/<group>/):",
        *(f"  {group}: {', '.join(presets(group))}" for group in GROUPS),
        "",
        "keys (key=value; a dotted key sets one field of a section: optimizer.lr=3e-5):",
    ]
    keys = describe(RunConfig)
    lines += _section_lines(keys, sections) if sections else keys
    lines += ["", "Hydra's own flags: mlft train --hydra-help; the composed config: mlft train ... --cfg job"]
    return "\n".join(lines)


def _section_lines(lines: list[str], sections: list[str]) -> list[str]:
    """The key lines (and their help lines) of the named sections."""
    kept, keep = [], False
    for line in lines:
        if not line.startswith("      "):
            keep = any(line.strip().startswith((f"{s}.", f"{s}:")) for s in sections)
        if keep:
            kept.append(line)
    return kept
