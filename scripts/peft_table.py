"""The PEFT comparison behind docs/results/peft.md: full fine-tuning against each adapter method, one table.

    python scripts/peft_table.py                      # MSRA demo recipe and ChatterBot English -> all (hours on a CPU)
    python scripts/peft_table.py --only msra --methods none,lora
    python scripts/peft_table.py --model <dir> --quick  # plumbing check with a small model: not a result

Every cell comes from a run of `mlft train` in its own process: the task metric (MSRA: test F1; ChatterBot:
mean zero-shot test accuracy over the languages with at least 20 test utterances), trainable and total
parameters (env.json), training seconds (metrics.json), the size of what the run must keep to be reloaded (the
adapter folder for an adapter method, model/ for full fine-tuning) and the process's peak RSS (wait4). A cell
is kept as `peft_cell.json` in its run folder; a later call with the same workdir reuses a cell whose command is
unchanged, so the table can be built over several calls.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

from demos import write_report  # the same results-file header (date, machine, load) as `make demos`

ROOT = Path(__file__).resolve().parent.parent
QUICK = ["data.max_train_samples=32", "data.max_dev_samples=8", "data.max_test_samples=16", "trainer.epochs=1"]
# LoRA on every linear layer of the blocks (attention and feed-forward), rank 16: ~1% trains. `peft=lora_all` is
# this with lr 1e-3; the table spells the keys out so that its recorded commands stay the ones that ran.
LORA_ALL = ["peft=lora", "peft.target_modules=[query,key,value,dense]", "peft.r=16"]
METHODS = {
    "none": [],
    "full-2-epochs": ["trainer.epochs=2"],  # full fine-tuning on the budget of the two-epoch LoRA runs
    "lora": ["peft=lora"],
    "dora": ["peft=lora", "peft.use_dora=true"],
    "rslora": ["peft=lora", "peft.use_rslora=true", "peft.r=16"],
    "lora-all": [*LORA_ALL, "peft.lr=2e-3"],
    "lora-all-x2": [*LORA_ALL, "peft.alpha=32", "peft.lr=2e-3"],  # twice the update scale (alpha / r = 2)
    "adalora": ["peft=adalora"],
    "ia3": ["peft=ia3"],
    "loha": ["peft=loha"],
    "lokr": ["peft=lokr"],
    "lora-all-2-epochs": [*LORA_ALL, "peft.lr=2e-3", "trainer.epochs=2"],  # an adapter learns less per step
    "lora-all-1e-3": [*LORA_ALL, "peft.lr=1e-3"],
    # lr 2e-3 sits at the edge of divergence on MSRA: the smaller step, twice as long
    "lora-all-1e-3-2-epochs": [*LORA_ALL, "peft.lr=1e-3", "trainer.epochs=2"],
    "bottleneck": ["peft=bottleneck"],
    "houlsby": ["peft=bottleneck", "peft.placement=houlsby"],  # also after each attention block: twice the adapters
}
# The demo recipe freezes the lowest 2 layers for full fine-tuning; an adapter decides what trains itself.
SETTINGS = {
    "msra": (["experiment=demo"], ["model.freeze_layers=0"]),
    "chatterbot": (["experiment=topic_en_to_all"], []),
}


def run(workdir: Path, setting: str, method: str, extra: list[str]) -> dict:
    base, adapter_only = SETTINGS[setting]
    out = workdir / f"{setting}-{method}"
    adapter = any(a.startswith("peft=") for a in METHODS[method])
    args = [*base, *METHODS[method], *(adapter_only if adapter else []), *extra]
    args += ["trainer.progress=false", f"hydra.run.dir={out}", "overwrite=true"]
    command = "mlft train " + " ".join(shlex.quote(a) for a in args)
    cell = out / "peft_cell.json"
    if cell.is_file() and json.loads(cell.read_text()).get("command") == command:
        print("reused", out, flush=True)  # a finished cell of an earlier call with the same command
        return json.loads(cell.read_text())
    print("$", command, flush=True)
    process = subprocess.Popen([sys.executable, "-m", "mlft", "train", *args], cwd=ROOT)
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {command}")
    metrics = json.loads((out / "metrics.json").read_text())
    env = json.loads((out / "env.json").read_text())
    kept = out / ("adapter" if adapter else "model")
    row = {
        "command": command,
        "metric": score(setting, metrics),
        "trainable": env["model"]["trainable_parameters"],
        "total": env["model"]["parameters"],
        "seconds": metrics["throughput"]["train_seconds"],
        "kept_mb": sum(f.stat().st_size for f in kept.rglob("*") if f.is_file()) / 1e6,
        "peak_rss_gb": usage.ru_maxrss / 1e6,  # kilobytes on Linux
    }
    cell.write_text(json.dumps(row, indent=1))
    return row


def score(setting: str, metrics: dict) -> float:
    if setting == "msra":
        return metrics["test"]["zh"]["f1"]
    targets = [v["accuracy"] for lang, v in metrics["test"].items() if lang != "en" and v["n"] >= 20]
    return sum(targets) / max(len(targets), 1)


def table(setting: str, rows: dict[str, dict]) -> list[str]:
    metric = "test F1" if setting == "msra" else "zero-shot accuracy"
    full = rows.get("none", {}).get("metric")
    lines = [
        f"| method | {metric} | of full | trainable | kept (MB) | training (min) | peak RSS (GB) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for method, r in rows.items():
        share = f"{r['metric'] / full:.0%}" if full else "-"
        lines.append(
            f"| {method} | {r['metric']:.4f} | {share} | {r['trainable']:,} ({r['trainable'] / r['total']:.2%}) | "
            f"{r['kept_mb']:.1f} | {r['seconds'] / 60:.1f} | {r['peak_rss_gb']:.2f} |"
        )
    return lines


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(SETTINGS), help=f"comma-separated, of {', '.join(SETTINGS)}")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated, of {', '.join(METHODS)}")
    parser.add_argument("--workdir", default="runs/peft-table")
    parser.add_argument("--out", default=str(ROOT / "docs" / "results" / "peft.md"))
    parser.add_argument("--model", help="another model (a preset or folder): checks the plumbing, not a result")
    parser.add_argument("--quick", action="store_true", help="tiny data: checks the plumbing, not a result")
    args = parser.parse_args(argv)
    settings, methods = args.only.split(","), args.methods.split(",")
    unknown = [s for s in settings if s not in SETTINGS] + [m for m in methods if m not in METHODS]
    if unknown:
        parser.error(f"unknown {unknown} (settings: {', '.join(SETTINGS)}; methods: {', '.join(METHODS)})")
    extra = [f"model={args.model}"] if args.model else []
    workdir = Path(args.workdir).resolve()
    started, load = datetime.datetime.now(), os.getloadavg()
    sections = []
    for setting in settings:
        # Every ChatterBot topic must be in the training data: a quick check keeps all of its (small) training set.
        quick = [q for q in QUICK if setting == "msra" or "train_samples" not in q] if args.quick else []
        rows = {method: run(workdir, setting, method, extra + quick) for method in methods}
        sections += [f"## {setting}", "", *table(setting, rows), "", "```bash", *(r["command"] for r in rows.values())]
        sections += ["```", ""]
        print("\n".join(table(setting, rows)), flush=True)
    title = "PEFT methods against full fine-tuning (scripts/peft_table.py)"
    kept = "kept: what the run must keep to be reloaded (adapter/ for an adapter method, model/ for full)"
    plumbing = bool(args.model or args.quick)
    return write_report(Path(args.out), title, started, load, plumbing, [kept], sections)


if __name__ == "__main__":
    main()
