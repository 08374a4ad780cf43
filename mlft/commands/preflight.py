"""What `mlft eval`, `predict`, `export`, `serve` and `report` check before they load a model: the runs, exports and
files their arguments name, where they will write, and arguments that contradict each other.

It imports no torch, transformers or scikit-learn (they take seconds to import), so `mlft.cli` runs it first and a
mistyped path is reported at once; the commands themselves then start from checked arguments.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path

from mlft.commands.arguments import EvalArgs, ExportArgs, PredictArgs, ReportArgs, ServeArgs
from mlft.commands.exporters import EXPORTERS, check_options, exporter_of
from mlft.commands.manifest import check_replaceable
from mlft.destinations import check_not_read, check_within, check_writable
from mlft.errors import ConfigError, RunDirError
from mlft.rundir import RunDir

EXPORT_CONFIG = "mlft-config.yaml"
"""The run's resolved config inside an exported folder: what `mlft predict model=<folder>` rebuilds the task from."""


def check_eval(args: EvalArgs) -> None:
    """Other data files must be files; the runs finished; the report's folder writable."""
    problems = []
    for key in ("dev", "test"):
        problem = data_file_problem(key, getattr(args, key))
        problems += [problem] if problem else []
    if (args.run is None) == (not args.runs):
        problems.append("run, runs: give exactly one (run=<run-dir>, or runs=[<run-dir>,...] for an ensemble)")
    if problems:
        raise ConfigError(problems)
    runs = [args.run] if args.run else args.runs or []
    for run in runs:
        finished_run(Path(run))
    out = Path(args.out) if args.out else eval_out(args).parent
    if args.out and out.exists() and not out.is_dir():
        raise ConfigError(f"out: {args.out} is a file; give a folder for metrics.json and report.md")
    for run in runs:
        check_within(out, Path(run), "out")
    check_writable(out, "out")


def eval_out(args: EvalArgs) -> Path:
    """<run>/evals/<time>; an ensemble's report goes to ./evals/ensemble-<time> (it belongs to no one run)."""
    stamp = datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S-%f")
    return RunDir(Path(args.run)).evals_dir / stamp if args.run else Path("evals") / f"ensemble-{stamp}"


def data_file_problem(key: str, value: str | None) -> str | None:
    if value is None or value.startswith(("hub:", "builtin:")):
        return None
    if Path(value).is_dir():
        return f"{key}: {value} is a folder; give a data file (or hub:<dataset>)"
    if Path(value).exists() and not Path(value).is_file():
        return f"{key}: {value} is not a regular file (a pipe or a device); give a data file"
    if not Path(value).is_file():
        return f"{key}: file not found: {value}"
    return None


def check_predict(args: PredictArgs) -> None:
    """The input is a regular file, the model to predict with is there, and the output may be written."""
    source = Path(args.input)
    if source.is_dir():
        raise ConfigError(f"input: {args.input} is a folder; give a text file (one text per line)")
    if source.exists() and not source.is_file():
        raise ConfigError(f"input: {args.input} is not a regular file (a pipe or a device); give a text file")
    if not source.is_file():
        raise ConfigError(f"input: file not found: {args.input}")
    check_model_source(args.run, args.model, args.runs)
    if args.output:
        check_output(args)


def check_serve(args: ServeArgs) -> None:
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"port: must be in 0..65535, got {args.port}")
    if args.body_timeout_s <= 0 or args.batch_wait_ms < 0:
        raise ConfigError("body_timeout_s, batch_wait_ms: must be > 0 and >= 0")
    check_model_source(args.run, args.model, args.runs)


def check_model_source(run: str | None, model: str | None, runs: list[str] | None) -> None:
    """A finished run, an exported folder (or the model file in it), or runs forming an ensemble: exactly one."""
    if sum(x is not None for x in (run, model, runs)) != 1:
        raise ConfigError(
            "run, model, runs: give exactly one (run=<run-dir>, model=<exported folder or .onnx>, or "
            "runs=[<run-dir>,...] for an ensemble)"
        )
    for path in [run] if run else runs or []:
        finished_run(Path(path))
    if model is not None:
        exported_folder(Path(model))


def exported_folder(path: Path) -> Path:
    """The export folder `model=` names (the folder itself, or the model file inside one)."""
    folder = path if path.is_dir() else path.parent
    if not (folder / EXPORT_CONFIG).is_file():
        raise ConfigError(f"model={path}: not a folder written by mlft export (no {EXPORT_CONFIG}); use run=<run-dir>")
    if path != folder and not path.is_file():
        raise ConfigError(f"model={path}: file not found")
    exporter_of(path)
    return folder


def check_report(args: ReportArgs) -> None:
    """A sweep folder or finished runs, and a split they can be ranked on."""
    if args.sweep is None and not args.runs:
        raise ConfigError("sweep: required (or runs=[<run-dir>,...])")
    if args.split not in ("dev", "test"):
        raise ConfigError(f"split: {args.split!r} is not a split (allowed: dev, test)")
    if args.sweep is not None and not Path(args.sweep).is_dir():
        raise RunDirError(f"sweep={args.sweep}: not a directory")
    for run in (RunDir(Path(path)) for path in args.runs or []):
        if not run.metrics_file.is_file() or not run.is_run():
            raise RunDirError(f"runs: {run.path} is not a finished run (no metrics.json and config.yaml)")
    out = Path(args.out) if args.out else None
    if out is not None and out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise RunDirError(f"out={out}: exists and is not an empty folder; choose another folder")
    if out is not None:
        check_writable(out, "out")


