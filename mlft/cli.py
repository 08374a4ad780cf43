"""Command-line entry point: picks the subcommand, parses its arguments, dispatches. Nothing else.

`mlft train` is a Hydra application (mlft.cli_train); the other commands take `key=value` arguments
checked against their typed arguments (every command answers `--help`).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mlft.errors import ConfigError, UserError, format_error

USAGE = """usage: mlft <command> [key=value ...]      (mlft <command> --help lists a command's keys)

commands:
  train     fine-tune a model (Hydra config groups: model, task, lang, optimizer, trainer, peft, experiment)
  eval      re-evaluate a saved run per language:     mlft eval run=<run-dir> [lang=[zh,en]] [split=[test]]
  predict   label raw text lines:                     mlft predict run=<run-dir> input=texts.txt output=preds.jsonl
            (or model=<exported folder or .onnx file> instead of run=)
  export    a deployable model folder, checked per language against the run:
            mlft export run=<run-dir> format=hf|onnx [quantize=int8] [out=<dir>]
            (runs=[<run-dir>,...] format=onnx out=<dir>: an ensemble as one graph)
  serve     an HTTP JSON API (POST /predict, GET /health), batched, with request limits:
            mlft serve model=<exported folder> [port=8080]
  report    mean ± std per language over the runs of a sweep (seeds), heatmap across training languages:
            mlft report sweep=<sweep-dir> [split=test]   (or runs=[<run-dir>,...])
  data      mlft data list: the corpora usable offline, with languages, sizes, labels, licences
  models    mlft models list: the model presets and where each comes from

Any key of `mlft train` can be overridden:
  mlft train task=ner lang=zh model=<hub id or local dir> data.train=train.conll data.dev=dev.conll
  mlft train experiment=demo                           # a named recipe (configs/experiment/)
  mlft train -m optimizer.lr=1e-5,3e-5 seed=1,2        # a sweep, one run directory per job
"""


@dataclass(frozen=True)
class Command:
    module: str
    """mlft.commands.<module>, imported when the command runs (`mlft --help` stays fast)."""
    args: str
    """Its typed arguments (a dataclass of mlft.commands.arguments, which imports nothing heavy)."""
    function: str
    usage: str
    quiet: bool = True
    """Silence the ML libraries' INFO output (commands that load models)."""
    check: str | None = None
    """Its check in mlft.commands.preflight, run before the command's module (and torch) is imported."""

    def arguments(self) -> type:
        from mlft.commands import arguments

        return getattr(arguments, self.args)

    def preflight(self, parsed: Any) -> None:
        if self.check:
            from mlft.commands import preflight

            getattr(preflight, self.check)(parsed)

    def load(self) -> Callable[[Any], Any]:
        return getattr(importlib.import_module(f"mlft.commands.{self.module}"), self.function)


COMMANDS = {
    "eval": Command("evaluate", "EvalArgs", "evaluate", "mlft eval run=<run-dir> [key=value ...]", check="check_eval"),
    "predict": Command(
        "predict",
        "PredictArgs",
        "predict",
        "mlft predict (run=<run-dir> | model=<export>) input=<file> [key=value ...]",
        check="check_predict",
    ),
    "export": Command(
        "export",
        "ExportArgs",
        "export",
        "mlft export (run=<run-dir> | runs=[...]) [key=value ...]",
        check="check_export",
    ),
    "serve": Command(
        "serve",
        "ServeArgs",
        "serve",
        "mlft serve (model=<export> | run=<run-dir>) [key=value ...]",
        check="check_serve",
    ),
    "report": Command(
        "report",
        "ReportArgs",
        "report",
        "mlft report (sweep=<dir> | runs=[...]) [key=value ...]",
        False,
        check="check_report",
    ),
}
"""The `key=value` commands."""


LISTS = {
    "data": "mlft data list: the packaged corpora (builtin:<name>) with languages, split sizes, labels, licences",
    "models": "mlft models list: the model presets (model=<preset>) and where each model comes from",
}


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else list(argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE)
        return
    command, rest = args[0], args[1:]
    try:
        dispatch(command, rest)
    except UserError as err:
        print(format_error(err), file=sys.stderr)
        raise SystemExit(err.exit_code) from None


def dispatch(command: str, rest: list[str]) -> None:
    from mlft.cli_train import did_you_mean, quiet_libraries, train_cli

    helping = any(a in ("-h", "--help") for a in rest)
    if command == "train":
        if not helping:
            quiet_libraries()
        train_cli(rest)
        return
    if command in LISTS:
        if helping:
            print(f"usage: {LISTS[command]}")
            return
        if rest != ["list"]:
            raise ConfigError(f"mlft {command} {' '.join(rest)}: unknown (allowed: mlft {command} list)")
        from mlft.commands.catalog import show

        show(command)
        return
    if command not in COMMANDS:
        known = ["train", *COMMANDS, *LISTS]
        hint = did_you_mean(command, known)
        print(f"mlft: unknown command {command!r}{hint} (allowed: {', '.join(known)})\n\n{USAGE}", file=sys.stderr)
        raise SystemExit(2)
    spec = COMMANDS[command]
    schema = spec.arguments()
    if helping:
        from mlft.helptext import command_help

        print(command_help(command, spec.usage, schema))
        return
    from mlft.schema import parse_key_values

    parsed: Any = parse_key_values(rest, schema, command)  # argument errors before anything heavy is imported
    spec.preflight(parsed)
    if spec.quiet:
        quiet_libraries()
    spec.load()(parsed)