def finished_run(path: Path) -> RunDir:
    """The run directory at `path`, if training finished there."""
    run = RunDir(path)
    if not run.is_run():
        raise RunDirError(f"run={path}: not a run directory (no config.yaml)")
    stages = sorted(run.stages_dir.glob("*/model/config.json"))
    if not run.is_finished() and stages:
        raise RunDirError(
            f"run={path}: a continual run (trainer.stages) has no model of its own; give one of its stages, e.g. "
            f"run={stages[-1].parent.parent}"
        )
    if not run.is_finished():
        raise RunDirError(f"run={path}: the run has no final model (model/config.json); did training finish?")
    return run


def check_output(args: PredictArgs) -> None:
    """The output file: writable, and with overwrite=true only an earlier predictions file (never the input, nor
    anything inside the run or export being read)."""
    output = Path(args.output or "")
    if output.is_dir():
        raise ConfigError(f"output: {args.output} is a folder; give a file name (predictions are JSONL)")
    if output.exists() and not args.overwrite:
        raise ConfigError(f"output: {args.output} exists; nothing was written (pass overwrite=true to replace it)")
    if output.exists():
        model = Path(args.model) if args.model else None
        reads = [("the input", Path(args.input))]
        reads += [("the run", Path(r)) for r in args.runs or ([args.run] if args.run else [])]
        reads += [("the exported model", model if model.is_dir() else model.parent)] if model else []
        check_not_read(output, reads, "output")
        if not predictions_file(output):
            raise ConfigError(
                f"output: {args.output} is not a predictions file (a JSON record per line); overwrite=true replaces "
                "only those, so nothing was written"
            )
    check_writable(output, "output")


def predictions_file(path: Path) -> bool:
    """Whether every line of `path` is a JSON object, as `mlft predict` writes them."""
    try:
        with path.open(encoding="utf-8") as f:
            return all(isinstance(json.loads(line), dict) for line in f if line.strip())
    except (OSError, ValueError):
        return False


def check_export(args: ExportArgs) -> None:
    """Arguments that agree, finished runs, and a destination that may be written (or, with overwrite=true,
    replaced)."""
    if (args.run is None) == (not args.runs):
        raise ConfigError("run, runs: give exactly one (run=<run-dir>, or runs=[<run-dir>,...] for an ensemble)")
    if args.runs:
        ensemble_problems(args)
    if args.max_drop < 0:
        raise ConfigError(f"max_drop: the largest allowed drop in points, >= 0, got {args.max_drop}")
    check_options(args.format, {"quantize": args.quantize != "none", "fuse": args.fuse})
    if args.vocab_file is not None and args.trim_vocab == "none":
        raise ConfigError("vocab_file: only used with trim_vocab=lang|train (it adds pieces to what is kept)")
    runs = [finished_run(Path(r)).path for r in args.runs or [args.run or ""]]
    check_destination(export_out(args), runs, args.overwrite)


def export_name(args: ExportArgs) -> str:
    return args.format + ("-fused" if args.fuse else "") + ("-int8" if args.quantize == "int8" else "")


def export_out(args: ExportArgs) -> Path:
    """out=, or <run>/export/<format>[-fused][-int8] (an ensemble must name out=)."""
    return Path(args.out) if args.out else RunDir(Path(args.run or "")).export_dir / export_name(args)


def check_destination(out: Path, runs: list[Path], overwrite: bool) -> None:
    """Where the export goes: writable, never out of a run through a link, and, with overwrite=true, only an earlier
    export folder with no file mlft did not write (never a run, its model, an ancestor of it, or the user's files)."""
    for run in runs:
        check_within(out, run, "out")
    if not (out.exists() or out.is_symlink()):
        check_writable(out, "out")
        return
    if not overwrite:
        raise ConfigError(f"out: {out} exists; nothing was written (pass overwrite=true to replace it)")
    check_not_read(out, [], "out", folders=[("the run", run) for run in runs])
    check_replaceable(out, "out")
    check_writable(out.parent, "out")


def ensemble_problems(args: ExportArgs) -> None:
    """What an ensemble export cannot do."""
    problems = []
    if not EXPORTERS[args.format].ensembles:
        can = ", ".join(name for name, e in EXPORTERS.items() if e.ensembles)
        problems.append(
            f"format: {args.format} holds one model, not an ensemble (formats that write all of them as one model: "
            f"{can}), or export each run"
        )
    if args.out is None:
        problems.append("out: required with runs= (the export belongs to no single run)")
    if args.fuse:
        problems.append("fuse: graph fusion is not built for an ensemble's graph; leave fuse=false")
    if args.trim_vocab != "none":
        problems.append("trim_vocab: not for an ensemble; leave trim_vocab=none")
    if args.lang is not None:
        problems.append("lang: runs with language adapters cannot form an ensemble")
    if problems:
        raise ConfigError(problems)
